"""The grid solver of the transport equation (flowviz.core.transport) against exact solutions."""

import numpy as np
import pytest
import torch
from helpers.fields import linear_model
from tiny import ROOT

from flowviz import Config, ConfigError, build_model, solve_transport
from flowviz.core.transport import GRID_SCHEMES

A = np.array([[-0.5, -1.0], [1.0, -0.5]])  # a contracting spiral: eigenvalues -0.5 +- i


def exact_u0(m, A, T, pts):
    """f(e^(AT) x): the class-1 probability of the exact solution (constant along the exact characteristics)."""
    M = torch.linalg.matrix_exp(torch.as_tensor(A * T))
    z = torch.as_tensor(pts, dtype=torch.float64) @ M.T
    W, b = m.head_W.detach().double(), m.head_b.detach().double()
    return torch.softmax(z @ W.T + b, -1)[:, 1].numpy()


def test_the_linear_model_is_linear():
    m = linear_model(A)
    x = torch.randn(9, 2)
    torch.testing.assert_close(m.velocity(x, 1), x @ torch.as_tensor(A, dtype=torch.float32).T)


@pytest.mark.parametrize("scheme", list(GRID_SCHEMES))
def test_grid_solution_converges_at_the_schemes_order(scheme):
    T = 1.0
    m = linear_model(A, T=T, L=4)
    errs = []
    for N in (33, 65, 129):
        sol = solve_transport(m, resolution=N, scheme=scheme, extent=(-2, 2, -2, 2), dtype=torch.float64)
        X1, X2 = np.meshgrid(sol.x1.astype(np.float64), sol.x2.astype(np.float64))
        inner = X1**2 + X2**2 <= 1.0  # away from the edges (characteristics from here stay in the box)
        pts = np.c_[X1[inner], X2[inner]]
        errs.append(np.abs(sol.u[..., 1][inner] - exact_u0(m, A, T, pts)).max())
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert errs[-1] < errs[0]
    np.testing.assert_allclose(orders, GRID_SCHEMES[scheme], atol=0.3)


def test_grid_with_the_networks_blocks_converges_to_F_at_order_2():
    """time_steps='blocks': departure points from the Euler blocks, so the limit is F = f((I + sA)^L x)."""
    m = linear_model(A, T=1.0, L=4)
    errs = []
    for N in (33, 65, 129):
        sol = solve_transport(m, resolution=N, extent=(-2, 2, -2, 2), time_steps="blocks", dtype=torch.float64)
        X1, X2 = np.meshgrid(sol.x1.astype(np.float64), sol.x2.astype(np.float64))
        inner = X1**2 + X2**2 <= 1.0
        F = m.predict_proba(np.c_[X1[inner], X2[inner]].astype(np.float32))[:, 1]
        errs.append(np.abs(sol.u[..., 1][inner] - F).max())
    np.testing.assert_allclose(np.log2(np.array(errs[:-1]) / np.array(errs[1:])), 2.0, atol=0.3)
    with pytest.raises(ConfigError, match="time_steps"):
        solve_transport(m, scheme="upwind", time_steps="blocks")


def test_default_time_steps_flow_tends_to_the_euler_error_not_to_F():
    """README: solve_transport's default time_steps='flow' differs from F by the blocks' Euler error in the limit;
    the instrument's time_steps='blocks' difference vanishes (at order 2, the test above)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| Grid solver"))
    assert 'default `time_steps="flow"`' in row and "tends to the blocks' Euler error f(x(T)) − F, not to 0" in row
    assert 'The instrument uses `time_steps="blocks"`' in row and "vanishes at order 2" in row
    m = linear_model(A, T=1.0, L=4)
    gap, flow_err, blocks_err = [], [], []
    for N in (33, 65, 129):
        sols = {
            ts: solve_transport(m, resolution=N, extent=(-2, 2, -2, 2), time_steps=ts, dtype=torch.float64)
            for ts in ("flow", "blocks")
        }
        X1, X2 = np.meshgrid(sols["flow"].x1.astype(np.float64), sols["flow"].x2.astype(np.float64))
        inner = X1**2 + X2**2 <= 1.0
        pts = np.c_[X1[inner], X2[inner]]
        F = m.predict_proba(pts.astype(np.float32))[:, 1]
        euler = exact_u0(m, A, 1.0, pts) - F  # f(x(T)) - F: the blocks' Euler error, independent of the grid
        d = sols["flow"].u[..., 1][inner] - F
        gap.append(np.abs(d - euler).max())
        flow_err.append(np.abs(d).max())
        blocks_err.append(np.abs(sols["blocks"].u[..., 1][inner] - F).max())
    assert gap[0] > gap[1] > gap[2] and gap[2] < 0.01 * np.abs(euler).max()  # flow - F -> the Euler error
    assert flow_err[-1] > 0.9 * np.abs(euler).max() > 100 * blocks_err[-1]  # ... which is not 0; blocks' is


def test_heat_equation_without_a_field():
    """v = 0, eps > 0: u(0, .) = f * heat kernel; for the linear logit l(x) the exact answer is E sigmoid(l(x) +
    sqrt(2 eps T) |w| Z); compare at the centre of a large box against Gauss-Hermite quadrature."""
    eps, T = 0.1, 1.0
    m = linear_model(np.zeros((2, 2)), T=T, L=2, viscosity=eps)
    sol = solve_transport(m, resolution=129, extent=(-4, 4, -4, 4), dtype=torch.float64)
    w = np.array([2.0, 1.0])  # W[1] - W[0]
    z, wt = np.polynomial.hermite_e.hermegauss(40)
    X1, X2 = np.meshgrid(sol.x1.astype(np.float64), sol.x2.astype(np.float64))
    inner = X1**2 + X2**2 <= 1.0
    logit = X1[inner] * w[0] + X2[inner] * w[1] + 0.3
    sd = np.sqrt(2 * eps * T) * np.linalg.norm(w)
    exact = (1 / (1 + np.exp(-(logit[:, None] + sd * z[None])))) @ wt / wt.sum()
    assert np.abs(sol.u[..., 1][inner] - exact).max() < 2e-3
    plain = solve_transport(m, resolution=129, extent=(-4, 4, -4, 4), viscosity=0.0, dtype=torch.float64)
    assert np.abs(plain.u[..., 1][inner] - sol.u[..., 1][inner]).max() > 0.02  # the diffusion did something


def test_refusals():
    m = linear_model(A)
    with pytest.raises(ConfigError, match="valid: semi_lagrangian, upwind"):
        solve_transport(m, scheme="spectral")
    lifted = build_model(Config(lift=1), 2)
    with pytest.raises(ConfigError, match="plane only"):
        solve_transport(lifted)
    with pytest.raises(ConfigError, match="resolution"):
        solve_transport(m, resolution=4)


@pytest.mark.slow
def test_orders_on_the_grid_solver_scenarios_own_box():
    # paths that leave the box are followed on to T (no edge values): the orders hold on the whole box
    import flowviz
    from flowviz.core.presets import preset_configs

    r = flowviz.train(preset_configs("grid_solver")[0])
    m, box = r.model, r.data.extent()
    md = m.double_copy()

    def grid_pts(sol):
        X1, X2 = np.meshgrid(sol.x1, sol.x2)
        return np.c_[X1.ravel(), X2.ravel()]

    err = {}
    for N in (64, 256):  # semi-Lagrangian on the network's own blocks against F = f o Phi
        sol = solve_transport(m, resolution=N, extent=box, time_steps="blocks")
        err[N] = np.abs(sol.u - m.predict_proba(grid_pts(sol)).reshape(sol.u.shape)).mean()
    sl = np.log2(err[64] / err[256]) / 2
    up = {}
    for N in (64, 128):  # upwind against the PDE's solution f(x(T)), x(T) from dopri5
        sol = solve_transport(m, resolution=N, extent=box, scheme="upwind")
        xT = torch.as_tensor(m.reference(grid_pts(sol), rtol=1e-7, atol=1e-9)[-1])
        exact = torch.softmax(md.head(xT), -1).detach().numpy().reshape(sol.u.shape)
        up[N] = np.abs(sol.u - exact).mean()
    upw = np.log2(up[64] / up[128])
    assert sl >= 1.8 and upw >= 0.9, (err, up)
    readme = (ROOT / "README.md").read_text()
    assert (
        f'semi-Lagrangian with `time_steps="blocks"` order {sl:.2f} from 64² to 256² (mean |u − F| '
        f"{err[64]:.2g} → {err[256]:.2g}), upwind order {upw:.2f} from 64² to 128² against f(x(T)) from "
        f"dopri5 ({up[64]:.2g} → {up[128]:.2g})"
    ) in readme, (sl, upw, err, up)
