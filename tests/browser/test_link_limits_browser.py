"""A link larger than Streamlit reads, in a real Chromium on a live server: the page keeps its flowviz keys and
says what was dropped (Streamlit alone drops the whole query string before the page runs)."""

from urllib.parse import parse_qs, urlparse

import pytest

pytestmark = pytest.mark.browser


def test_a_link_of_1002_parameters_keeps_its_settings_and_says_so(server, browser):  # noqa: F811
    q = "n_steps=8&probe=0.5,0.25&" + "&".join(f"junk{i}=1" for i in range(1000))
    page = browser.new_page()
    page.goto(f"{server}/?{q}")
    page.wait_for_selector("text=larger than a page reads", timeout=60_000)
    page.wait_for_function("() => !location.search.includes('junk')", timeout=30_000)
    kept = parse_qs(urlparse(page.url).query)
    assert kept["n_steps"] == ["8"] and kept["probe"] == ["0.5,0.25"] and "dropped_parameters" not in kept
    page.close()
