"""The model's public surface, its invariants, and the fast path against plain autograd."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flowviz import Config, ConfigError, build_model, train
from flowviz.core.fields import ACTIVATIONS

X = np.random.default_rng(0).normal(size=(30, 2)).astype(np.float32)


@pytest.mark.parametrize("scheme", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("time_mode", ["per_step", "tied", "continuous"])
@pytest.mark.parametrize("lift", [0, 2])
def test_u_is_constant_along_characteristics(scheme, time_mode, lift):
    m = build_model(Config(scheme=scheme, time_mode=time_mode, lift=lift, n_steps=6, knots=3, head="learned"), 3)
    xs = m.trajectory(X)  # (L+1, n, d)
    assert xs.shape == (7, 30, 2 + lift)
    fL = torch.softmax(m.head(torch.as_tensor(xs[-1])), -1).detach().numpy()
    for k in range(7):
        np.testing.assert_allclose(m.transported(xs[k], k), fL, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.predict_proba(X), fL, rtol=1e-5, atol=1e-6)


def test_numpy_in_numpy_out_tensor_in_tensor_out():
    m = build_model(Config(n_steps=4), 2)
    assert isinstance(m.predict_proba(X), np.ndarray)
    p = m.predict_proba(torch.as_tensor(X))
    assert isinstance(p, torch.Tensor) and p.shape == (30, 2)
    torch.testing.assert_close(p.sum(1), torch.ones(30))
    with pytest.raises(ConfigError, match="out of range"):
        m.transported(X, 9)


def test_with_steps_needs_tied_or_continuous_weights():
    with pytest.raises(ConfigError, match="tied or continuous"):
        build_model(Config(time_mode="per_step"), 2).with_steps(8)
    m = build_model(Config(time_mode="continuous", n_steps=8), 2)
    m2 = m.with_steps(32)
    assert m2.L == 32 and m2.trajectory(X).shape == (33, 30, 2)
    torch.testing.assert_close(m2.field.W1, m.field.W1)


def test_continuous_model_refined_is_closer_to_its_reference():
    r = train(
        Config(
            dataset="moons",
            n_samples=300,
            time_mode="continuous",
            knots=6,
            n_steps=16,
            horizon=2.0,
            train_steps=150,
            lr=0.02,
        )
    )
    x = r.data.x_train[:100]

    def err(L):
        m = r.model.with_steps(L)
        return np.linalg.norm(m.trajectory(x)[-1] - m.reference(x)[-1], axis=1).mean()

    e4, e16, e64 = err(4), err(16), err(64)
    assert e64 < e16 < e4, (e4, e16, e64)


def _loss_and_grads(m, x, y):
    m.zero_grad()
    loss = F.cross_entropy(m(x), y)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters()}


@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("time_mode", ["per_step", "tied", "continuous"])
def test_fast_path_matches_autograd(act, time_mode):
    cfg = Config(activation=act, time_mode=time_mode, n_steps=7, knots=3, width=6, lift=1, seed=4)
    m = build_model(cfg, 3)
    x, y = torch.as_tensor(X), torch.as_tensor(np.arange(30) % 3)
    assert m.fast_path_applies(training=True)
    l_fast, g_fast = _loss_and_grads(m, x, y)
    m.fast = False
    assert not m.fast_path_applies(training=True)
    l_ref, g_ref = _loss_and_grads(m, x, y)
    torch.testing.assert_close(l_fast, l_ref, rtol=1e-5, atol=1e-6)
    for n in g_ref:
        torch.testing.assert_close(g_fast[n], g_ref[n], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "kw", [dict(field="mlp"), dict(scheme="rk4"), dict(scheme="plain"), dict(viscosity=0.1), dict(kinetic=0.1)]
)
def test_fast_path_falls_back_to_autograd(kw, monkeypatch):
    import flowviz.core.model as fm

    m = build_model(Config(n_steps=4, **kw), 2)
    calls = []
    monkeypatch.setattr(fm, "euler_two_layer", lambda *a: calls.append(1))
    m.train()
    F.cross_entropy(
        m(torch.as_tensor(X), noise_gen=torch.Generator().manual_seed(0) if kw.get("viscosity") else None),
        torch.zeros(30, dtype=torch.long),
    ).backward()
    assert not m.fast_path_applies(training=True) and calls == []
    m2 = build_model(Config(n_steps=4), 2)
    monkeypatch.setattr(fm, "euler_two_layer", lambda *a: calls.append(1) or torch.zeros(30, 2))
    m2(torch.as_tensor(X))
    assert calls == [1]


def test_viscous_predictions_are_seeded_monte_carlo_means():
    m = build_model(Config(viscosity=0.2, mc_samples=8, n_steps=5), 2)
    p1, p2 = m.predict_proba(X), m.predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    m0 = build_model(Config(viscosity=0.0, n_steps=5), 2)
    assert not np.allclose(p1, m0.predict_proba(X))
    np.testing.assert_allclose(p1.sum(1), 1, rtol=1e-5)


def test_lift_appends_zero_coordinates():
    m = build_model(Config(lift=3), 2)
    xs = m.trajectory(X)
    assert xs.shape[-1] == 5 and np.all(xs[0, :, 2:] == 0) and np.allclose(xs[0, :, :2], X)


@pytest.mark.parametrize("act", ["tanh", "relu", "softplus"])
def test_recomputing_activations_gives_the_same_gradients(act, monkeypatch):
    # big runs recompute a(W1 x + b1) in the backward instead of storing it (memory O(L d n)); same numbers
    import flowviz.core.fastpath as fp

    m = build_model(Config(n_steps=6, width=8, activation=act, time_mode="continuous", knots=3), 2)
    x, y = torch.randn(50, 2), torch.randint(0, 2, (50,))
    l_keep, g_keep = _loss_and_grads(m, x, y)
    monkeypatch.setattr(fp, "ACTIVATION_BUDGET", 0)
    l_re, g_re = _loss_and_grads(m, x, y)
    torch.testing.assert_close(l_keep, l_re, rtol=0, atol=0)
    for n in g_keep:
        torch.testing.assert_close(g_keep[n], g_re[n], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "kw",
    [
        dict(scheme="rk4"),
        dict(field="mlp"),
        dict(field="antisymmetric", scheme="midpoint"),
        dict(viscosity=0.1),
        dict(kinetic=0.1),
    ],
)
def test_recomputing_steps_in_the_backward_gives_the_same_gradients(kw, monkeypatch):
    # the general path checkpoints each step when autograd's activations would be too large
    import flowviz.core.model as fm

    cfg = Config(n_steps=5, width=8, time_mode="continuous", knots=3, **kw)
    x, y = torch.randn(40, 2), torch.randint(0, 2, (40,))

    def loss_and_grads():
        m = build_model(cfg, 2)
        m.train()
        gen = torch.Generator().manual_seed(1)
        loss = F.cross_entropy(m(x, noise_gen=gen if cfg.viscosity else None), y)
        if cfg.kinetic:
            from flowviz.training.train import penalties

            loss = loss + penalties(m, m.lift(x))
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters()}

    l_keep, g_keep = loss_and_grads()
    monkeypatch.setattr(fm, "GENERIC_BUDGET", 0)
    l_re, g_re = loss_and_grads()
    torch.testing.assert_close(l_keep, l_re)
    for n in g_keep:
        torch.testing.assert_close(g_keep[n], g_re[n], rtol=1e-5, atol=1e-7)


def _chain_node(out: torch.Tensor):
    """The fast chain's autograd node under a model's output (its saved tensors: X, A, W1a, W2a)."""
    todo = [out.grad_fn]
    while todo:
        f = todo.pop()
        if type(f).__name__ == "_LaneChainBackward":
            return f
        todo.extend(g for g, _ in f.next_functions if g is not None)
    raise AssertionError("no fast chain in this graph")


def test_the_chains_kept_buffers_are_never_shared_by_two_live_graphs():
    """The chain keeps its buffers from one step to the next (a view per block costs a microsecond): reused only
    once autograd has let go of the graph that saved them. Two forwards before one backward, a graph kept for a
    second backward with a forward between, a graph dropped unused: each gives autograd's gradients."""
    m = build_model(Config(n_steps=6, width=8, seed=3), 2)
    x, y = torch.as_tensor(X), torch.as_tensor(np.arange(30) % 2)

    def grads(fast: bool, twice: bool = False):
        m.fast = fast
        m.zero_grad()
        loss = F.cross_entropy(m(x), y) + F.cross_entropy(m(0.5 * x), y)  # two forwards of one shape, then one backward
        loss.backward(retain_graph=twice)
        if twice:  # a forward of the same shape in between, then the kept graph's second backward
            F.cross_entropy(m(2 * x), y).backward()
            m.zero_grad()
            loss.backward()
        return {n: p.grad.clone() for n, p in m.named_parameters()}

    ref = grads(False)
    for twice in (False, True):
        got = grads(True, twice)
        for n in ref:
            torch.testing.assert_close(got[n], ref[n], rtol=1e-4, atol=1e-6)
    m.fast = True
    first = m(x)
    second = m(x)  # the first graph is alive: other buffers
    p1, p2 = (_chain_node(o).saved_tensors[0].data_ptr() for o in (first, second))
    assert p1 != p2
    del first, second
    assert _chain_node(m(x)).saved_tensors[0].data_ptr() == p1  # let go of: the kept buffers again


def test_threads_training_at_once_get_the_weights_of_one_alone():
    """Each thread keeps buffers of its own (the server trains runs in threads in one process)."""
    import threading

    cfg = Config(n_samples=200, n_steps=6, width=8, train_steps=40, seed=5)
    alone = train(cfg).model.state_dict()
    out = [None, None]

    def work(i):
        out[i] = train(cfg).model.state_dict()

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    for got in out:
        assert all(torch.equal(got[k], v) for k, v in alone.items())
