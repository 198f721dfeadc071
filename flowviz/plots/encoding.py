"""How the figures' arrays are encoded for the browser: fewer bytes, the same picture.

st.plotly_chart sends ``plotly.io.to_json(fig)``: numpy arrays as base64 typed arrays, and every "/" of that
text escaped as six bytes. Two encodings here, each checked against the float32 figure at 1920 x 1080 in
tests/unit/test_figure_weight.py:

- probabilities as even bytes 0..250 (:func:`prob_bytes`): base64 writes "/" for a 6-bit group of ones, which a
  byte >= 252 or an odd byte can make; even bytes below 252 never do. Saturated surfaces (byte 255 before)
  had made a third of the page's bytes escapes.
- polylines simplified to within half a pixel (:func:`simplify`, Douglas-Peucker on all lines at once): a
  characteristic or a deformed grid line is smooth, and 8 to 13 % of its vertices draw it to half a pixel.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["PROB_TOP", "FULL_HD", "prob_bytes", "half_pixel", "simplify", "segments"]

PROB_TOP = 250  # the byte of probability 1; levels 0, 2, ..., 250
FULL_HD = (1920, 1080)  # the largest screen a figure is checked for (a projector, or a chart made full screen)


def prob_bytes(p) -> np.ndarray:
    """Probabilities in [0, 1] -> bytes 0, 2, ..., PROB_TOP (linear in p; no "/" in their base64)."""
    return (2 * np.round(np.clip(np.asarray(p, dtype=np.float64), 0, 1) * (PROB_TOP // 2))).astype(np.uint8)


def half_pixel(xrange: float, yrange: float, margins: tuple[int, int] = (80, 150)) -> float:
    """Half a pixel in data units for equal axes spanning xrange x yrange on a FULL_HD plot area
    (``margins``: horizontal and vertical pixels the layout keeps for titles and axes)."""
    w, h = FULL_HD[0] - margins[0], FULL_HD[1] - margins[1]
    scales = [px / span for px, span in ((w, xrange), (h, yrange)) if math.isfinite(span) and span > 0]
    return 0.5 / min(scales) if scales else 0.0  # no extent (points on one spot, or not finite): keep every vertex


def simplify(paths: np.ndarray, tol: float) -> np.ndarray:
    """Douglas-Peucker on m polylines at once: paths (m, p, D) -> keep (m, p) bool.

    Every vertex dropped lies within ``tol`` of the segment between the kept vertices around it, so the
    simplified line is within ``tol`` of every original vertex. The first and last vertices stay; a line
    with a non-finite vertex is kept whole.
    """
    m, p, _ = paths.shape
    keep = np.zeros((m, p), bool)
    keep[:, [0, -1]] = True
    keep |= ~np.isfinite(paths).all(-1).all(-1, keepdims=True)
    idx = np.arange(p)
    rows = np.arange(m)[:, None]
    P = np.nan_to_num(paths.astype(np.float64))
    while True:
        prev = np.maximum.accumulate(np.where(keep, idx, 0), axis=1)  # kept vertex at or before
        nxt = np.minimum.accumulate(np.where(keep, idx, p - 1)[:, ::-1], axis=1)[:, ::-1]  # at or after
        a, b = P[rows, prev], P[rows, nxt]
        ab, ap = b - a, P - a
        t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-300), 0, 1)
        d = np.linalg.norm(ap - t[..., None] * ab, axis=-1)  # distance to the chord (segment)
        d[keep] = -1.0
        seg = (rows * p + prev).ravel()
        order = np.lexsort((-d.ravel(), seg))  # by segment, farthest first
        first = np.ones(order.size, bool)
        first[1:] = seg[order][1:] != seg[order][:-1]
        far = order[first]
        far = far[d.ravel()[far] > tol]
        if far.size == 0:
            return keep
        keep.ravel()[far] = True


def segments(paths: np.ndarray, tol: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Paths (m, p, 2) -> x, y with NaN separators, for one scatter trace of many lines; with ``tol``, only
    the vertices that draw each line to within tol (:func:`simplify`)."""
    m, p, _ = paths.shape
    sep = np.full((m, 1), np.nan, np.float32)
    x, y = np.concatenate([paths[..., 0], sep], 1), np.concatenate([paths[..., 1], sep], 1)
    if tol is None:
        return x.ravel().astype(np.float32), y.ravel().astype(np.float32)
    keep = np.concatenate([simplify(paths, tol), np.ones((m, 1), bool)], 1)
    return x[keep].astype(np.float32), y[keep].astype(np.float32)
