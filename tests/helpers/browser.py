"""The browser tier's common parts: the Chromium the tests drive, its arguments, and waits and clicks on the
page that several files use."""

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def wait_final(page, timeout_ms=90_000):
    """Until the page shows a figure and its run is done (no live view, no first-picture notice)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(".js-plotly-plot", timeout=timeout_ms)
        page.wait_for_function(
            "() => document.body.innerText.includes('done') && "
            "!document.body.innerText.includes('Live view') && "
            "!document.body.innerText.includes('first picture appears')",
            timeout=timeout_ms,
        )
    except PlaywrightTimeout:  # what the page showed instead, for the report (and a screenshot of it)
        raise AssertionError(f"no finished picture in {timeout_ms / 1000:.0f} s: {describe(page)}") from None


def describe(page) -> str:
    """What a page shows, for a failure's report: its address, its state, its text, where a screenshot of it and
    its HTML were saved, and the last lines of its server's log."""
    import tempfile
    import time
    from pathlib import Path

    stem = Path(tempfile.gettempdir()) / f"flowviz-page-{time.strftime('%H%M%S')}-{id(page) % 10_000}"
    try:
        page.screenshot(path=f"{stem}.png", full_page=True)
        Path(f"{stem}.html").write_text(page.content(), encoding="utf-8")
        state = page.evaluate(
            "() => [document.readyState, document.querySelectorAll('[data-testid=stApp]').length, "
            "document.querySelectorAll('[data-testid=stStatusWidget]').length, document.body.innerHTML.length]"
        )
    except Exception as e:  # a crashed page: say so
        return f"{page.url}: the page cannot be read ({e})"
    text = " | ".join(page.inner_text("body").split("\n"))
    from tiny import SERVER_LOGS

    log = SERVER_LOGS.get("/".join(page.url.split("/")[:3]))  # the server the page is on, if a test started it
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:]) if log and log.exists() else "(not known)"
    return (
        f"{page.url} (readyState, stApp, status widget, HTML length: {state}; screenshot {stem}.png): {text[:1500]}"
        f"\nthe server's log, its last lines:\n{tail}"
    )


def radio(page, label):
    """Click the first radio option whose text has ``label``."""
    page.locator("[data-testid='stRadio'] [role='radiogroup'] label").filter(has_text=label).first.click()
