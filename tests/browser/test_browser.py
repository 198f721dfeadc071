"""A real headless Chromium against a live `streamlit run app.py`: what a person sees."""

import time

import pytest
from helpers.browser import wait_final
from helpers.layout import settle

from flowviz import Config

VIEWS = ["characteristics", "decision", "transport", "velocity", "diagnostics", "instruments", "sweep", "dictionary"]

pytestmark = pytest.mark.browser


# the screenshots of every view, on a 1920 x 1080 screen (tests/browser/test_browser_layout.py measures every view
# at 1280 x 720 in presentation mode)
SIZES = [(1920, 1080)]


def test_train_and_screenshot_every_view(server, browser, root):
    """Every view, screenshot (the run is trained once; its second Train click shares it)."""
    out = root / "test-artifacts"
    out.mkdir(exist_ok=True)
    cfg = Config(n_samples=400, train_steps=120, n_steps=12)
    q = "&".join(f"{k}={v}" for k, v in cfg.to_query().items())
    page = browser.new_page(viewport={"width": SIZES[0][0], "height": SIZES[0][1]})
    page.goto(f"{server}/?{q}")
    wait_final(page)
    page.get_by_role("button", name="Train", exact=True).click()  # a second click shares the finished run
    wait_final(page)
    time.sleep(1.0)
    assert page.locator("[data-testid='stException']").count() == 0
    options = page.locator("[data-testid='stRadio'] [role='radiogroup'] label")
    assert options.count() == 8
    for size in SIZES:
        page.set_viewport_size({"width": size[0], "height": size[1]})
        for i, name in enumerate(VIEWS):
            options.nth(i).click()
            settle(page, figure=name not in ("dictionary", "sweep"))
            page.screenshot(path=str(out / f"{name}_{size[0]}x{size[1]}.png"))
        assert page.locator("[data-testid='stException']").count() == 0
        options.nth(0).click()
        settle(page)
        # scrubbing is in the browser: the characteristics figure carries its frames
        n_frames = page.evaluate("() => document.querySelector('.js-plotly-plot')._transitionData._frames.length")
        assert n_frames == 13
    page.close()


def test_bad_link_shows_a_notice_not_a_traceback(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(f"{server}/?n_steps=99999&dataset=donut&train_steps=20&n_samples=100")
    page.wait_for_selector("text=Ignored", timeout=60_000)
    body = page.inner_text("body")
    assert "n_steps" in body and "dataset" in body and "Traceback" not in body
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()


HOSTILE_LINK = {
    "n_steps": "[Login here](https://evil.example/phish)",
    "x' ### Your session has expired. [Sign in again](https://evil.example/login) '": "1",
    "![x](https://evil.example/t.png)": "1",
    "hide": "a`b",
    "scenario": "<b>www.evil.example</b>",
    "train_steps": "20",
    "n_samples": "100",
}


def test_a_hostile_link_is_shown_as_plain_text(server, browser, root):
    """Streamlit's alerts render markdown; the page's notices must show a link's text as its characters:
    no link, image, heading or code element, and every character there for the reader."""
    from urllib.parse import urlencode

    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(f"{server}/?{urlencode(HOSTILE_LINK)}")
    page.wait_for_selector("text=Ignored", timeout=60_000)
    time.sleep(1.0)
    alerts = page.locator("[data-testid='stAlert']")
    text = " ".join(alerts.all_inner_texts()).replace("\u2060", "")
    assert "n_steps='[Login here](https://evil.example/phish)' is not a valid int" in text
    assert "### Your session has expired. [Sign" in text and "hide='a`b'" in text
    assert "'![x](https://evil.example/t.png)'" in text and "scenario='<b>www.evil.example</b>'" in text
    for tag in ("a", "img", "h1", "h2", "h3", "h4", "h5", "h6", "code", "strong", "em", "b"):
        assert alerts.locator(tag).count() == 0, tag
    assert page.locator("a[href*='evil'], img[src*='evil']").count() == 0
    page.screenshot(path=str(root / "test-artifacts" / "hostile_link_1280x720.png"))
    page.close()


def test_a_small_sweep_in_the_sweep_tab(server, browser, root):
    """A depth sweep run from the page in presentation mode at 1280 x 720: every sweep figure (the depth transfer
    and the order on one field included: a continuous-weight sweep over L) drawn, legible as the layout test
    measures views (no text overlaps, none under 16 px, integer axes at integers), and screenshot."""
    from helpers.layout import _measured

    out = root / "test-artifacts"
    out.mkdir(exist_ok=True)
    cfg = Config(n_samples=300, train_steps=60, n_steps=8, time_mode="continuous")
    q = "&".join(f"{k}={v}" for k, v in cfg.to_query().items())
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(f"{server}/?{q}&present=1")
    wait_final(page)
    page.locator("[data-testid='stRadio'] [role='radiogroup'] label").filter(has_text="Depth sweep").click()
    page.wait_for_timeout(1500)
    box = page.locator("input[aria-label='Values (comma-separated)']").last
    box.fill("1,2,4,16")
    box.press("Enter")
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Run sweep").click()
    page.wait_for_selector("text=Sweep finished", timeout=120_000)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 6", timeout=90_000)
    time.sleep(1.5)
    assert page.locator("[data-testid='stException']").count() == 0
    body = page.inner_text("body")
    assert "Depth transfer" in body and "Side by side" in body
    problems = _measured(page, "depth sweep", 1280, 720, True, "sweep")
    assert not problems, "\n".join(problems)
    page.screenshot(path=str(out / "sweep_1280x720.png"))
    plots = page.locator(".js-plotly-plot")
    for i in range(plots.count()):  # the page scrolls inside its own container: one picture per figure
        plots.nth(i).scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        plots.nth(i).screenshot(path=str(out / f"sweep_figure{i}_1280x720.png"))
    page.close()
