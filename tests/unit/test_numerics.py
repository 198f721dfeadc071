"""Exact identities, convergence orders and agreement with torchdiffeq."""

import numpy as np
import pytest
import torch
from torchdiffeq import odeint

from flowviz import Config, build_model
from flowviz.core.fields import ACTIVATIONS
from flowviz.core.solvers import STEPPERS, integrate

NP_ACT = {
    "relu": lambda z: np.maximum(z, 0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "softplus": lambda z: np.log1p(np.exp(z)),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.1 * z),
}


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_one_euler_step_is_eq17_by_hand(act):
    cfg = Config(field="two_layer", activation=act, width=5, n_steps=3, horizon=0.9, seed=2)
    m = build_model(cfg, 2)
    with torch.no_grad():
        m.field.b2.normal_()  # a non-zero b2, so every term of eq. 17 counts
    x0 = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
    W1, b1, W2, b2 = (p.detach().numpy().astype(np.float64) for p in m.field.slot_params())
    s = 0.3
    X = x0.T.astype(np.float64)  # points as columns, as in the paper
    traj = m.trajectory(x0)  # the generic stepper
    for k in range(3):
        W2t, b2t = s * W2[k], s * b2[k]  # eq. 16
        X = X + W2t @ NP_ACT[act](W1[k] @ X + b1[k][:, None]) + b2t[:, None]  # eq. 17
        np.testing.assert_allclose(traj[k + 1], X.T, rtol=1e-5, atol=1e-5)
    hand = X.T
    fast = m.flow(torch.as_tensor(x0)).detach().numpy()  # the hand-written chain
    assert m.fast_path_applies()
    np.testing.assert_allclose(fast, hand, rtol=1e-5, atol=1e-5)


def test_linear_field_gives_powers_of_I_plus_sA():
    A = torch.tensor([[0.3, -1.2], [0.8, -0.1]], dtype=torch.float64)
    x0 = torch.randn(5, 2, dtype=torch.float64)
    L, T = 13, 1.7
    times = np.linspace(0, T, L + 1)
    xL = integrate(lambda k, i, t, x: x @ A.T, x0, times, STEPPERS["euler"])
    M = torch.linalg.matrix_power(torch.eye(2, dtype=torch.float64) + (T / L) * A, L)
    torch.testing.assert_close(xL, x0 @ M.T, rtol=1e-12, atol=1e-12)


def _rotation_problem():
    """x' = (1 + t) J x: exact x(t) = R(t + t^2 / 2) x0 (time-dependent, so stage times matter)."""
    J = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    x0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64)

    def exact(t):
        a = t + t * t / 2
        R = torch.tensor([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], dtype=torch.float64)
        return x0 @ R.T

    return (lambda k, i, t, x: (1 + t) * x @ J.T), x0, exact


@pytest.mark.parametrize(
    "scheme, order, Ls",
    [("euler", 1, [16, 32, 64, 128, 256]), ("midpoint", 2, [16, 32, 64, 128]), ("rk4", 4, [8, 16, 32, 64])],
)
def test_convergence_orders(scheme, order, Ls):
    f, x0, exact = _rotation_problem()
    T = 2.0
    errs = [float((integrate(f, x0, np.linspace(0, T, L + 1), STEPPERS[scheme]) - exact(T)).norm()) for L in Ls]
    slope = -np.polyfit(np.log(Ls), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.15, (scheme, slope, errs)


def _double_model(**kw):
    cfg = Config(width=8, horizon=1.5, seed=5, **kw)
    m = build_model(cfg, 2).double_copy()
    with torch.no_grad():
        for p in m.field.slot_params():
            p.mul_(1.5)
    return m


@pytest.mark.parametrize("scheme", ["midpoint", "rk4"])
@pytest.mark.parametrize("field", ["two_layer", "mlp", "antisymmetric"])
def test_fixed_step_schemes_agree_with_torchdiffeq(scheme, field):
    m = _double_model(field=field, scheme=scheme, time_mode="continuous", knots=5, n_steps=12)
    x0 = torch.randn(20, 2, dtype=torch.float64)
    ours = m.flow(x0, record=True)
    t = torch.as_tensor(m.times)
    theirs = odeint(lambda tt, x: m.vector_field(float(tt), x), x0, t, method=scheme)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


def test_euler_agrees_with_torchdiffeq_on_an_autonomous_field():
    m = _double_model(time_mode="tied", n_steps=10)
    x0 = torch.randn(20, 2, dtype=torch.float64)
    theirs = odeint(lambda tt, x: m.vector_field(float(tt), x), x0, torch.as_tensor(m.times), method="euler")
    torch.testing.assert_close(m.flow(x0, record=True), theirs, rtol=1e-10, atol=1e-10)


def test_euler_evaluates_V_k_at_t_k_as_in_eq10():
    """Paper, eq. 10: x_k = x_(k-1) + s_k v(t_k, x_(k-1)). torchdiffeq's euler uses the left end,
    so ours equals torchdiffeq's on the field shifted by one step, v(t + s, x)."""
    m = _double_model(time_mode="continuous", knots=4, n_steps=8)
    s = m.times[1]
    x0 = torch.randn(10, 2, dtype=torch.float64)
    theirs = odeint(
        lambda tt, x: m.vector_field(min(float(tt) + s, m.times[-1]), x), x0, torch.as_tensor(m.times), method="euler"
    )
    torch.testing.assert_close(m.flow(x0, record=True), theirs, rtol=1e-10, atol=1e-10)


def test_discrete_flow_converges_to_the_reference_at_first_order():
    m = build_model(Config(time_mode="continuous", knots=5, horizon=2.0, seed=1), 2)
    x = np.random.default_rng(1).normal(size=(40, 2)).astype(np.float32)
    Ls = [16, 32, 64, 128, 256]
    ref = m.with_steps(4).reference(x)[-1]  # x(T) does not depend on the partition
    errs = []
    for L in Ls:
        mm = m.with_steps(L).double_copy()
        errs.append(float(np.linalg.norm(mm.trajectory(x.astype(np.float64))[-1] - ref, axis=1).mean()))
    slope = -np.polyfit(np.log(Ls), np.log(errs), 1)[0]
    assert 0.9 < slope < 1.1, (slope, errs)


def test_antisymmetric_linear_part_has_eigenvalues_with_real_part_minus_gamma():
    m = build_model(Config(field="antisymmetric", gamma=0.3, lift=2), 2)
    A = m.field.linear_part(m.field.K.detach())
    re = torch.linalg.eigvals(A).real
    torch.testing.assert_close(re, torch.full_like(re, -0.3), rtol=0, atol=1e-5)


def test_plain_net_drops_the_shortcut():
    m = build_model(Config(scheme="plain", n_steps=3, width=4), 2)
    x = torch.randn(6, 2)
    with torch.no_grad():
        xs = m.flow(x, record=True)
        for k in range(1, 4):
            v = m.velocity(xs[k - 1], k)
            torch.testing.assert_close(xs[k], v, rtol=1e-5, atol=1e-5)
