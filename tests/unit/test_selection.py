"""Selections and clicks from the client: one parser (core.points.parse_selection) with the link's bounds,
Streamlit's readers guarded (ui.guards). (Crafted selections on a page: tests/page/test_selection_page.py.)"""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowviz.core.errors import ConfigError, DataError
from flowviz.core.points import PROBE_LIMIT, check_points, parse_probe, parse_selection

# ---------------------------------------------------------------------------------- the parser, by property
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["x", "y", "selection", "points", "box", "malformed", "k"]) | st.text(max_size=5),
            inner,
            max_size=4,
        )
    ),
    max_leaves=30,
)
COORD = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(10**400), 10**400)
    | st.text(max_size=12)
    | st.sampled_from(["NaN", "Infinity", "-inf", "1e300", "1_000", " 2.5 ", "0x10", "", "1e3", "-1000.0000001"])
    | st.lists(st.floats(), max_size=2)
    | st.none()
    | st.booleans()
)


def _event(pts):
    return {
        "selection": {
            "points": [{"x": x, "y": y, "curve_number": 0} for x, y in pts],
            "point_indices": [],
            "box": [],
            "lasso": [],
        }
    }


def _ok(out):
    xy, note = out
    assert note is None or (isinstance(note, str) and xy is None)
    if xy is not None:
        assert xy.dtype == np.float64 and xy.ndim == 2 and xy.shape[1] == 2 and len(xy) >= 1
        assert np.isfinite(xy).all() and np.abs(xy).max() <= PROBE_LIMIT
    return xy, note


@settings(max_examples=300, deadline=None)
@given(JSONISH)
def test_any_json_like_value_gives_points_in_bounds_or_none(value):
    _ok(parse_selection(value))
    _ok(parse_selection({"selection": value}))
    _ok(parse_selection({"selection": {"points": value}}))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(COORD, COORD), min_size=1, max_size=5))
def test_any_coordinates_give_points_in_bounds_or_a_notice(pts):
    xy, note = _ok(parse_selection(_event(pts)))
    assert (xy is None) == (note is not None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(*[st.floats(-PROBE_LIMIT, PROBE_LIMIT)] * 2), min_size=1, max_size=50))
def test_points_in_bounds_come_back_exactly(pts):
    xy, note = parse_selection(_event(pts))
    assert note is None
    assert [tuple(map(float, p)) for p in xy] == [tuple(map(float, p)) for p in pts]


_TEXT = (
    st.text(alphabet=st.characters(blacklist_characters=","), max_size=12)
    | st.floats().map(repr)
    | st.sampled_from(["nan", "inf", "-Infinity", "1e300", "1000", "-1000", "1000.0001", "1_5", " 3 ", "abc", ""])
)


@settings(max_examples=400, deadline=None)
@given(_TEXT, _TEXT)
def test_a_selection_agrees_with_the_probe_link(a, b):
    """A selected point whose x and y are the texts a and b is read as the link probe=a,b is: the same
    point, or refused by both."""
    try:
        link = parse_probe(f"{a},{b}")
    except DataError:
        link = None
    xy, note = parse_selection(_event([(a, b)]))
    assert (xy is None) == (link is None)
    if link is not None:
        assert tuple(xy[0]) == link


@pytest.mark.parametrize(
    "event, reason",
    [
        (_event([(1e300, 1e300)]), "within"),
        (_event([("NaN", "Infinity")]), "within"),
        (_event([("abc", 0)]), "not numbers"),
        (_event([([1, 2], [3])]), "not numbers"),
        (_event([(True, 0)]), "not numbers"),
        ({"selection": {"points": 5}}, "not a list"),
        ({"selection": {"points": ["x"]}}, "not numbers"),
        ({"selection": "text"}, "not an object"),
        ([1, 2], "not an object"),
        ("text", "not an object"),
        ({"malformed": "it is not JSON."}, "not JSON"),
    ],
)
def test_each_malformed_selection_is_one_plain_notice(event, reason):
    xy, note = parse_selection(event)
    assert xy is None and note.startswith("The selection on the plane was ignored: ") and reason in note


def test_empty_selections_are_no_event():
    for event in (None, {}, {"selection": {"points": []}}, {"selection": {}}, {"selection": None}):
        assert parse_selection(event) == (None, None)


def test_the_point_rule_is_probe_links_rule():
    assert check_points((PROBE_LIMIT, -PROBE_LIMIT)).tolist() == [[PROBE_LIMIT, -PROBE_LIMIT]]
    for bad in [(1e300, 0), (math.nan, 0), (0, math.inf), (PROBE_LIMIT * (1 + 1e-15), 0), "a,b", [[1, 2, 3]]]:
        with pytest.raises(ConfigError):
            check_points(bad)


# ------------------------------------------------------------------------------------- Streamlit's readers
DEEP = "[" * 10_000 + "]" * 10_000


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not an object"),
        ("5", "not an object"),
        ('"selection"', "not an object"),
        ('{"selection": "abc"}', "selection is not an object"),
        ('{"selection": [1, 2]}', "selection is not an object"),
        (DEEP, "nested too deep"),
        ('{"selection": {"points": ' + DEEP + "}}", "nested too deep"),
        ('{"selection": {"points": [' + "[" * 20 + "]" * 20 + "]}}", "nested too deep"),
    ],
)
def test_the_guarded_selection_reader_never_raises(raw, reason):
    from streamlit.elements.plotly_chart import PlotlyChartSelectionSerde

    from flowviz.ui.guards import install, read_selection

    state = read_selection(raw)
    assert state["selection"]["points"] == [] and reason in state["malformed"]
    xy, note = parse_selection(state)
    assert xy is None and reason in note
    install()
    assert PlotlyChartSelectionSerde().deserialize(raw) == state  # what Streamlit itself now calls
    good = json.dumps(_event([(0.5, -0.25)]))
    assert parse_selection(PlotlyChartSelectionSerde().deserialize(good))[0].tolist() == [[0.5, -0.25]]


def test_a_link_of_more_than_1000_parameters_keeps_its_settings_with_a_notice():
    """Streamlit drops a query string of more than 1,000 parameters whole (app_session.sanitize_query_string,
    before the page runs); guarded, the link keeps its flowviz keys and the page names what was dropped."""
    from urllib.parse import parse_qs

    import streamlit.runtime.app_session as app_session

    from flowviz.ui.guards import install
    from flowviz.ui.links import parse_link

    install()
    qs = "n_steps=4&n_steps=8&probe=0.5,0.25&" + "&".join(f"junk{i}=1" for i in range(1000))
    kept = app_session.sanitize_query_string(qs)
    link = parse_link(parse_qs(kept, keep_blank_values=True))
    assert link.config.n_steps == 8 and link.flags["probe"] == (0.5, 0.25)
    assert len(link.notices) == 1 and "at most 1,000 parameters" in link.notices[0] and "1,003" in link.notices[0]
    assert app_session.sanitize_query_string("n_steps=4") == "n_steps=4"  # a link within the limits is unchanged
    assert app_session.sanitize_query_string("") == ""
    huge = "n_steps=4&" + "x" * 1_100_000
    assert "too long" in parse_link(parse_qs(app_session.sanitize_query_string(huge))).notices[0]
