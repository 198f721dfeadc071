"""The Instruments view in a real Chromium: probe a point and draw three points by clicks; screenshots of each
instrument at 1280 x 720 and 1920 x 1080 (test-artifacts/instrument_*.png)."""

import time

import pytest
from helpers.browser import wait_final as _wait_final
from helpers.layout import settle, still

from flowviz import Config
from flowviz.core.points import decode_points

pytestmark = pytest.mark.browser
SUBS = {
    "Probe": "Probe at x₀",
    "Stability region": "Stability, block",
    "Volume and density": "Volume at",
    "Grid solver": "The transport equation on a grid",
    "Adjoint": "Backpropagation is the adjoint flow",
    "Draw points": "Draw your own data",
}  # sub-view -> its figure's title


def _radio(page, label):
    page.locator("[data-testid='stRadio'] [role='radiogroup'] label").filter(has_text=label).first.click()


def _click_plot(page, fx, fy, index=0):
    """Click at the fractions (fx, fy) of a chart's plotting area (from its lower left corner)."""
    area = page.locator(".js-plotly-plot").nth(index).locator(".nsewdrag").first
    area.scroll_into_view_if_needed()  # a click below the viewport reaches nothing
    page.wait_for_timeout(300)
    b = area.bounding_box()
    page.mouse.click(b["x"] + fx * b["width"], b["y"] + (1 - fy) * b["height"])


def _query(page):
    from urllib.parse import parse_qs, urlparse

    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


SIZES = [(1280, 720), (1920, 1080)]  # a laptop and a projector


def test_probe_and_draw_by_clicks_and_screenshot_each_instrument(server, browser, root):  # noqa: F811
    """A probe clicked at laptop size, each instrument screenshotted at both sizes (one page, resized), then
    three points drawn by clicks at projector size."""
    out = root / "test-artifacts"
    out.mkdir(exist_ok=True)
    cfg = Config(n_samples=400, train_steps=120, n_steps=12)
    q = "&".join(f"{k}={v}" for k, v in cfg.to_query().items())
    page = browser.new_page(viewport={"width": SIZES[0][0], "height": SIZES[0][1]})
    page.goto(f"{server}/?{q}")
    _wait_final(page)
    _radio(page, "Instruments")
    page.wait_for_selector("text=Click any point of the plane", timeout=60_000)
    time.sleep(1.0)
    _click_plot(page, 0.3, 0.6)
    page.wait_for_selector("text=Probe at x₀", timeout=60_000)
    time.sleep(1.5)
    assert "probe" in _query(page)
    assert page.locator("[data-testid='stException']").count() == 0
    for size in SIZES:
        page.set_viewport_size({"width": size[0], "height": size[1]})
        for sub, title in SUBS.items():
            _radio(page, sub)
            page.wait_for_selector(f".js-plotly-plot >> text={title}", timeout=120_000)
            settle(page)
            name = f"instrument_{sub.split()[0].lower()}"
            page.screenshot(path=str(out / f"{name}_{size[0]}x{size[1]}.png"))
            plots = page.locator(".js-plotly-plot")
            for i in range(plots.count()):  # the page scrolls inside its own container: one picture per figure
                plots.nth(i).scroll_into_view_if_needed()
                still(page)
                plots.nth(i).screenshot(path=str(out / f"{name}_figure{i}_{size[0]}x{size[1]}.png"))
            assert page.locator("[data-testid='stException']").count() == 0
    size = SIZES[-1]
    page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    for i, (fx, fy) in enumerate([(0.3, 0.3), (0.5, 0.7), (0.7, 0.4)]):  # Draw points is open: three clicks
        _click_plot(page, fx, fy)
        page.wait_for_selector(f"text={i + 1} drawn points", timeout=60_000)
        time.sleep(1.0)
    page.screenshot(path=str(out / f"instrument_drawn_{size[0]}x{size[1]}.png"))
    q = _query(page)
    assert "points" in q
    with pytest.raises(Exception, match="at least 4"):  # three points in the link: too few to train on yet
        decode_points(q["points"])
    page.close()
