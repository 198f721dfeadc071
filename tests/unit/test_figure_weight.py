"""The page's figures are encoded to weigh less without changing what they show (issue 14, section 3).

Probabilities go as even bytes 0..250, which base64 writes without "/" (plotly's JSON sends each "/" as six
bytes), and animation frames carry only what changes. The meaning test compares the figure with the float32
one it replaced, at 1920 x 1080: colours within two units of 255 per channel (one quantisation step after the
surface's opacity; the eye needs several), positions within one pixel of the plot area.
"""

import base64
import json

import numpy as np
import pytest
from plotly.colors import hex_to_rgb

import flowviz
from flowviz.plots import figures
from flowviz.plots.encoding import PROB_TOP, prob_bytes, simplify
from flowviz.plots.figures import SURFACE_OPACITY
from flowviz.training.analysis import analyse

WIDTH, HEIGHT = 1920, 1080


def test_even_bytes_below_252_never_make_a_slash_in_base64():
    """Exhaustive over every 3-byte group (base64 encodes each independently), and tight: 252 and odd bytes do."""
    ok = np.arange(0, 252, 2, dtype=np.uint8)
    triples = np.stack(np.meshgrid(ok, ok, ok, indexing="ij"), -1)  # all 126^3 groups
    assert b"/" not in base64.b64encode(triples.tobytes())
    assert b"/" in base64.b64encode(bytes([252, 0, 0]))
    assert b"/" in base64.b64encode(bytes([0, 0, 63])) and b"/" in base64.b64encode(bytes([3, 255, 0]))


def test_prob_bytes_are_even_monotone_and_within_one_level():
    p = np.linspace(0, 1, 10_001)
    z = prob_bytes(p)
    assert z.dtype == np.uint8 and z.min() == 0 and z.max() == PROB_TOP and (z % 2 == 0).all()
    assert (np.diff(z.astype(int)) >= 0).all()
    assert np.abs(z / PROB_TOP - p).max() <= 1 / PROB_TOP + 1e-12  # half a level of 2 / PROB_TOP
    assert (prob_bytes([-0.5, 1.5]) == [0, PROB_TOP]).all()  # clipped, never wraps


@pytest.fixture(scope="module")
def views():
    cfg = flowviz.preset("reference").replace(n_samples=300, n_steps=6, train_steps=60)
    r = flowviz.train(cfg)
    return analyse(r.model, r.data, history=r.history)


def _rgb(scale, pos):
    """The colour plotly.js draws at ``pos`` in [0, 1] on a colour scale: linear in RGB between its stops."""
    stops = np.array([s for s, _ in scale], float)
    cols = np.array([hex_to_rgb(c) for _, c in scale], float)
    return np.stack([np.interp(pos, stops, cols[:, i]) for i in range(3)], -1)


def _on_white(rgb):
    return SURFACE_OPACITY * rgb + (1 - SURFACE_OPACITY) * 255.0


def _pixels_per_unit(fig, xr=None, yr=None):
    """Plot-area pixels per data unit at WIDTH x HEIGHT: equal axes, so the tighter of the two directions."""
    lay = fig.layout
    w = WIDTH - lay.margin.l - lay.margin.r
    h = (lay.height or HEIGHT) - lay.margin.t - lay.margin.b
    xr, yr = xr or lay.xaxis.range, yr or lay.yaxis.range
    return min(w / (xr[1] - xr[0]), h / (yr[1] - yr[0]))


def test_characteristics_keep_their_colours_and_positions(views):
    fig = figures.characteristics(views)
    base = fig.data[0]
    s, ch, fs = views.surfaces, views.characteristics, views.frame_surfaces
    assert len(fig.frames) == len(s.ks)
    cls = [ch.y == c for c in range(s.u.shape[-1])]
    for i, (k, frame) in enumerate(zip(s.ks, fig.frames)):
        heat = frame.data[0]
        # a frame carries the surface's z and its own window's grid: colour scale and range are trace 0's
        assert heat.colorscale is None and heat.zmax is None
        np.testing.assert_array_equal(np.asarray(heat.x), fs.x1[i].astype(np.float32))
        np.testing.assert_array_equal(np.asarray(heat.y), fs.x2[i].astype(np.float32))
        z = np.asarray(heat.z)
        assert z.shape == fs.u[i].shape[:2]
        shown = _on_white(_rgb(base.colorscale, (z - base.zmin) / (base.zmax - base.zmin)))
        exact = _on_white(_rgb(base.colorscale, fs.u[i][..., 1].astype(np.float32)))
        assert np.abs(shown - exact).max() <= 2.0, f"frame k={k}: colours moved"
        ppu = _pixels_per_unit(fig, frame.layout.xaxis.range, frame.layout.yaxis.range)
        for c, tr in enumerate(frame.data[2:]):  # the points x_k of each class
            dx = np.abs(np.asarray(tr.x, float) - ch.x[k, cls[c], 0].astype(np.float32))
            dy = np.abs(np.asarray(tr.y, float) - ch.x[k, cls[c], 1].astype(np.float32))
            assert max(dx.max(), dy.max()) * ppu <= 1.0, f"frame k={k}: points moved"
    np.testing.assert_array_equal(np.asarray(base.x), fs.x1[0].astype(np.float32))  # frame 0's window first


def test_no_surface_byte_is_escaped_in_the_json_the_page_receives(views):
    """plotly.io.to_json is what st.plotly_chart sends: the surfaces' bytes carry no six-byte escapes."""
    fig = figures.characteristics(views)
    sent = json.loads(fig.to_json())
    zs = [sent["data"][0]["z"]] + [f["data"][0]["z"] for f in sent["frames"]]
    assert all(z["dtype"] == "u1" and "/" not in z["bdata"] for z in zs)
    raw = fig.to_json()
    for z in zs:
        assert z["bdata"] in raw  # sent as it is, no "\u002f" in it


def _dist_to_polyline(pts, line):
    """Distance of each point (k, D) to the polyline (q, D)."""
    a, b = line[:-1][None], line[1:][None]
    ab, ap = b - a, pts[:, None] - a
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-300), 0, 1)
    return np.linalg.norm(ap - t[..., None] * ab, axis=-1).min(1)


@pytest.mark.parametrize("dim", [2, 3])
def test_simplify_keeps_every_vertex_within_tol_and_drops_the_straight_ones(dim):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 40)[None, :, None]
    smooth = np.sin(t * rng.uniform(0.5, 2, (30, 1, dim)) + rng.uniform(0, 6, (30, 1, dim)))
    jagged = np.cumsum(rng.normal(size=(30, 40, dim)), 1)
    paths = np.concatenate([smooth, jagged])
    tol = 1e-2
    keep = simplify(paths, tol)
    assert keep[:, 0].all() and keep[:, -1].all()
    for P, k in zip(paths, keep):
        assert _dist_to_polyline(P, P[k]).max() <= tol + 1e-12
    assert keep[:30].sum() < keep[30:].sum() / 2  # smooth lines need far fewer vertices than random walks
    straight = np.broadcast_to(t * np.ones(dim), (1, 40, dim))
    assert simplify(straight, tol).sum() == 2
    with_nan = paths[:1].copy()
    with_nan[0, 5] = np.nan
    assert simplify(with_nan, tol).all()  # a broken line is sent whole


def test_characteristics_lines_stay_within_half_a_pixel(views):
    """Grid and paths keep original vertices only, and pass within half a pixel of every dropped one."""
    fig = figures.characteristics(views)
    ppu = _pixels_per_unit(fig)
    e = views.extent
    full = min((WIDTH - 80) / (e[1] - e[0]), (HEIGHT - 150) / (e[3] - e[2]))  # the tightest screen checked
    ch = views.characteristics
    lines = [(fig.data[1], views.grid[0][..., :2])]
    lines += [(fig.data[2 + c], np.transpose(ch.x[:, ch.y == c, :2], (1, 0, 2))) for c in range(2)]
    lines += [(f.data[1], views.grid[i][..., :2]) for i, f in enumerate(fig.frames)]
    for tr, paths in lines:
        x, y = np.asarray(tr.x, float), np.asarray(tr.y, float)
        breaks = np.flatnonzero(np.isnan(x))
        assert len(breaks) == len(paths)  # one drawn line per path
        for P, seg in zip(paths.astype(np.float32).astype(float), np.split(np.stack([x, y], 1), breaks[:-1] + 1)):
            seg = seg[~np.isnan(seg[:, 0])]
            assert (seg[:, None] == P[None]).all(-1).any(1).all()  # drawn vertices are the float32 ones
            assert _dist_to_polyline(P, seg).max() * max(ppu, full) <= 0.5 + 1e-6
