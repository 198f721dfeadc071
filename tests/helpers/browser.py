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
    except PlaywrightTimeout:  # what the page showed instead, for the report
        text = " | ".join(page.inner_text("body").split("\n"))
        raise AssertionError(f"no finished picture in {timeout_ms / 1000:.0f} s at {page.url}: {text[:1500]}") from None


def radio(page, label):
    """Click the first radio option whose text has ``label``."""
    page.locator("[data-testid='stRadio'] [role='radiogroup'] label").filter(has_text=label).first.click()
