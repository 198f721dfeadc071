"""The browser tier: one headless Chromium and one live `streamlit run app.py` per test process, shared by the
tier's files (a package-scoped fixture ends when the process leaves the tier: Playwright's synchronous driver
keeps an event loop running that later tiers' asyncio would trip on). Files that need a server of their own
(its environment, its signals) start it themselves and still use this browser."""

import os
import sys

import pytest
from helpers.browser import ARGS, CHROMIUM
from tiny import LiveServer


@pytest.fixture(scope="package")
def chromium():
    """The path of the Chromium the tier drives; where it is missing the tier is skipped loudly (failed in CI)."""
    if not os.path.exists(CHROMIUM):
        msg = f"BROWSER TESTS NOT RUN: {CHROMIUM} is missing (apt-get install chromium chromium-driver)"
        print("\n" + "!" * 80 + "\n" + msg + "\n" + "!" * 80, file=sys.stderr)
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return CHROMIUM


@pytest.fixture(scope="package")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="package")
def server(chromium):
    """A live server with the test process's environment (its disk cache), shared by the tier's files: a run one
    file trained is shared with the next that asks for it, as between two visitors."""
    with LiveServer() as url:
        yield url
