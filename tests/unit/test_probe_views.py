"""Issue 15, section 1: with a probe, every view of the plane (and of the lifted space) marks its path x_0 .. x_L.

The path each figure draws is checked against one computed here independently: the model's blocks applied one
after the other to the lifted start point (x_k = block k (x_(k-1))). Each animation frame k marks x_k (the
velocity view x_(k-1), the point V_k acts on)."""

import base64
import re

import numpy as np
import pytest
import torch
from tiny import SMALL

import flowviz
from flowviz import plots
from flowviz.plots.probepath import PROBE
from flowviz.training.analysis import analyse

X0 = (0.5, 0.25)


def blocks_path(model, x0) -> np.ndarray:
    """x_0 .. x_L (L+1, d) of one start point, block by block."""
    z = model.lift(torch.tensor([x0], dtype=torch.float32))
    out = [z]
    with torch.no_grad():
        for k in range(1, model.L + 1):
            z = model.step_map(z, k)
            out.append(z)
    return torch.cat(out).numpy()


@pytest.fixture(scope="module", params=[0, 1], ids=["plane", "lift1"])
def case(request):
    r = flowviz.train(SMALL.replace(lift=request.param, seed=7))
    return analyse(r.model, r.data, history=r.history), blocks_path(r.model, X0)


def _xy(tr, dims=2):
    return np.stack([np.asarray(getattr(tr, a), float) for a in "xyz"[:dims]], -1)


def _close(got, want):
    np.testing.assert_allclose(got, np.asarray(want, np.float32), rtol=1e-5, atol=1e-6)


def _probe_traces(fig):
    return [i for i, tr in enumerate(fig.data) if tr.name == PROBE]


def _stars(fig):
    return [i for i, tr in enumerate(fig.data) if (tr.name or "").startswith(PROBE + " x")]


def _check_frames(fig, path, shift=0, dims=2):
    """The probe's path trace is in no frame (it stays as drawn); its star is in every frame, at x_(k - shift)."""
    (star,) = _stars(fig)
    assert fig.frames
    for fr in fig.frames:
        k = int(fr.name)
        assert not set(_probe_traces(fig)) & set(fr.traces)
        _close(_xy(fr.data[list(fr.traces).index(star)], dims)[0], path[k - shift, :dims])


PLANAR = [plots.characteristics, plots.decision, plots.transport, plots.velocity]


@pytest.mark.parametrize("fn", PLANAR, ids=lambda f: f.__name__)
def test_each_planar_view_draws_the_probes_whole_path(case, fn):
    v, path = case
    fig = fn(v, probe_path=path)
    names = _probe_traces(fig)
    assert names and len(names) == ({"decision": 2, "transport": len(fig.layout.annotations)}.get(fn.__name__, 1))
    for i in names:
        _close(_xy(fig.data[i]), path[:, :2])
    assert sum(fig.data[i].showlegend is not False for i in names) == 1  # one legend entry, named "probe"
    assert not _probe_traces(fn(v)) and not _stars(fn(v))  # no probe: nothing of it


def test_animated_views_mark_x_k_in_every_frame(case):
    v, path = case
    for fn, shift in ((plots.characteristics, 0), (plots.velocity, 1)):
        fig = fn(v, probe_path=path)
        (star,) = _stars(fig)
        k0 = int(fig.frames[0].name)
        _close(_xy(fig.data[star])[0], path[k0 - shift, :2])  # as drawn before play
        _check_frames(fig, path, shift)


def test_decision_stars_x0_on_the_input_plane_and_xL_on_the_output_space(case):
    v, path = case
    fig = plots.decision(v, probe_path=path)
    stars = {fig.data[i].name: fig.data[i] for i in _stars(fig)}
    x0, xL = "probe x₀", "probe x<sub>L</sub>"  # the legend's entries, typeset
    assert set(stars) == {x0, xL}
    _close(_xy(stars[x0])[0], path[0, :2])
    _close(_xy(stars[xL])[0], path[-1, :2])
    assert stars[x0].xaxis in (None, "x") and stars[xL].xaxis == "x2"


def test_each_transport_panel_stars_the_x_k_of_its_own_time(case):
    v, path = case
    fig = plots.transport(v, probe_path=path)
    ks = [
        int(re.match(r"u\(t([₀-₉]+) ", a.text).group(1).translate(str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")))
        for a in fig.layout.annotations
    ]  # panel j's k, typeset as a subscript
    stars = [fig.data[i] for i in _stars(fig)]
    assert len(stars) == len(ks)
    for tr in stars:
        j = int((tr.xaxis or "x")[1:] or 1) - 1
        _close(_xy(tr)[0], path[ks[j], :2])


def test_the_3d_views_draw_the_path_in_their_coordinates(case):
    v, path = case
    sp = plots.spacetime(v, probe_path=path)
    (i,) = _probe_traces(sp)
    want = path[:, :3] if v.config.lift else np.c_[path[:, :2], v.t]
    _close(_xy(sp.data[i], 3), want)
    if v.config.lift:
        fig = plots.lifted(v, probe_path=path)
        (i,) = _probe_traces(fig)
        _close(_xy(fig.data[i], 3), path[:, :3])
        _check_frames(fig, path, dims=3)
        assert not _probe_traces(plots.lifted(v))


def test_the_table_of_views_that_take_a_probe_is_every_view_of_the_plane_or_the_lifted_space():
    assert plots.PROBE_VIEWS == {
        plots.characteristics,
        plots.decision,
        plots.transport,
        plots.spacetime,
        plots.velocity,
        plots.lifted,
    }


# ------------------------------------------------------------------------------------------------ a sweep
def _arr(a):
    """A plotly JSON array: a typed array ({"dtype", "bdata"}) or a list."""
    if isinstance(a, dict):
        return np.frombuffer(base64.b64decode(a["bdata"]), dtype=a["dtype"]).astype(float)
    return np.asarray(a, float)


def test_side_by_side_marks_each_runs_own_path_at_the_step_each_panel_shows(case):
    from flowviz.plots.sweep import side_by_side

    v, path = case
    r = flowviz.train(SMALL.replace(lift=v.config.lift, seed=8, n_steps=3))
    w, other = analyse(r.model, r.data, history=r.history), blocks_path(r.model, X0)
    fig = side_by_side(v, w, probe_paths=(path, other))
    lines, stars = _probe_traces(fig), _stars(fig)
    assert len(lines) == len(stars) == 2
    for i, p in zip(lines, (path, other)):
        _close(_xy(fig.data[i]), p[:, :2])
    for fr in fig.frames:
        assert not set(lines) & set(fr.traces)
        for star, vv, p in zip(stars, (v, w), (path, other)):
            t = min(float(fr.name), float(vv.t[-1]))  # the frame's name rounds t: a tie may go either way
            d = np.abs(vv.surfaces.t - t)
            near = [int(k) for k, dk in zip(vv.surfaces.ks, d) if dk <= d.min() + 1e-3]
            got = _xy(fr.data[list(fr.traces).index(star)])[0]
            assert min(np.abs(got - p[k, :2]).max() for k in near) < 1e-5
    assert not _probe_traces(side_by_side(v, w))
