"""Each sentence issue 12 corrected, with the number that backs it: the Dictionary, the scenario texts, the
formula block, config help and README."""

import json
import math
import re

import numpy as np
import torch
from tiny import ROOT

import flowviz
from flowviz import plots
from flowviz.core.config import CHOICES
from flowviz.core.presets import PRESET_DIR, preset_info
from flowviz.training.analysis import analyse, fold_points, folding, min_jacobian_det
from flowviz.ui.controls import ACTIVATION_TEX, FIELD_HELP, block_formula
from flowviz.ui.views.dictionary import dictionary

TINY = dict(n_samples=200, n_steps=6, width=8, train_steps=40)


def _u_along_paths(model, x0):
    """u(t_k, x_k) along the (sample) paths of points x0: (L+1, n, C)."""
    xs = model.trajectory(x0)
    return np.stack([model.transported(xs[k], k) for k in range(model.L + 1)])


def test_the_colour_under_a_point_never_changes_only_without_viscosity_and_lift():
    r = flowviz.train(flowviz.Config(**TINY))
    x0 = r.data.x[:50]
    u = _u_along_paths(r.model, x0)
    assert np.abs(u - u[0]).max() < 1e-5  # eps = 0, p = 0: constant along each characteristic, in the plane
    text = dictionary(r.config)
    assert "the colour under a point never changes" in text
    for cfg in (r.config.replace(lift=1), r.config.replace(viscosity=0.05)):
        assert "never changes" not in dictionary(cfg)
    assert "not** constant on the slice x_3 = 0" in dictionary(r.config.replace(lift=1))
    # every scenario that says it is a run with eps = 0 and p = 0
    for p in PRESET_DIR.glob("*.json"):
        info = preset_info(p.stem)
        if "never changes" in info["description"]:
            assert info["config"].viscosity == 0 and info["config"].lift == 0, p.stem


def test_with_viscosity_u_along_a_stochastic_characteristic_is_a_martingale_not_a_constant():
    cfg = flowviz.Config(**dict(TINY, train_steps=0), viscosity=0.3, mc_samples=64, horizon=2.0)
    model = flowviz.train(cfg).model
    x0 = np.repeat(np.array([[0.3, 0.2]], np.float32), 200, 0)  # 200 sample paths from one point
    u = _u_along_paths(model, x0)[..., 1]  # (L+1, paths)
    u0 = float(model.predict_proba(x0[:1])[0, 1])
    for k in range(1, model.L + 1):
        se = u[k].std() / math.sqrt(len(x0))
        assert abs(u[k].mean() - u0) < 4 * se + 0.01  # E u(t_k, X_k) = u(0, x_0): a martingale
    assert u[-1].std() > 0.05  # ... but each path's value wanders: not a constant
    text = dictionary(cfg)
    assert "martingale" in text and "∂_t u + v·∇u + ε Δu = 0" in text and "flowviz's reading" in text
    assert "E[f(X_T)] (Feynman–Kac)" in text and "dX = v dt + √(2ε) dW" in text


def test_the_supervised_learning_row_says_which_terminal_value_is_in_effect():
    row = [ln for ln in dictionary(flowviz.Config(head="fixed")).splitlines() if ln.startswith("| supervised")][0]
    assert "head = fixed, this run" in row and "f = u(T, ·) is fixed" in row
    row = [ln for ln in dictionary(flowviz.Config()).splitlines() if ln.startswith("| supervised")][0]
    assert "head = learned" in row and "finds v and the output layer f together" in row
    # the numbers behind it: a fixed head does not move in training, a learned one does
    fixed = flowviz.train(flowviz.Config(**TINY, head="fixed"))
    learned = flowviz.train(flowviz.Config(**TINY))
    W0 = flowviz.build_model(learned.config, 2).head_W
    assert "head_W" not in dict(fixed.model.named_parameters())
    assert (learned.model.head_W.detach() - W0).abs().max() > 1e-3
    assert not re.search(r"\{[a-z_]+\}", dictionary(flowviz.Config(scheme="plain")))  # every placeholder filled


def test_folding_is_caused_by_a_large_s_k_DV_k_and_the_view_shows_it():
    r = flowviz.train(flowviz.preset("folding"))
    m = r.model
    pts = fold_points(m, r.data.x_train, r.data.extent())
    det, f = min_jacobian_det(m, pts), folding(m, pts)
    text = preset_info("folding")["description"]
    assert "s_k DV_k" in text and "eq. 16" in text and "norm is above 1" in text
    assert det.min() < 0
    assert f.max_norm.max() > f.THRESHOLD == 1.0  # "far above 1"
    k = int(np.argmin(det))
    assert f.min_eig[k] < -1 and f.max_norm[k] > 2  # the folding block: an eigenvalue of s_k DV_k below -1
    assert (det[f.max_norm < 1] > 0).all()  # |A_k| < 1 never folds
    # not T itself: per-step weights absorb s_k into W2 (eq. 16); T = 1 with 8 W2, 8 b2 is the same network
    short = flowviz.build_model(m.config.replace(horizon=1.0), 2)
    state = {
        k_: (v * 8 if k_.endswith(("W2", "b2")) else v)
        for k_, v in m.state_dict().items()
        if k_ not in ("P", "s", "P_blocks")
    }
    short.load_state_dict(state, strict=False)
    np.testing.assert_allclose(
        short.trajectory(r.data.x[:100])[-1], m.trajectory(r.data.x[:100])[-1], rtol=1e-4, atol=1e-4
    )
    assert min_jacobian_det(short, fold_points(short, r.data.x_train, r.data.extent())).min() < 0
    fig = plots.folding(analyse(m, r.data, with_reference=False))
    assert "What folds a step" in fig.layout.title.text and len(fig.data[0].y) == m.L
    assert any(
        "odd number of real eigenvalues lie below −1" in a.text and "exactly one" in a.text
        for a in fig.layout.annotations
    )


def test_fold_texts_say_an_odd_number_of_real_eigenvalues_below_minus_one():
    # the parity itself is tested in test_instruments (z = -2, -3: det = +2, no fold)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| Stability region"))
    for text in (preset_info("stability")["description"], row):
        assert "odd number" in text and "exactly one" in text
        assert "a real eigenvalue below −1 is exactly" not in text and "a real eigenvalue left of −1 are" not in text


def test_blobs_regions_are_sectors_only_for_the_fixed_zero_bias_head():
    r = flowviz.train(flowviz.preset("blobs"))
    text = preset_info("blobs")["description"]
    assert "five convex regions" in text and "sectors" in text and "fixed head" in text
    xl = r.model.trajectory(r.data.x)[-1]
    with torch.no_grad():

        def cls(z):
            return r.model.head(torch.as_tensor(z, dtype=torch.float32)).argmax(1).numpy()

        assert len(np.unique(cls(xl))) == 5  # five regions of the output plane hold the five blobs
        assert r.model.head_b.abs().max() > 0.05  # a learned bias: regions are not cones from the origin
        changed = (cls(xl) != cls(3 * xl)).mean()
    assert changed > 0  # scaling a point changes its class: the regions are not sectors
    fixed = flowviz.build_model(r.config.replace(head="fixed"), 5)
    with torch.no_grad():
        z = torch.as_tensor(xl, dtype=torch.float32)
        assert (fixed.head(z).argmax(1) == fixed.head(3 * z).argmax(1)).all()  # fixed, no bias: sectors


def test_antisymmetric_help_linear_part_real_part_minus_gamma_and_euler_can_grow():
    help_ = FIELD_HELP["antisymmetric"]
    assert "its linear part K − Kᵀ − γI has eigenvalues with real part −γ" in help_
    assert "forward Euler with small γ can still grow (|1 + sλ| > 1)" in help_
    assert "no growing modes" not in help_  # not claimed of the nonlinear, time-varying flow
    cfg = flowviz.Config(field="antisymmetric", gamma=0.01, n_steps=4, horizon=4.0)
    m = flowviz.build_model(cfg, 2)
    with torch.no_grad():
        K = m.field.linear_part(m.field.K).double()  # (slots, d, d)
    lam = torch.linalg.eigvals(K)
    np.testing.assert_allclose(lam.real.numpy(), -cfg.gamma, atol=1e-9)  # "real part −γ"
    s = float(m.steps[0])
    assert (torch.abs(1 + s * lam) > 1).any()  # forward Euler of the same linear part: |1 + s lam| > 1, it grows


def test_every_activation_has_latex_and_leaky_relu_renders_no_subscript():
    assert set(ACTIVATION_TEX) == set(CHOICES["activation"])
    for a in CHOICES["activation"]:
        tex = block_formula(flowviz.Config(activation=a))
        assert ACTIVATION_TEX[a] in tex
    tex = block_formula(flowviz.Config(activation="leaky_relu"))
    assert r"\mathrm{leaky\_relu}" in tex and "leaky_relu" not in tex.replace(r"leaky\_relu", "")


def test_the_formula_block_states_the_viscous_equation_as_flowviz_reading():
    assert "varepsilon" not in block_formula(flowviz.Config())
    tex = block_formula(flowviz.Config(viscosity=0.05))
    for piece in (
        r"\sqrt{2\varepsilon s_k}\,\xi_k",
        r"\partial_t u + v\cdot\nabla u + \varepsilon\,\Delta u = 0",
        r"dX = v\,dt + \sqrt{2\varepsilon}\,dW",
        r"u(0,x) = \mathbb{E}\,f(X_T)",
        "flowviz's reading",
    ):
        assert piece in tex
    # the code computes exactly this: the noise after step k has variance 2 eps s_k
    cfg = flowviz.Config(viscosity=0.05, n_steps=2, horizon=1.0, width=4)
    m = flowviz.build_model(cfg, 2)
    x = torch.zeros(20000, 2)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        det_step = m.flow(x, k0=0, k1=1)
        noisy = m.flow(x, k0=0, k1=1, noise_gen=gen)
    var = (noisy - det_step).var(0)
    np.testing.assert_allclose(var.numpy(), 2 * 0.05 * 0.5, rtol=0.05)


def test_euler_evaluates_the_field_at_time_t_k_and_the_point_x_k_minus_1():
    readme = (ROOT / "README.md").read_text()
    assert "the field at time t_k (the *right*\nend of the step) and at the point x_(k-1)" in readme
    m = flowviz.build_model(flowviz.Config(time_mode="continuous", knots=3, n_steps=4), 2)
    x = torch.randn(30, 2)
    with torch.no_grad():
        for k in (1, 3):
            t = float(m.times[k]), float(m.times[k - 1])
            step = m.step_map(x, k)
            torch.testing.assert_close(step, x + float(m.steps[k - 1]) * m.vector_field(t[0], x))
            assert (step - x - float(m.steps[k - 1]) * m.vector_field(t[1], x)).abs().max() > 1e-4


def test_the_plain_net_velocity_view_draws_the_displacement_of_a_map():
    r = flowviz.train(flowviz.Config(**TINY, scheme="plain"))
    v = analyse(r.model, r.data, with_reference=False)
    fig = plots.velocity(v)
    assert "a map, not a small step" in fig.layout.title.text and "V<sub>k</sub>(x) − x" in fig.layout.title.text
    vel = v.velocity
    X1, X2 = np.meshgrid(vel.x1, vel.x2)
    i = 0
    disp = vel.v[i] - np.stack([X1, X2], -1)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), np.linalg.norm(disp, axis=-1), rtol=1e-5, atol=1e-6)
    # a plain block is the map x -> V_k(x): the step's derivative is DV_k - I, not a small multiple of DV_k
    with torch.no_grad():
        z = torch.as_tensor(np.c_[X1.ravel(), X2.ravel()][:5], dtype=torch.float32)
        torch.testing.assert_close(r.model.step_map(z, int(vel.ks[i])), r.model.velocity(z, int(vel.ks[i])))
    assert "plain block is a map, not a small step" in dictionary(r.config)


def test_lift_and_viscosity_are_attributed_in_config_scenarios_and_readme():
    from flowviz.core.config import Config

    help_ = {k: f.metadata["help"] for k, f in Config.__dataclass_fields__.items()}
    assert "Dupont, Doucet & Teh 2019" in help_["lift"] and "footnote 1" in help_["lift"]
    assert "flowviz's reading" in help_["viscosity"]
    assert "fixed: f = u(T, .) is given" in help_["head"]
    for name in ("rings", "rings_lift", "rings_plane"):
        assert "Dupont, Doucet & Teh 2019" in json.loads((PRESET_DIR / f"{name}.json").read_text())["description"]
    readme = (ROOT / "README.md").read_text()
    assert "Dupont, Doucet & Teh (2019)" in readme and "∂_t u + v·∇u + ε Δu = 0" in readme
    assert "flowviz's reading of the paper's section 4, item 1" in readme
    assert "also exists in plain nets" in readme


def _midpoint_by_hand(m, x, k, t_plus=0.0):
    """x_(k-1) + s_k K_2 with K_1 = v(t_(k-1), x), K_2 = v(t_(k-1) + s_k / 2, x + (s_k / 2) K_1): the printed
    tableau c = (0, 1/2), a_21 = 1/2, b = (0, 1), with the model's own field v(t, x) (t_plus: K_1 at
    t_(k-1) + t_plus, the limit from inside the step for per-step weights)."""
    t0, s = float(m.times[k - 1]), float(m.steps[k - 1])
    K1 = m.vector_field(t0 + t_plus, x)
    return x + s * m.vector_field(t0 + s / 2, x + (s / 2) * K1)


def test_the_dictionary_block_sentence_is_the_runs_own_scheme_and_one_step_matches_it_by_hand():
    d = {s: dictionary(flowviz.Config(scheme=s)) for s in ("euler", "midpoint", "rk4")}
    stage = "K_i = v(t_(k-1) + c_i s_k, x_(k-1) + s_k Σ_(j<i) a_ij K_j)"
    assert "is one forward-Euler step of the ODE x' = v(t, x) (eq. 10)" in d["euler"]
    assert "one-stage case c_1 = 1, b_1 = 1" in d["euler"] and stage in d["euler"]
    for s in ("midpoint", "rk4"):
        assert "is one forward-Euler step" not in d[s] and stage in d[s] and "not this run's block" in d[s]
    assert "explicit midpoint rule (order 2)" in d["midpoint"]
    assert "c = (0, 1/2), a_21 = 1/2, b = (0, 1)" in d["midpoint"]
    assert "Kutta's 3/8 rule (order 4)" in d["rk4"] and "b = (1/8, 3/8, 3/8, 1/8)" in d["rk4"]
    assert r"x_{k-1} + s_k \textstyle\sum_{j<i} a_{ij} K_j" in block_formula(flowviz.Config(scheme="midpoint"))
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())  # the conventions paragraph
    assert "the one-stage case c_1 = 1 of the Runge–Kutta step" in readme and stage in readme
    assert "every stage of step k uses block k's weights" in readme  # the per_step case below
    per_step = "limit from inside the step, v(t_(k-1)⁺, ·)"
    assert per_step in d["midpoint"] and per_step not in dictionary(flowviz.Config(scheme="rk4", time_mode="tied"))
    x = torch.randn(12, 2, generator=torch.Generator().manual_seed(0))
    for time_mode in ("continuous", "tied", "per_step"):
        cfg = flowviz.Config(scheme="midpoint", time_mode=time_mode, knots=4, n_steps=3, horizon=1.5, width=8)
        m = flowviz.build_model(cfg, 2)
        e = flowviz.build_model(cfg.replace(scheme="euler"), 2)
        tp = 1e-6 if time_mode == "per_step" else 0.0
        with torch.no_grad():
            for k in (1, 2, 3):
                torch.testing.assert_close(m.step_map(x, k), _midpoint_by_hand(m, x, k, tp), rtol=1e-5, atol=1e-6)
                # euler: c_1 = 1, the field at t_k and the point x_(k-1)
                want = x + float(e.steps[k - 1]) * e.vector_field(float(e.times[k]), x)
                torch.testing.assert_close(e.step_map(x, k), want, rtol=1e-5, atol=1e-6)
