"""Viscosity (flowviz's reading of the paper's section 4, item 1): d_t u + v . grad u + eps Laplacian u = 0,
u(0, x) = E f(X_T) over dX = v dt + sqrt(2 eps) dW. Monte-Carlo surfaces, their error, and what is trained."""

import numpy as np
import pytest
import torch

import flowviz
from flowviz.core.presets import preset_info
from flowviz.training.analysis import plane_grid, residual_ratio, roughness, transported_surfaces

X = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def scenario():
    """The viscosity scenario's two runs, as its preset trains them: (eps = 0, eps = 0.05)."""
    info = preset_info("viscosity")
    sharp_cfg, smooth_cfg = info["config"], info["compare"]
    assert sharp_cfg.viscosity == 0 and smooth_cfg.viscosity == 0.05 and smooth_cfg.mc_samples == 64
    return flowviz.train(sharp_cfg), flowviz.train(smooth_cfg)


@pytest.mark.slow
def test_viscosity_smooths_the_surface_roughness(scenario):
    """On the viscosity scenario itself, the mean |discrete Laplacian| of u(0, .) on the 100 x 100 grid is no
    greater at eps = 0.05 than at eps = 0: common random numbers make the Monte-Carlo mean a smooth function of x
    (with independent noise per grid point it is several times rougher); the README quotes these numbers."""
    from tiny import ROOT

    rough = []
    for r in scenario:
        s = transported_surfaces(r.model, r.data.extent(), res=100, ks=[0])
        rough.append(roughness(s.u[0]))
    assert rough[1] <= rough[0], rough
    assert s.mc_stderr is not None and 0 < s.mc_stderr[0] < 0.1  # the caption's number
    m = r.model  # the same M paths' increments, but drawn independently for every grid point
    _, _, pts = plane_grid(r.data.extent(), 100)
    gen = torch.Generator().manual_seed(m.config.seed + 7)
    with torch.no_grad():
        z = torch.as_tensor(pts)
        u = torch.stack([torch.softmax(m.head(m.flow(z, noise_gen=gen)), -1) for _ in range(m.config.mc_samples)])
    indep = roughness(u.mean(0).numpy().reshape(100, 100, -1))
    assert indep > 3 * rough[1], (indep, rough)
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (
        f"mean |discrete Laplacian| of u(0, ·) {rough[1]:.2g} at ε = 0.05, {rough[0]:.2g} at ε = 0, "
        f"{indep:.2g} with independent noise per point"
    ) in readme, (rough, indep)


def _steepest(model, ds):
    x1, x2, pts = plane_grid(ds.extent(), 80)
    u = model.predict_proba(pts)[:, 1].reshape(80, 80)
    gy, gx = np.gradient(u, x2, x1)
    return float(np.percentile(np.hypot(gx, gy), 99))


@pytest.mark.slow
def test_viscosity_smooths_the_surface(scenario):
    """What the scenario's text says: the steepest slope of u(0, .) drops, and few points are misclassified."""
    sharp, smooth = scenario
    assert sharp.config.viscosity == 0 and smooth.config.viscosity == 0.05 and sharp.config.noise == 0.15
    s0, s1 = _steepest(sharp.model, sharp.data), _steepest(smooth.model, smooth.data)
    assert s1 < 0.85 * s0
    wrong = [int((r.model.predict_proba(r.data.x).argmax(1) != r.data.y).sum()) for r in (sharp, smooth)]
    assert max(wrong) <= 0.02 * len(sharp.data.x)  # few red rings: the surface stays visible
    text = preset_info("viscosity")["description"]
    assert f"drops from {s0:.1f} to {s1:.1f}" in text and "noise 0.15" in text, (s0, s1)
    assert f"({wrong[0]} and {wrong[1]} of {len(sharp.data.x)}, ringed in red)" in text, wrong


def test_monte_carlo_paths_are_common_to_all_points():
    m = flowviz.build_model(flowviz.Config(viscosity=0.2, mc_samples=8, n_steps=5), 2)
    p_all = m.predict_proba(X)
    p_one = np.concatenate([m.predict_proba(X[i : i + 1]) for i in range(0, 60, 7)])
    np.testing.assert_allclose(p_one, p_all[::7], rtol=0, atol=1e-6)  # u(x) does not depend on its neighbours
    mean, se = m.monte_carlo(X)
    np.testing.assert_allclose(mean, p_all, atol=1e-7)
    f = m._mc_samples(m._u_fn(0), m.lift(torch.as_tensor(X))).detach().numpy()  # (M, n, C)
    np.testing.assert_allclose(se, f.std(0, ddof=1) / np.sqrt(8), rtol=1e-4, atol=1e-7)
    assert se.max() > 0
    m0 = flowviz.build_model(flowviz.Config(n_steps=5), 2)
    assert np.all(m0.monte_carlo(X)[1] == 0)


def test_residual_ratio_measures_the_drift_not_the_noise():
    cfg = flowviz.Config(viscosity=0.3, n_steps=6, time_mode="continuous", knots=3)
    noisy = flowviz.build_model(cfg, 2)
    clean = flowviz.build_model(cfg.replace(viscosity=0.0), 2)
    clean.load_state_dict(noisy.state_dict())  # the same weights, eps = 0
    np.testing.assert_array_equal(residual_ratio(noisy, X), residual_ratio(clean, X))
    xs = noisy.trajectory(X)  # a noisy sample path: its steps include sqrt(2 eps s_k) xi
    naive = (np.linalg.norm(np.diff(xs, axis=0), axis=-1) / np.linalg.norm(xs[:-1], axis=-1)).mean(1)
    assert not np.allclose(naive, residual_ratio(noisy, X), rtol=0.05)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_the_trained_loss_is_said_and_bounds_the_reported_one(eps):
    """Training minimises E[CE(f(X_T))]; the reported loss is CE(E f(X_T)); Jensen: the first is the larger."""
    m = flowviz.build_model(flowviz.Config(viscosity=eps, mc_samples=16, n_steps=4), 2)
    y = torch.as_tensor((X[:, 0] > 0).astype(np.int64))
    with torch.no_grad():
        f = m._mc_samples(m._u_fn(0), m.lift(torch.as_tensor(X)))  # (M, n, C)
    p_y = f.gather(2, y.view(1, -1, 1).expand(f.shape[0], -1, 1)).squeeze(2)  # (M, n): f_y on each path
    mean_ce = -torch.log(p_y).mean()
    ce_mean = -torch.log(f.mean(0).gather(1, y.view(-1, 1))).mean()
    assert float(mean_ce) >= float(ce_mean) - 1e-7
    text = m.trained_loss()
    assert ("upper bound" in text) == (eps > 0)
    from flowviz.ui.views.dictionary import dictionary

    assert f"Training minimises {text}" in dictionary(m.config) or eps == 0  # the page says it
