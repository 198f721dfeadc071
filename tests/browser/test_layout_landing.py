"""The landing view of every scenario not visited view by view (those are in test_layout_moons and
test_layout_views) at 1280 x 720 and 1920 x 1080 in presentation mode and at 1920 x 1080 without: legible in its
frame (helpers/layout.py says what is measured)."""

import pytest
from helpers.layout import EVERY_VIEW, check, prebuilt_server

from flowviz.core.presets import preset_names

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SCENARIOS = [s for s in preset_names() if s not in EVERY_VIEW]


@pytest.fixture(scope="module")
def server(tmp_path_factory, chromium):
    with prebuilt_server(tmp_path_factory.mktemp("prebuilt"), SCENARIOS) as url:
        yield url


def test_every_scenarios_landing_view_is_legible_in_its_frame(server, browser):
    check(browser, server, SCENARIOS)
