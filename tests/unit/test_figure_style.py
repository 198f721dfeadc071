"""flowviz.plots.style: the frame's rules on built figures (no browser), and honest class colours."""

import numpy as np
import pytest

import flowviz
from flowviz import plots
from flowviz.plots.figures import PALETTE, categorical_scale
from flowviz.plots.style import FRAMES, apply, int_ticks, math_text, round_for_reading, text_width, wrap
from flowviz.training.analysis import analyse


@pytest.fixture(scope="module")
def blobs():
    r = flowviz.train(flowviz.Config(dataset="blobs", n_classes=5, n_samples=300, n_steps=4, width=8, train_steps=30))
    return analyse(r.model, r.data, with_reference=False)


def _colour_of(scale, zmin, zmax, z):
    """The colour plotly gives value z on a piecewise scale whose bands are flat (both ends of a band equal)."""
    p = (z - zmin) / (zmax - zmin)
    for (a, ca), (b, cb) in zip(scale[:-1], scale[1:]):
        if a <= p <= b and ca == cb:
            return ca
    return None


def test_blobs_class_surface_is_categorical_no_cell_between_two_classes_wears_a_third(blobs):
    fig = plots.decision(blobs)
    heat = [tr for tr in fig.data if tr.type == "heatmap"][0]
    z = np.asarray(heat.z)
    C = 5
    assert heat.zsmooth is False  # no interpolation across cells (which painted a third class between two)
    scale = [list(s) for s in heat.colorscale]
    assert scale == [list(s) for s in categorical_scale(C)]
    colours = np.vectorize(lambda v: _colour_of(scale, heat.zmin, heat.zmax, float(v)), otypes=[object])(z)
    want = np.array([PALETTE[int(v)] for v in z.ravel()], dtype=object).reshape(z.shape)
    assert (colours == want).all()  # every cell wears its own likeliest class's colour, and only that
    # at every boundary between two classes, both sides keep their own colours: no third colour in between
    edge = z[:, 1:] != z[:, :-1]
    assert edge.any()
    left, right = colours[:, :-1][edge], colours[:, 1:][edge]
    assert all(
        a == PALETTE[int(u)] and b == PALETTE[int(w)]
        for a, b, u, w in zip(left, right, z[:, :-1][edge], z[:, 1:][edge])
    )


def test_notation_is_typeset_and_numbers_are_rounded_for_reading():
    assert math_text("u(t_10 = 1, ·) on R^3") == "u(t₁₀ = 1, ·) on ℝ³"
    assert math_text("x_(k−1) and x_k") == "x<sub>k−1</sub> and x<sub>k</sub>"
    assert math_text("n_steps = 64, semi_lagrangian") == "n_steps = 64, semi_lagrangian"  # names stay names
    assert round_for_reading(0.0824) == "0.082" and round_for_reading(1234.5) == "1234"
    assert round_for_reading(3.2e-7) == "3.2×10⁻⁷"
    t = int_ticks(64)
    assert t["dtick"] == 10 and t["tickformat"] == "d" and int_ticks(3)["dtick"] == 1


def test_titles_wrap_to_the_frame_and_every_text_keeps_the_minimum(blobs):
    long = "word " * 80
    lines = wrap(long.strip(), 20, 600).split("<br>")
    assert len(lines) > 1 and all(text_width(ln, 20) <= 600 for ln in lines)
    for fn in (plots.characteristics, plots.diagnostics, plots.velocity):
        fig = apply(fn(blobs), "present")
        f = FRAMES["present"]
        assert fig.layout.font.size >= f.min_text and fig.layout.title.font.size >= f.min_text
        assert all(a.font.size >= f.min_text for a in fig.layout.annotations or ())
        for k in fig.layout:
            if k.startswith(("xaxis", "yaxis")):
                assert fig.layout[k].tickfont.size >= f.min_text
        assert fig.layout.height == f.height


@pytest.mark.slow
def test_spirals_frames_follow_their_points_and_one_window_is_a_switch():
    r = flowviz.train(flowviz.preset("spirals").replace(train_steps=40, n_samples=400))
    v = analyse(r.model, r.data, with_reference=False)
    xs, ks, w = v.characteristics.x, v.surfaces.ks, v.windows
    assert w.shape == (len(ks), 4) and v.frame_surfaces.u.shape[:1] == (len(ks),)
    for i, k in enumerate(ks):  # every point of every frame inside its window; each window square
        p = xs[int(k), :, :2]
        assert (p[:, 0] >= w[i, 0]).all() and (p[:, 0] <= w[i, 1]).all()
        assert (p[:, 1] >= w[i, 2]).all() and (p[:, 1] <= w[i, 3]).all()
        assert np.isclose(w[i, 1] - w[i, 0], w[i, 3] - w[i, 2])
    p0 = xs[0, :, :2]  # at k = 0 the points fill at least half of the window in each direction
    assert ((p0.max(0) - p0.min(0)) >= 0.5 * np.array([w[0, 1] - w[0, 0], w[0, 3] - w[0, 2]])).all()
    fig = plots.characteristics(v)
    for i, fr in enumerate(fig.frames):  # the surface of frame k is computed over frame k's window
        assert list(fr.layout.xaxis.range) == pytest.approx(w[i, :2]) and list(fr.layout.yaxis.range) == pytest.approx(
            w[i, 2:]
        )
        heat = fr.data[0]
        assert heat.x[0] == pytest.approx(w[i, 0], abs=1e-5) and heat.x[-1] == pytest.approx(w[i, 1], abs=1e-5)
    fixed = plots.characteristics(v, fixed_window=True)
    assert all(fr.layout.xaxis.range is None for fr in fixed.frames)
    assert list(fixed.layout.xaxis.range) == pytest.approx(v.extent[:2])
    # a probe's whole path is drawn in every frame: every frame's window holds it (the k = 0 one too)
    from flowviz.training.instruments import flow_paths

    path = np.asarray(flow_paths(r.model, np.array([[2.5, -2.5]], np.float32))[:, 0])
    probed = plots.characteristics(v, probe_path=path)
    for fr in probed.frames:
        (x0, x1), (y0, y1) = fr.layout.xaxis.range, fr.layout.yaxis.range
        assert (path[:, 0] >= x0).all() and (path[:, 0] <= x1).all() and (path[:, 1] >= y0).all()
        assert (path[:, 1] <= y1).all() and np.isclose(x1 - x0, y1 - y0)
    # the transport's panels: each on its own frame's window, its surface computed there
    tr = plots.transport(v)
    heats = [d for d in tr.data if d.type == "heatmap"]
    for h in heats:
        i = int(np.argmin([abs(float(h.x[0]) - w[0]) + abs(float(h.x[-1]) - w[1]) for w in v.windows]))
        assert float(h.x[0]) == pytest.approx(v.windows[i, 0], abs=1e-5)
        assert float(h.y[-1]) == pytest.approx(v.windows[i, 3], abs=1e-5)
    assert len({round(float(h.x[-1] - h.x[0]), 4) for h in heats}) > 1  # the windows differ between frames
    # two runs side by side: one window per frame, the same on both panels, holding both runs' points
    from flowviz.plots.sweep import side_by_side

    sbs = side_by_side(v, v)
    for fr in sbs.frames:
        assert list(fr.layout.xaxis.range) == list(fr.layout.xaxis2.range)
        assert list(fr.layout.yaxis.range) == list(fr.layout.yaxis2.range)


def test_level_segments_trace_a_level_set_to_within_the_grid():
    from flowviz.plots.levelset import level_segments

    x = np.linspace(-2, 2, 41)
    X, Y = np.meshgrid(x, x)
    sx, sy = level_segments(X**2 + Y**2, x, x, 1.0)  # the unit circle
    r, ang = np.hypot(sx, sy), np.arctan2(sy, sx)
    ok = np.isfinite(r)
    assert np.abs(r[ok] - 1).max() < 0.01  # linear along the cell edges: within the grid's error
    assert np.histogram(ang[ok], bins=36, range=(-np.pi, np.pi))[0].min() > 0  # all the way round
    assert np.isnan(sx[2::3]).all()  # segments of two points, NaN between


def _mesh_checks(verts, faces):
    """(every edge shared by exactly two triangles, and each the opposite way round in them: a closed surface wound
    consistently; the triangles' unit normals)."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    _, once = np.unique(directed, axis=0, return_counts=True)
    _, twice = np.unique(np.sort(directed, 1), axis=0, return_counts=True)
    p = verts[faces].astype(np.float64)
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    return bool((once == 1).all() and (twice == 2).all()), n / np.linalg.norm(n, axis=1, keepdims=True)


def test_level_surface_of_a_sphere_is_closed_on_it_and_faces_outward():
    from flowviz.plots.levelset import level_surface

    x, y, z = np.linspace(-2, 2, 21), np.linspace(-1.8, 2.2, 19), np.linspace(-2, 2, 23)  # uneven, and not cubic
    Z, Y, X = np.meshgrid(z, y, x, indexing="ij")
    verts, faces = level_surface(X**2 + Y**2 + Z**2, (x, y, z), 1.0)  # the unit sphere; outside is F > 1
    closed, n = _mesh_checks(verts, faces)
    assert closed and len(faces) > 500
    assert np.abs(np.linalg.norm(verts, axis=1) - 1).max() < 0.05  # within a quarter of a cell of it
    centre = verts[faces].mean(1)
    assert ((n * centre).sum(1) > 0).all()  # every normal points to where F > level


def test_a_boundary_stored_as_saturated_bytes_is_drawn_as_its_plane_not_as_a_staircase():
    """A sharp boundary (a probability that jumps from 0 to 1 between two nodes, as a trained one does) on the lifted
    view's kind of grid (fine in a middle box, coarse beyond): its level set taken as it is stands on the grid's
    cells, a staircase; smoothed, the surface lies within half a cell of the true plane and faces as it does."""
    from flowviz.plots.levelset import level_surface, smooth_field

    fine = np.linspace(-2, 2, 17)
    axes = tuple(np.r_[-5.0, -3.5, fine, 3.5, 5.0] for _ in range(3))
    Z, Y, X = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    normal = np.array([1.0, 0.6, 0.3]) / np.linalg.norm([1.0, 0.6, 0.3])
    q = np.where(normal[0] * X + normal[1] * Y + normal[2] * Z > 0.1, 255, 0).astype(np.uint8)
    F, grid = smooth_field(q, axes)
    cell = float(grid[0][1] - grid[0][0])
    verts, faces = level_surface(F, grid)
    inside = (np.abs(verts) < 2).all(1)  # where the stored grid is fine
    assert inside.sum() > 100 and np.abs(verts[inside] @ normal - 0.1).max() < cell / 2

    def tilt(verts, faces):  # mean angle between the plane's normal and the triangles' there, degrees
        _, n = _mesh_checks(verts, faces)
        there = (np.abs(verts[faces]) < 2).all((1, 2))
        return np.degrees(np.arccos(np.clip(n[there] @ normal, -1, 1))).mean()

    assert tilt(verts, faces) < 5
    assert tilt(*level_surface(q.astype(float), axes, 127.5)) > 10  # the staircase's faces


def _texts(fig) -> list[str]:
    """Every text a figure shows: titles (its frames' too), notes, axis and colour-bar titles, legend entries."""
    lay = fig.layout
    out = [lay.title.text] + [fr.layout.title.text for fr in fig.frames or () if fr.layout and fr.layout.title]
    out += [a.text for a in lay.annotations or ()]
    out += [lay[k].title.text for k in lay if k.startswith(("xaxis", "yaxis"))]
    out += [lay[k][a].title.text for k in lay if k.startswith("scene") for a in ("xaxis", "yaxis", "zaxis")]
    for tr in list(fig.data) + [t for fr in fig.frames or () for t in fr.data or ()]:
        out.append(tr.name)
        cb = getattr(tr, "colorbar", None) or getattr(getattr(tr, "marker", None), "colorbar", None)
        out.append(cb.title.text if cb else None)
    return [t for t in out if isinstance(t, str) and t]


def test_every_view_and_instrument_writes_its_notation_typeset_legend_entries_included():
    """No text of any figure is left in ASCII notation (x_k, t_10, R^3): typesetting it again changes nothing."""
    r = flowviz.train(flowviz.Config(dataset="moons", n_samples=200, n_steps=4, width=8, train_steps=20))
    v = analyse(r.model, r.data, history=r.history, with_reference=False)
    figs = {name: fn(v) for name, fn in plots.FIGURES.items()}
    figs |= {n: fn(r, **({"x0": (0.5, 0.2)} if n == "probe" else {})) for n, fn in plots.INSTRUMENTS.items()}
    names = set()
    for name, fig in figs.items():
        for t in _texts(fig):
            assert math_text(t) == t, (name, t)
        names |= {tr.name for tr in fig.data if tr.name}
    assert "x<sub>k</sub>" in names and any("<sub>k,1</sub>" in n for n in names)  # probe's legend: typeset
