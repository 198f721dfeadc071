"""The picture the back row sees: every scenario's landing view at 1280 x 720 and 1920 x 1080 in presentation mode and
at 1920 x 1080 and 1280 x 720 without, and every view and instrument of the representative scenarios
(helpers/layout.py: EVERY_VIEW, one with a lift; EVERY_INSTRUMENT) at 1280 x 720 in presentation mode, legible in
its frame (helpers/layout.py says what is measured), each view's and instrument's figures in the boxes
test_browser_figures.py draws them in. One live server on a prebuilt disk cache, one page. Every figure of every
view and instrument of every scenario is measured by test_browser_figures.py, drawn outside the page in the same
boxes (a page state here costs a Streamlit script run, a figure there a Plotly.newPlot): what a visit here adds is
the page around a view, which is the same in every scenario but for the views it offers."""

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
