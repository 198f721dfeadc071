"""The lifted rings (the 3-D views) and blobs (five classes) view by view at 1280 x 720 in presentation mode,
and their landing views at 1920 x 1080 with and without it: legible in its frame (helpers/layout.py says what is
measured)."""

import pytest
from helpers.layout import check, prebuilt_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCENARIOS = ["rings_lift", "blobs"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, chromium):
    with prebuilt_server(tmp_path_factory.mktemp("prebuilt"), SCENARIOS) as url:
        yield url


def test_every_view_of_the_lifted_rings_and_of_blobs_is_legible_in_its_frame(server, browser):
    check(browser, server, SCENARIOS)
