"""The lecturer's hands in a real Chromium against one live server: drawn points inside a scenario train as
the dataset; Stop in a second window watching a shared run says so; Reset keeps presentation mode; the two
sliders (training step, layer) in presentation mode at 1280 x 720 (screenshot under FLOWVIZ_SHOTS, if set)."""

import os
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from helpers.browser import wait_final as _wait_final
from helpers.layout import settle

from flowviz.core.points import encode_points

pytestmark = pytest.mark.browser


def _query(page):
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


def _radio(page, label):
    page.locator("[data-testid='stRadio'] [role='radiogroup'] label").filter(has_text=label).first.click()


def _click_plot(page, fx, fy):
    area = page.locator(".js-plotly-plot").first.locator(".nsewdrag").first
    area.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    b = area.bounding_box()
    page.mouse.click(b["x"] + fx * b["width"], b["y"] + (1 - fy) * b["height"])


def _no_exception(page):
    assert page.locator("[data-testid='stException']").count() == 0


def test_drawn_points_stop_in_a_second_window_reset_in_presentation_and_the_two_sliders(server, browser):  # noqa: F811
    # 13 points in the link, the 14th drawn by a click: 7 of each class, inside the moons scenario
    x = np.array([[-1.2 + 0.2 * i, 1.0] for i in range(6)] + [[-1.2 + 0.2 * i, -1.0] for i in range(7)])
    y = np.array([0] * 6 + [1] * 7)
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(f"{server}/?scenario=moons&train_steps=60&points={encode_points(x, y)}")
    _wait_final(page)
    _radio(page, "Instruments")
    _radio(page, "Draw points")
    page.wait_for_selector(".js-plotly-plot >> text=Draw your own data", timeout=60_000)
    time.sleep(1.0)
    _click_plot(page, 0.15, 0.85)  # class 0
    page.wait_for_selector("text=14 drawn points", timeout=30_000)
    page.get_by_role("button", name="Train on these points").click()
    page.wait_for_selector("text=No test split", timeout=60_000)
    page.wait_for_selector("text=on the 14 training points", timeout=60_000)
    page.wait_for_function(
        "() => document.querySelector(\"[data-testid='stSidebar'] input[aria-label='Dataset']\").value == 'drawn (14)'",
        timeout=30_000,
    )
    assert (
        page.locator("[data-testid='stRadio'] label").filter(has_text="Draw points").locator("input").is_checked()
    )  # the view stays where it was
    q = _query(page)
    assert q["scenario"] == "moons" and "points" in q
    assert "settings changed" not in page.inner_text("body")
    _no_exception(page)

    # a shared run: the second window did not start it, the first still watches it
    long = f"{server}/?n_samples=200&n_steps=6&width=8&train_steps=20000&seed=21"
    page.goto(long)
    page.wait_for_function("() => document.body.innerText.includes('training')", timeout=60_000)
    other = browser.new_page(viewport={"width": 1280, "height": 720})
    other.goto(long)
    other.wait_for_function("() => document.body.innerText.includes('training')", timeout=60_000)
    time.sleep(1.5)
    other.locator(".st-key-stop button").first.click()
    other.wait_for_selector("text=shared with another window", timeout=30_000)
    other.wait_for_selector("button:has-text('Train my own copy')", timeout=10_000)
    assert "training" in page.inner_text("body")  # not stopped for the window that started it
    page.locator(".st-key-stop button").first.click()
    page.wait_for_selector("text=Stopped at step", timeout=30_000)
    other.close()

    # presentation mode: the two sliders, then Reset stays in presentation mode
    page.goto(f"{server}/?scenario=rings&present=1&train_steps=40&n_samples=200")
    _wait_final(page)
    page.wait_for_selector("text=layer k =", timeout=30_000)
    settle(page)  # the final figure drawn (a rerun may still replace the one first seen), then its layer slider
    page.wait_for_selector(".js-plotly-plot .slider-container", timeout=30_000)
    shots = os.environ.get("FLOWVIZ_SHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / "sliders_present_1280x720.png"))
    page.locator(".st-key-reset button").first.click()
    page.wait_for_function("() => !location.search.includes('rings')", timeout=30_000)
    _wait_final(page)
    q = _query(page)
    assert q.get("present") == "1" and q.get("dataset") == "moons" and "scenario" not in q
    _no_exception(page)
