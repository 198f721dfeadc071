"""The picture the back row sees, every figure of every view and every instrument of every scenario: built as the
page builds it in presentation mode, drawn in one plain Chromium page in the box the page gives it at 1280 x 720
and measured as helpers/layout.py measures the live page: no text overlaps, none below 16 px, integer axes ticked
at integers, a view's (or an instrument's) plane or 3-D scene at least 60 % of the viewport's height, and every
equal-aspect plane the same picture however the page draws it (helpers/figures_layout.py)."""

import pytest
from helpers.figures_layout import blank_page, measure, problems, scenario_figures, scenario_instruments

from flowviz.core.presets import preset_names

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def page(browser):
    p = blank_page(browser)
    yield p
    p.close()


@pytest.fixture(scope="module")
def drawn():
    """The measured drawings of the module's figures: a figure that two scenarios share is drawn once."""
    return {}


@pytest.mark.parametrize("scenario", preset_names())
def test_every_figure_of_every_view_is_legible_in_its_box(page, drawn, scenario):
    figures = scenario_figures(scenario)
    found = problems(figures, measure(page, figures, drawn), scenario)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("scenario", preset_names())
def test_every_figure_of_every_instrument_is_legible_in_its_box(page, drawn, scenario):
    figures = scenario_instruments(scenario)
    found = problems(figures, measure(page, figures, drawn), scenario)
    assert not found, "\n".join(found)
