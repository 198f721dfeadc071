"""Moons (two classes) view by view and instrument by instrument at 1280 x 720 in presentation mode, and its
landing view at 1920 x 1080 with and without it: legible in its frame (helpers/layout.py says what is measured)."""

import pytest
from helpers.layout import check, prebuilt_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCENARIOS = ["moons"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, chromium):
    with prebuilt_server(tmp_path_factory.mktemp("prebuilt"), SCENARIOS) as url:
        yield url


def test_every_view_and_instrument_of_moons_is_legible_in_its_frame(server, browser):
    check(browser, server, SCENARIOS)
