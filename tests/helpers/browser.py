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
    page.wait_for_selector(".js-plotly-plot", timeout=timeout_ms)
    page.wait_for_function(
        "() => document.body.innerText.includes('done') && "
        "!document.body.innerText.includes('Live view') && "
        "!document.body.innerText.includes('first picture appears')",
        timeout=timeout_ms,
    )


def radio(page, label):
    """Click the first radio option whose text has ``label``."""
    page.locator("[data-testid='stRadio'] [role='radiogroup'] label").filter(has_text=label).first.click()
