"""The instruments' mathematics (flowviz.training.instruments, .volume) against exact or independent answers."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.fields import linear_model

from flowviz import Config, build_model, plots
from flowviz.training.instruments import (
    STABILITY_POLYNOMIALS,
    adjoint_data,
    adjoint_recursion,
    amplification,
    continuous_adjoint,
    flow_paths,
    probe_data,
    stability_data,
)
from flowviz.training.volume import class_densities, divergence_integral, logdet_sum

RNG = np.random.default_rng(3)
PTS = RNG.uniform(-1.5, 1.5, (40, 2)).astype(np.float32)


def random_model(**kw):
    cfg = Config(**{"width": 8, "n_steps": 6, "horizon": 2.0, "seed": 4, **kw})
    m = build_model(cfg, 2)
    with torch.no_grad():
        m.field.b2.normal_(0, 0.3)
    return m.train(False)


@pytest.mark.parametrize("kw", [{}, {"scheme": "rk4"}, {"time_mode": "continuous"}, {"lift": 1}])
def test_probe_u_is_constant_along_the_characteristic(kw):
    m = random_model(**kw)
    pr = probe_data(m, (0.4, -0.7))
    assert pr.u.shape == (m.L + 1, 2) and pr.xs.shape == (m.L + 1, m.dim)
    np.testing.assert_allclose(pr.u, np.broadcast_to(pr.u[-1], pr.u.shape), atol=2e-6)  # eps = 0: constant
    np.testing.assert_allclose(pr.f[-1], pr.u[-1], atol=1e-6)  # u(T, .) = f
    W, b = m.head_W.detach().numpy().astype(np.float64), m.head_b.detach().numpy().astype(np.float64)
    logits = pr.xs.astype(np.float64) @ W.T + b  # the read-out f(x_k) = softmax(W x_k + b) at every layer
    np.testing.assert_allclose(pr.f, np.exp(logits) / np.exp(logits).sum(1, keepdims=True), atol=1e-6)
    assert pr.extra.shape == (m.L + 1, m.dim - 2)
    step = np.linalg.norm(np.diff(pr.xs, axis=0), axis=1)
    np.testing.assert_allclose(pr.ratio, step / np.linalg.norm(pr.xs[:-1], axis=1), rtol=1e-5)


def test_probe_eigenvalues_on_a_linear_field():
    A = np.array([[0.2, -1.0], [1.5, -0.4]])
    m = linear_model(A, T=2.0, L=5)
    pr = probe_data(m, (0.3, 0.2))
    want = np.sort_complex(1 + 0.4 * np.linalg.eigvals(A))  # eig(I + s A), s = T / L
    for e in pr.eig:
        np.testing.assert_allclose(np.sort_complex(e), want, atol=1e-5)


@pytest.mark.parametrize(
    "scheme, s, outside",
    [
        ("euler", 0.5, [False, False]),  # z = -1.5, -0.25: |1 + z| = 0.5, 0.75
        ("euler", 1.0, [True, False]),  # z = -3: |1 + z| = 2
        ("midpoint", 0.5, [False, False]),  # |1 - 1.5 + 1.125| = 0.625
        ("midpoint", 1.0, [True, False]),  # |1 - 3 + 4.5| = 2.5
        ("rk4", 5 / 6, [False, False]),  # z = -2.5 inside (the real interval ends near -2.785)
        ("rk4", 1.0, [True, False]),  # z = -3: R = 1.375
    ],
)
def test_stability_membership_on_a_linear_field(scheme, s, outside):
    P = np.array([[1.0, 0.4], [0.2, 1.0]])
    A = P @ np.diag([-3.0, -0.5]) @ np.linalg.inv(P)  # eigenvalues -3 and -0.5
    m = linear_model(A, T=s * 4, L=4, scheme=scheme)
    st = stability_data(m, PTS)
    z = np.sort(st.z.real, -1)
    np.testing.assert_allclose(z, np.broadcast_to(s * np.array([-3.0, -0.5]), z.shape), atol=1e-5)
    np.testing.assert_allclose(np.abs(st.z.imag), 0, atol=1e-6)
    np.testing.assert_allclose(st.outside, np.mean(outside))
    np.testing.assert_allclose(st.max_abs, 3 * s, rtol=1e-5)
    # on a linear field the step is R(s A): det D(step) = prod R(z_i) exactly; for Euler R(z) = 1 + z, so a real
    # eigenvalue of s DV below -1 <=> det < 0; R of midpoint and rk4 (even-degree Taylor polynomials) is > 0 on R
    R = np.polynomial.polynomial.polyval(st.z, STABILITY_POLYNOMIALS[scheme])
    np.testing.assert_allclose(st.det, np.prod(R, -1).real, rtol=1e-5)
    if scheme == "euler":
        np.testing.assert_array_equal(st.det < 0, st.fold_eig % 2 == 1)
    assert ((st.det < 0).all()) == (scheme == "euler" and s * 3 > 1)


def test_complex_eigenvalues_and_the_region_boundary():
    A = np.array([[-1.0, -2.0], [2.0, -1.0]])  # eigenvalues -1 +- 2i
    for s, out in ((0.2, False), (0.5, True)):  # |1 + s(-1 +- 2i)|^2 = 0.8, 1.25
        st = stability_data(linear_model(A, T=4 * s, L=4), PTS)
        np.testing.assert_allclose(np.sort(st.z.imag, -1)[..., 1], 2 * s, atol=1e-5)
        assert st.outside.tolist() == [float(out)] * 4
        assert (st.fold_eig == 0).all() and (st.det > 0).all()  # complex pairs never fold
    assert amplification(-2.0, "euler") == 1.0 and amplification(1j * 0.5, "midpoint") > 1


def test_fold_iff_det_negative_on_a_folding_model():
    m = random_model(n_steps=2, horizon=8.0, width=16)
    pts = RNG.uniform(-2, 2, (300, 2)).astype(np.float32)
    st = stability_data(m, pts, max_points=300)
    assert (st.det < 0).any()  # this field folds
    np.testing.assert_array_equal(st.det < 0, st.fold_eig % 2 == 1)
    # the probe's title counts the blocks with det D(block k) < 0 at the probed point
    i = int(np.flatnonzero((st.det < 0).any(0))[0])
    pr = probe_data(m, pts[i])
    np.testing.assert_allclose(pr.det, st.det[:, i], rtol=1e-4, atol=1e-6)
    n = int((st.det[:, i] < 0).sum())
    assert n >= 1 and f"{n} of 2 blocks fold here (det D(block k) < 0)" in plots.probe(pr).layout.title.text


@pytest.mark.parametrize(
    "eigs, det, n_below", [((-2.0, -3.0), 2.0, 2), ((-2.0, -0.5), -0.5, 1), ((-0.5, -0.2), 0.4, 0)]
)
def test_a_fold_is_an_odd_number_of_real_eigenvalues_below_minus_one(eigs, det, n_below):
    # det(I + s DV) = prod(1 + z_i): z = -2, -3 give (-1)(-2) = +2, no fold although both lie below -1
    P = np.array([[1.0, 0.4], [0.2, 1.0]])
    m = linear_model(P @ np.diag(eigs) @ np.linalg.inv(P), T=4.0, L=4)  # s = 1: z = the eigenvalues
    st = stability_data(m, PTS)
    np.testing.assert_allclose(st.det, det, rtol=1e-5)
    assert (st.fold_eig == n_below).all()
    np.testing.assert_array_equal(st.det < 0, st.fold_eig % 2 == 1)
    pr = probe_data(m, (0.3, 0.2))
    np.testing.assert_allclose(pr.det, det, rtol=1e-5)
    np.testing.assert_allclose(pr.det, np.prod(pr.eig, 1).real, rtol=1e-5)
    title = plots.probe(pr).layout.title.text
    assert ("4 of 4 blocks fold here" in title) == (det < 0)
    legend = [tr.name for tr in plots.stability(st).data if tr.name and tr.name.startswith("Re z = −1")]
    assert legend and "odd number" in legend[0] and "exactly one" in legend[0]


def test_logdet_sum_and_divergence_integral_exact_on_a_linear_field():
    A = np.array([[0.3, -1.0], [0.8, -0.7]])
    m = linear_model(A, T=1.5, L=6)
    disc = logdet_sum(m, PTS)
    k = np.arange(7)[:, None]
    np.testing.assert_allclose(disc, k * np.log(abs(np.linalg.det(np.eye(2) + 0.25 * A))) * np.ones((1, 40)), atol=1e-5)
    np.testing.assert_allclose(divergence_integral(m, PTS), k * 0.25 * np.trace(A) * np.ones((1, 40)), atol=1e-7)


def test_eulers_logdet_sum_converges_at_order_one_on_a_tied_field():
    m = random_model(time_mode="tied", horizon=1.0, activation="tanh", n_steps=8)
    cont = divergence_integral(m, PTS)[-1]
    errs = [np.abs(logdet_sum(m.with_steps(L), PTS)[-1] - cont).mean() for L in (8, 16, 32, 64)]
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    np.testing.assert_allclose(orders, 1.0, atol=0.15)


def test_class_densities_integrate_to_one():
    xs = RNG.normal(size=(3, 200, 2))
    y = np.r_[np.zeros(100, int), np.ones(100, int)]
    b, dens = class_densities(xs, y, 2, [0, 2], res=80)
    for d in dens:
        cell = (b[1] - b[0]) / 79 * (b[3] - b[2]) / 79
        np.testing.assert_allclose(d.sum((1, 2)) * cell, 1.0, atol=0.03)


@pytest.mark.parametrize("kw", [{}, {"scheme": "midpoint"}, {"lift": 1, "activation": "relu"}])
def test_adjoint_recursion_is_the_gradient_of_the_loss(kw):
    m = random_model(**kw)
    y = torch.as_tensor((PTS[:, 0] > 0).astype(np.int64))
    z = [m.lift(torch.as_tensor(PTS)).requires_grad_(True)]
    for k in range(1, m.L + 1):
        z.append(m.step_map(z[-1], k))
    loss = F.cross_entropy(m.head(z[-1]), y)
    grads = torch.autograd.grad(loss, z)  # dl/dx_k for every k, by autograd through the whole net
    p, l2 = adjoint_recursion(m, flow_paths(m, PTS), y)  # p_(k-1) = J_k^T p_k with explicit Jacobians
    torch.testing.assert_close(p, torch.stack(grads), rtol=1e-4, atol=1e-7)
    assert float(l2) == pytest.approx(float(loss.detach()), rel=1e-6)


def test_discrete_adjoint_converges_to_odeint_adjoint():
    m = random_model(time_mode="tied", horizon=1.0, n_steps=8)
    y = (PTS[:, 1] > 0).astype(np.int64)
    ref = continuous_adjoint(m, PTS, y)
    errs = []
    for L in (8, 16, 32, 64):
        mm = m.with_steps(L)
        p, _ = adjoint_recursion(mm, flow_paths(mm, PTS), torch.as_tensor(y))
        errs.append(np.linalg.norm(p[0].numpy() - ref, axis=-1).mean())
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    np.testing.assert_allclose(orders, 1.0, atol=0.2)
    ad = adjoint_data(m, PTS, y, with_continuous=True)
    np.testing.assert_allclose(ad.continuous[1][0], errs[0], rtol=1e-3)  # the same number the view shows
    assert list(ad.continuous[0]) == [8, 16, 32, 64]


@pytest.mark.parametrize("act", ["tanh", "relu", "softplus"])
def test_closed_form_divergence_of_the_papers_field_is_the_jacobians_trace(act):
    from flowviz.training.volume import _divergence

    m = random_model(activation=act, time_mode="continuous").double_copy()
    z = torch.as_tensor(PTS, dtype=torch.float64)
    v, div = _divergence(m, 0.7, z)
    J = torch.func.vmap(torch.func.jacrev(lambda p: m.vector_field(0.7, p[None])[0]))(z)
    torch.testing.assert_close(v, m.vector_field(0.7, z))
    torch.testing.assert_close(div, J.diagonal(dim1=1, dim2=2).sum(-1))
    mlp = random_model(field="mlp").double_copy()  # any other field: by autograd
    torch.testing.assert_close(
        _divergence(mlp, 0.3, z)[1],
        torch.func.vmap(torch.func.jacrev(lambda p: mlp.vector_field(0.3, p[None])[0]))(z)
        .diagonal(dim1=1, dim2=2)
        .sum(-1),
    )


@pytest.mark.slow
def test_exact_density_is_the_kde_pushed_by_a_linear_flow():
    # v = A x with Euler: Phi_k = (I + s A)^k = M_k, so the KDE sum_i N(x_i, S) / n at k = 0 is pushed to
    # sum_i N(M_k x_i, M_k S M_k^T) / n exactly: the panel may differ from it only by the interpolation
    from flowviz.core.data import make_dataset
    from flowviz.training.volume import pushed_densities, volume_data

    A = np.array([[-0.3, -1.0], [0.8, -0.2]])
    m = linear_model(A, T=1.0, L=4)
    rng = np.random.default_rng(11)  # its own: the module's RNG depends on which tests ran before
    x = np.r_[rng.normal(0, 0.4, (50, 2)), rng.normal((1.0, 0.5), 0.3, (40, 2))].astype(np.float32)
    y = np.r_[np.zeros(50, int), np.ones(40, int)]
    ks = [0, 2, 4]
    box = (-2.5, 2.5, -2.5, 2.5)
    dens = pushed_densities(m, x, y, 2, ks, box, res=41)
    g = np.linspace(-2.5, 2.5, 41)
    G = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    for i, k in enumerate(ks):
        M = np.linalg.matrix_power(np.eye(2) + 0.25 * A, k)
        for c in range(2):
            q = x[y == c].astype(np.float64)
            S = np.diag((q.std(0) * len(q) ** (-1 / 6)) ** 2)
            C = M @ S @ M.T
            d = G[:, None, :] - (q @ M.T)[None]
            want = np.exp(-0.5 * np.einsum("mni,ij,mnj->mn", d, np.linalg.inv(C), d)).mean(1) / (
                2 * np.pi * np.sqrt(np.linalg.det(C))
            )
            got = dens[i, c].ravel()
            big = want > 0.05 * want.max()
            np.testing.assert_allclose(got[big], want[big], rtol=0.05)  # the KDE of x_k differs by ~20%
            assert abs(got.sum() * (g[1] - g[0]) ** 2 - 1) < 0.02  # a density: mass 1
    data = make_dataset(Config(n_samples=120))
    vd = volume_data(build_model(Config(n_samples=120, n_steps=4), 2), data, res=12, density="exact")
    assert vd.density_kind == "exact"
    assert "exact: ρ_0 / |det DΦ|" in plots.volume(vd).layout.annotations[2].text  # the panel names its density
    assert (
        "KDE of x<sub>k</sub>"  # the figure style typesets x_k
        in plots.volume(volume_data(build_model(Config(n_samples=120, n_steps=4), 2), data, res=12))
        .layout.annotations[2]
        .text
    )
