"""The drawn-points link (points=): round trip, quantisation, and refusals."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowviz.core.errors import DataError
from flowviz.core.points import MAX_POINTS, RANGE, decode_points, encode_points

STEP = 2 * RANGE / 65535


@settings(max_examples=40, deadline=None)
@given(n=st.integers(4, MAX_POINTS), seed=st.integers(0, 2**31 - 1), classes=st.integers(2, 8))
def test_round_trip(n, seed, classes):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-RANGE, RANGE, (n, 2))
    y = np.r_[np.arange(classes), rng.integers(0, classes, n)][:n] if n >= classes else rng.integers(0, 2, n)
    if len(np.unique(y)) < 2:
        y[:2] = [0, 1]
    text = encode_points(x, y)
    assert len(text) <= 3338 and all(c.isalnum() or c in "-_" for c in text)
    x2, y2 = decode_points(text)
    np.testing.assert_array_less(np.abs(x2 - x), STEP / 2 + 1e-5)  # quantised to half a step (float32 on top)
    _, want = np.unique(y, return_inverse=True)  # classes renumbered as a CSV's are
    np.testing.assert_array_equal(y2, want)
    assert encode_points(x2, y2) == encode_points(x2.astype(np.float64), y2)  # stable once quantised


@pytest.mark.parametrize(
    "text, msg",
    [
        ("not base64!", "URL-safe base64"),
        ("A" * 5000, "too long"),
        ("AgAA", "version 1"),
        (encode_points(np.zeros((4, 2)), [0, 1, 0, 1])[:-3], "damaged"),
        (encode_points(np.zeros((4, 2)), [0, 0, 0, 0]), "single class"),
        (encode_points(np.zeros((3, 2)), [0, 1, 0]), "at least 4"),
        ("", "flowviz's format"),
    ],
)
def test_bad_encodings_are_refused_with_a_message(text, msg):
    with pytest.raises(DataError, match=msg):
        decode_points(text)


def test_encoder_limits():
    with pytest.raises(DataError, match="at most 500"):
        encode_points(np.zeros((501, 2)), np.zeros(501, int))
    with pytest.raises(DataError, match="within"):
        encode_points(np.array([[9.0, 0.0]]), [0])
    with pytest.raises(DataError, match="classes 0 to 7"):
        encode_points(np.zeros((1, 2)), [8])


def test_probe_parameter():
    from flowviz.core.points import format_probe, parse_probe

    assert parse_probe(format_probe((0.123456, -2.5))) == (0.1235, -2.5)
    for bad, msg in (
        ("1", "two numbers"),
        ("a,b", "two numbers"),
        ("nan,0", "finite"),
        ("1e9,0", "within"),
        ("1,2,3", "two numbers"),
    ):
        with pytest.raises(DataError, match=msg):
            parse_probe(bad)
