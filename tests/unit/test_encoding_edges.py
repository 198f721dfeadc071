"""The figures' encoding on degenerate flows: every point on one spot, or a path that left the floats (a stiff
link's characteristics), must draw, not divide by zero."""

import math

import numpy as np

from flowviz.plots.encoding import half_pixel, simplify


def test_half_pixel_of_an_empty_or_infinite_extent_keeps_every_vertex():
    assert half_pixel(0.0, 0.0) == 0.0 and half_pixel(float("nan"), float("inf")) == 0.0
    assert half_pixel(0.0, 2.0) == half_pixel(2.0, 2.0)  # the one axis with an extent decides
    assert math.isclose(half_pixel(4.0, 4.0), 2 * half_pixel(2.0, 2.0))
    paths = np.zeros((3, 5, 2))  # three paths standing still
    keep = simplify(paths, half_pixel(0.0, 0.0))
    assert keep.shape == (3, 5) and keep[:, 0].all() and keep[:, -1].all()  # the ends always stay
