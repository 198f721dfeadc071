"""The determinant panel: it samples a 25 x 25 grid (and says so) and also the data points themselves."""

import numpy as np
import torch

import flowviz
from flowviz.plots import diagnostics as diagnostics_figure
from flowviz.training.analysis import analyse, diagnostics, plane_grid


def _dets(model, pts):
    """det D(step k) at each of the points (m, 2), by torch.func.jacrev: (L, m)."""
    xs = torch.as_tensor(model.trajectory(pts, noise=False))
    out = []
    for k in range(1, model.L + 1):
        J = torch.vmap(torch.func.jacrev(lambda z, k=k: model.step_map(z[None], k)[0]))(xs[k - 1])
        out.append(torch.linalg.det(J.detach().double()).numpy())
    return np.array(out)


def test_det_panel_grid_and_data_points():
    r = flowviz.train(flowviz.Config(n_samples=150, n_steps=4, horizon=3.0, width=8, train_steps=30, lr=0.05))
    d = diagnostics(r.model, r.data.x_train, r.data.extent(), with_reference=False)
    assert d.det_grid == 25
    _, _, g = plane_grid(r.data.extent(), 25)
    np.testing.assert_allclose(d.min_jac_det, _dets(r.model, g).min(1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(d.min_jac_det_data, _dets(r.model, r.data.x_train).min(1), rtol=1e-4, atol=1e-5)
    fig = diagnostics_figure(analyse(r.model, r.data, with_reference=False))
    titles = [a.text for a in fig.layout.annotations]
    assert any("25×25 grid" in t and "data points" in t for t in titles)
    assert not any("over the plane" in t for t in titles)
    assert any(tr.name == "min det, data points" for tr in fig.data)
