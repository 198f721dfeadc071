"""The picture the back row sees: every scenario's landing view at 1280 x 720 and 1920 x 1080 in presentation mode
and at 1920 x 1080 without, and every view and instrument of the representative scenarios (helpers/layout.py:
EVERY_VIEW, EVERY_INSTRUMENT) at 1280 x 720 in presentation mode, legible in its frame (helpers/layout.py says what is
measured). One live server on a prebuilt disk cache, one page."""

import pytest
from helpers.layout import check, prebuilt_server

from flowviz.core.presets import preset_names

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory, chromium):
    with prebuilt_server(tmp_path_factory.mktemp("prebuilt"), preset_names()) as url:
        yield url


def test_every_scenario_view_and_instrument_is_legible_in_its_frame(server, browser):
    check(browser, server, preset_names())
