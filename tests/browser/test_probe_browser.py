"""The probe's path in a real Chromium: a link with probe= marks it in the Characteristics and Velocity field
views at 1280 x 720 (test-artifacts/probe_*.png), its legend entry named probe."""

import time

import pytest
from helpers.browser import radio as _radio
from helpers.browser import wait_final as _wait_final
from helpers.layout import SETTLED
from playwright.sync_api import Error as PlaywrightError

from flowviz import Config

pytestmark = pytest.mark.browser


def test_a_probe_in_the_link_is_marked_in_two_views(server, browser, root):  # noqa: F811
    out = root / "test-artifacts"
    out.mkdir(exist_ok=True)
    cfg = Config(n_samples=400, train_steps=120, n_steps=12)
    q = "&".join(f"{k}={v}" for k, v in cfg.to_query().items())
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(f"{server}/?{q}&probe=-0.8,0.6")  # a point the flow carries far
    _wait_final(page)
    for view, name in (("Characteristics", "characteristics"), ("Velocity field", "velocity")):
        _radio(page, view)
        page.wait_for_selector(".js-plotly-plot .legendtext >> text=probe", timeout=60_000)
        time.sleep(1.5)
        page.wait_for_function(SETTLED, timeout=60_000)
        for attempt in range(3):  # on a loaded machine a last rerun may replace the chart under the screenshot
            try:
                plot = page.locator(".js-plotly-plot").first
                plot.scroll_into_view_if_needed()
                page.screenshot(path=str(out / f"probe_{name}_1280x720.png"))
                plot.screenshot(path=str(out / f"probe_{name}_figure_1280x720.png"))
                break
            except PlaywrightError:
                if attempt == 2:
                    raise
                page.wait_for_timeout(1000)
                page.wait_for_function(SETTLED, timeout=60_000)
        assert page.locator(".js-plotly-plot .legendtext >> text=probe").count() > 0
        assert page.locator("[data-testid='stException']").count() == 0
    page.close()
