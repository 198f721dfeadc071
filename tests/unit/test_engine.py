"""The training step engine (flowviz.training.engine): one step is one optimiser step on the drawn batch, a
non-finite loss restores exactly the backed-up weights and stops that member only, and snapshots are marked
every log_every steps, at a divergence, on cancelling and at the end. The CUDA-graph engine's bookkeeping is
run on the CPU with the capture replaced by an eager call (as in tests/unit/test_graphs.py)."""

import contextlib
import math
import threading

import pytest
import torch
from tiny import SMALL

import flowviz
import flowviz.training.graphs as graphs
from flowviz.training.engine import Engine

X = torch.randn(12, 2, generator=torch.Generator().manual_seed(0))
Y = X @ torch.tensor([1.5, -0.5]) + 0.25  # (12,) a linear target
LR = 0.1


def _lsq(w, xb, yb):
    return ((xb @ w - yb) ** 2).mean()


def _engine(kind=Engine, *, members=1, batch_size=0, nan_at=None, seed=0):
    """An engine fitting w in R^2 by least squares with SGD, per member; ``nan_at``: {member: call} at which that
    member's loss (and so its gradient) becomes NaN."""
    ws = [torch.zeros(2, requires_grad=True) for _ in range(members)]
    calls = [0] * members

    def losses(xb, yb, gen):
        out = []
        for i, w in enumerate(ws):
            calls[i] += 1
            lo = _lsq(w, xb, yb)
            out.append(lo * math.nan if (nan_at or {}).get(i) == calls[i] else lo)
        return out

    opt = torch.optim.SGD(ws, lr=LR)
    return kind([[w] for w in ws], opt, losses, x=X, y=Y, batch_size=batch_size, seed=seed), ws


@pytest.fixture
def eager_graphs(monkeypatch):
    def capture(fn):
        out = torch.empty(())
        return (lambda: out.copy_(fn().detach())), out

    monkeypatch.setattr(graphs, "_capture", capture)
    monkeypatch.setattr(graphs, "_side_stream", contextlib.nullcontext)


def test_a_step_is_one_sgd_step_on_the_loss_and_backs_up_the_weights_before_it():
    eng, (w,) = _engine()
    for _ in range(3):
        before = w.detach().clone()
        ref = before.clone().requires_grad_(True)
        _lsq(ref, X, Y).backward()
        assert eng.step() == []
        assert torch.equal(w.detach(), before.add(ref.grad, alpha=-LR))  # p <- p - lr grad, bit for bit
        assert torch.equal(eng.backup[0][0], before)


def test_mini_batches_are_distinct_rows_with_their_labels_and_follow_the_seed():
    a, _ = _engine(batch_size=5, seed=3)
    b, _ = _engine(batch_size=5, seed=3)
    c, _ = _engine(batch_size=5, seed=4)
    draws = [(a.draw(), b.draw(), c.draw()) for _ in range(4)]
    for (xa, ya), (xb, yb), _ in draws:
        assert xa.shape == (5, 2) and len({tuple(r) for r in xa.tolist()}) == 5  # without replacement
        rows = [int((X == r).all(1).nonzero()) for r in xa]
        assert torch.equal(ya, Y[rows])  # each point keeps its label
        assert torch.equal(xa, xb) and torch.equal(ya, yb)  # the same seed draws the same batches
    assert any(not torch.equal(xa, xc) for (xa, _), _, (xc, _) in draws)
    full, _ = _engine(batch_size=12)
    assert full.draw()[0] is X  # batch_size >= n: the whole set, no copy


@pytest.mark.parametrize("kind", ["eager", "graph"])
@pytest.mark.parametrize("nan_at", [1, 2, 3, 4, 5, 6])  # in the graph engine: warm-up steps, the first replays
def test_a_non_finite_loss_restores_exactly_the_weights_before_the_last_step(eager_graphs, kind, nan_at):
    eng, (w,) = _engine(Engine if kind == "eager" else graphs.GraphEngine, nan_at={0: nan_at})
    seen = [w.detach().clone()]  # the weights before each step
    for _ in range(nan_at - 1):
        assert eng.step() == []
        seen.append(w.detach().clone())
    ((member, value),) = eng.step()
    assert member == 0 and math.isnan(value) and eng.live == ()
    # the loss of seen[-1] is not finite: the weights kept are those before it, the last with a finite loss
    assert torch.equal(w.detach(), seen[max(0, len(seen) - 2)])
    assert torch.isfinite(w).all()


def test_a_diverging_member_stops_alone_and_the_others_train_on_unchanged():
    eng, ws = _engine(members=3, batch_size=6, nan_at={1: 3})
    alone, (w_alone,) = _engine(batch_size=6)
    after = {}
    for step in range(1, 7):
        stopped = eng.step()
        alone.step()
        after[step] = ws[1].detach().clone()
        if step == 3:
            assert [m for m, _ in stopped] == [1] and eng.live == (0, 2)
        else:
            assert stopped == []
    assert not torch.equal(after[1], after[2])
    assert torch.equal(after[3], after[1]) and torch.equal(after[6], after[1])  # restored, then left alone
    for w in (ws[0], ws[2]):
        assert torch.equal(w.detach(), w_alone.detach())  # same batches, same steps as a run alone


@pytest.mark.parametrize(
    "total, log_every, want",
    [(20, 5, [5, 10, 15, 20]), (22, 5, [5, 10, 15, 20, 22]), (3, 10, [3]), (0, 10, [0]), (4, 1, [1, 2, 3, 4])],
)
def test_marks_come_every_log_every_steps_and_once_at_the_end(total, log_every, want):
    eng, _ = _engine()
    marks = list(eng.run(total, log_every=log_every))
    assert [m.step for m in marks] == want
    assert [m.done for m in marks] == [False] * (len(want) - 1) + [True]
    assert all(m.members == (0,) and not m.cancelled and m.diverged is None for m in marks)


def test_cancelling_marks_the_step_before_and_ends():
    eng, _ = _engine(members=2)
    stop = threading.Event()
    marks = []
    for m in eng.run(100, log_every=4, cancel=stop):
        marks.append(m)
        if m.step == 8:
            stop.set()
    assert [m.step for m in marks] == [4, 8, 8]
    assert marks[-1].cancelled and marks[-1].done and marks[-1].members == (0, 1)


def test_a_divergence_is_marked_at_the_step_before_and_the_rest_go_on():
    eng, _ = _engine(members=2, nan_at={0: 7})
    marks = list(eng.run(10, log_every=5))
    assert [(m.step, m.members, m.done) for m in marks] == [(5, (0, 1), False), (6, (0,), True), (10, (1,), True)]
    assert math.isnan(marks[1].diverged) and marks[0].diverged is None and marks[2].diverged is None
    single, _ = _engine(nan_at={0: 7})
    assert [(m.step, m.done) for m in single.run(10, log_every=5)] == [(5, False), (6, True)]  # nothing after


@pytest.mark.parametrize("optimizer, weight_decay", [("adam", 0.0), ("adam", 0.01), ("sgd", 0.1)])
def test_the_fused_optimiser_gives_the_default_loops_weights_up_to_rounding(monkeypatch, optimizer, weight_decay):
    """make_optimizer asks for torch's fused update on a CPU (one kernel for all tensors): after 60 steps the
    weights of torch's default one-tensor loop to within a few float32 roundings (SGD: bit for bit), the
    same bits on a second run, and the same bits as the multi-tensor update where a caller chooses that."""
    from flowviz.training import engine as eng
    from flowviz.training import train as tr

    cfg = SMALL.replace(optimizer=optimizer, weight_decay=weight_decay, lr=0.05)
    made = []

    def with_options(**chosen):
        def make(config, params, **options):
            made.append(eng.make_optimizer(config, params, **{**options, **chosen}))
            return made[-1]

        return make

    monkeypatch.setattr(tr, "make_optimizer", with_options())
    fast, again = (flowviz.train(cfg).model.state_dict() for _ in range(2))
    assert made[0].defaults["fused"] is True and not made[0].defaults["foreach"]  # the default really is fused
    monkeypatch.setattr(tr, "make_optimizer", with_options(foreach=False))
    slow = flowviz.train(cfg).model.state_dict()
    assert made[-1].defaults["foreach"] is False and not made[-1].defaults["fused"]  # torch's one-tensor loop
    monkeypatch.setattr(tr, "make_optimizer", with_options(foreach=True))
    multi = flowviz.train(cfg).model.state_dict()
    for k, v in fast.items():
        assert torch.equal(v, again[k]), k
        if optimizer == "sgd":
            assert torch.equal(v, slow[k]), k
        else:  # measured: at most 1.8e-6 of the tensor's largest entry
            torch.testing.assert_close(v, slow[k], rtol=0, atol=1e-5 * float(slow[k].abs().max()))
        assert torch.equal(multi[k], slow[k]), k  # (the multi-tensor update is the loop's, bit for bit)
