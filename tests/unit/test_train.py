import threading

import numpy as np
import pytest
import torch
from tiny import SMALL

from flowviz import Config, TrainingDiverged, train, train_iter
from flowviz.training.train import penalties


@pytest.mark.parametrize(
    "kw",
    [
        {},
        dict(batch_size=32),
        dict(viscosity=0.05, mc_samples=4),
        dict(field="mlp", smoothness=0.1, kinetic=0.1),
        dict(optimizer="sgd", lr=0.1),
    ],
)
def test_same_seed_same_numbers_on_cpu(kw):
    cfg = SMALL.replace(**kw)
    a, b = train(cfg), train(cfg)

    def numbers(r):  # everything but the wall-clock time
        return [{k: v for k, v in h.items() if k != "elapsed"} for h in r.history]

    assert len(a.history) == 6 and numbers(a) == numbers(b)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    c = train(cfg.replace(seed=1))
    assert c.history[-1]["loss"] != a.history[-1]["loss"]


def test_training_learns_moons_and_reports_metrics():
    r = train(Config(n_samples=400, n_steps=8, train_steps=200, lr=0.02))
    assert r.metrics["train_accuracy"] >= 0.97 and r.metrics["test_accuracy"] >= 0.95
    assert {"train_accuracy", "test_accuracy", "train_loss"} <= set(r.metrics)
    assert r.history[-1]["step"] == 200 and r.history[0]["step"] == 10


def test_snapshots_and_cancel():
    cancel = threading.Event()
    snaps = []
    for s in train_iter(SMALL.replace(train_steps=1000), log_every=5, cancel=cancel, keep_state=True):
        snaps.append(s)
        if s.step == 10:
            cancel.set()
    assert [s.step for s in snaps] == [5, 10, 10]
    assert snaps[-1].done and snaps[-1].cancelled and snaps[-1].state is not None
    assert snaps[-1].state["field.W1"].shape == (6, 8, 2)


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_finite_state():
    cfg = Config(optimizer="sgd", lr=10.0, horizon=10.0, n_steps=4, train_steps=100, n_samples=200)
    with pytest.raises(TrainingDiverged, match="diverged at step .* smaller learning rate") as e:
        train(cfg)
    res = e.value.result
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    assert np.isfinite(res.model.predict_proba(res.data.x_train)).all()
    assert res.history and res.history[-1]["step"] < 100


def test_penalties_match_their_formulas():
    cfg = Config(n_steps=5, smoothness=0.7, kinetic=0.0)
    r = train(cfg.replace(train_steps=5, n_samples=100))
    m = r.model
    W = [p.detach() for p in m.block_params()]
    want = 0.7 * sum(((w[k] - w[k - 1]) ** 2).sum() / m.s[k] for w in W for k in range(1, 5))
    torch.testing.assert_close(penalties(m), want)
    m.config = m.config.replace(smoothness=0.0, kinetic=2.0)
    x0 = torch.as_tensor(r.data.x_train)
    xs = m.flow(x0, record=True).detach()
    kin = sum(m.s[k] * (m.velocity(xs[k], k + 1) ** 2).sum(1).mean() for k in range(5))
    torch.testing.assert_close(penalties(m, x0), 2.0 * kin, rtol=1e-4, atol=1e-6)


def test_smoothness_keeps_adjacent_blocks_close():
    base = SMALL.replace(train_steps=150, lr=0.02)
    rough, smooth = train(base), train(base.replace(smoothness=1.0))

    def drift(r):
        return sum(((p[1:] - p[:-1]) ** 2).sum() for p in r.model.block_params()).item()

    assert drift(smooth) < 0.5 * drift(rough)


def test_missing_device_is_a_config_error():
    from flowviz import ConfigError

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device=cuda"):
            train(SMALL.replace(device="cuda"))


@pytest.mark.parametrize("extra", [{}, {"viscosity": 0.2, "mc_samples": 4}, {"lift": 2, "scheme": "rk4"}])
def test_one_evaluation_pass_per_snapshot_gives_the_two_separate_ones_exactly(extra):
    """Snapshots score train and test points in one pass (train_iter's evaluate_both): the same numbers as two
    passes, the Monte-Carlo paths included (common random numbers do not depend on the other points)."""
    from flowviz.training.train import data_tensors, evaluate, evaluate_both

    r = train(SMALL.replace(**extra))
    xtr, ytr, xte, yte = data_tensors(r.data, torch.device("cpu"))
    both = evaluate_both(r.model, torch.cat([xtr, xte]), ytr, yte)
    assert both == (evaluate(r.model, xtr, ytr), evaluate(r.model, xte, yte))
    assert r.history[-1]["test_loss"] == both[1][0] and r.history[-1]["train_accuracy"] == both[0][1]
