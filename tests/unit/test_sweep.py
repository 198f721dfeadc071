"""Depth and step-size sweeps: batching is exact, convergence orders, depth transfer, coarse to fine (in this
process; on worker processes: tests/serve/test_sweep_workers.py; the command line: tests/cli/test_cli.py)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny import SWEEP as SMALL

import flowviz
from flowviz.core.data import make_dataset
from flowviz.core.errors import ConfigError
from flowviz.core.fastpath import pack_lanes
from flowviz.training.batch import batch_reason, train_batched
from flowviz.training.sweep import coarse_to_fine, depth_transfer, parse_vary, refine, run_sweep


@given(st.lists(st.integers(1, 64), min_size=1, max_size=10))
@settings(max_examples=60, deadline=None)
def test_lanes_hold_every_member_once_without_overlap(lengths):
    plan = pack_lanes(lengths)
    assert plan.blocks == max(lengths)
    used = [[] for _ in range(plan.lanes)]
    for m, (lane, first, L) in enumerate(plan.slots):
        assert L == lengths[m] and first + L <= plan.blocks
        used[lane] += range(first, first + L)
        assert (m, lane) in plan.ends[first + L - 1]
        assert first == 0 or lane in plan.starts[first]
    for u in used:
        assert len(u) == len(set(u))  # no block of a lane is used twice
    assert sum(lengths) > (plan.lanes - 1) * plan.blocks / 2  # first-fit: no two lanes both half empty


def test_a_doubling_depth_sweep_packs_into_two_lanes():
    plan = pack_lanes([1, 2, 4, 8, 16, 32, 64])
    assert (plan.blocks, plan.lanes) == (64, 2)


@pytest.mark.parametrize(
    "key, values, extra",
    [
        ("n_steps", [1, 2, 4, 8], {}),
        ("n_steps", [2, 3, 8], {"time_mode": "continuous", "knots": 4}),
        ("horizon", [0.5, 1.0, 2.0], {"n_steps": 6}),
        ("smoothness", [0.0, 0.1, 1.0], {"n_steps": 5, "batch_size": 64}),
        ("time_mode", ["per_step", "tied", "continuous"], {"n_steps": 4, "activation": "relu"}),
    ],
)
def test_batched_members_match_runs_one_by_one(key, values, extra):
    base = SMALL.replace(**extra)
    configs = [base.replace(**{key: v}) for v in values]
    assert batch_reason(configs) is None
    ds = make_dataset(base)
    batched = train_batched(configs, data=ds, log_every=10)
    for c, b in zip(configs, batched):
        alone = flowviz.train(c, data=ds, log_every=10)
        assert len(b.history) == len(alone.history)
        for rb, ra in zip(b.history, alone.history):
            for k in ("loss", "train_accuracy", "test_accuracy", "test_loss"):
                assert rb[k] == pytest.approx(ra[k], rel=1e-4, abs=1e-6), (c.n_steps, k)
        for (n, pb), pa in zip(b.model.state_dict().items(), alone.model.state_dict().values()):
            torch.testing.assert_close(pb, pa, rtol=1e-4, atol=5e-5, msg=n)  # Adam: float32 sums in another order


def test_lane_groups_keep_whole_lanes_and_every_member_once():
    from flowviz.training.batch import lane_groups

    cfgs = [SMALL.replace(n_steps=L) for L in (1, 2, 4, 8, 16, 32, 64)]
    assert lane_groups(cfgs, 2) == [[6], [0, 1, 2, 3, 4, 5]]  # [64] and [32, 16, 8, 4, 2, 1]
    assert lane_groups(cfgs, 1) == [[0, 1, 2, 3, 4, 5, 6]]
    assert lane_groups(cfgs, 8) == lane_groups(cfgs, 2)  # no more groups than lanes
    three = [SMALL.replace(n_steps=L) for L in (4, 4, 4, 2, 1)]  # lanes [4], [4], [4], [2, 1]
    g = lane_groups(three, 3)
    assert sorted(i for grp in g for i in grp) == [0, 1, 2, 3, 4] and len(g) == 3
    assert any({3, 4} <= set(grp) for grp in g)  # the members sharing a lane stay together


def test_batched_lanes_that_recompute_activations_match_too(monkeypatch):
    import flowviz.core.fastpath as fp

    configs = [SMALL.replace(n_steps=L, train_steps=15) for L in (1, 3, 4)]
    ds = make_dataset(SMALL)
    kept = train_batched(configs, data=ds)
    monkeypatch.setattr(fp, "ACTIVATION_BUDGET", 0)
    recomputed = train_batched(configs, data=ds)
    for a, b in zip(kept, recomputed):
        assert a.metrics["train_loss"] == pytest.approx(b.metrics["train_loss"], rel=1e-5)


def test_configs_that_differ_in_shape_are_not_batched():
    assert "Euler" in batch_reason([SMALL, SMALL.replace(scheme="rk4")])
    assert "width" in batch_reason([SMALL, SMALL.replace(width=4)])
    assert batch_reason([SMALL.replace(kinetic=0.1)]) is not None


def test_a_diverging_member_stops_alone_with_its_last_finite_state():
    base = SMALL.replace(optimizer="sgd", lr=10.0, train_steps=30, n_steps=4)
    res = train_batched([base.replace(horizon=0.01), base.replace(horizon=100.0)])
    quiet, wild = res
    assert quiet.error is None and quiet.metrics["steps"] == 30
    assert wild.error and "diverged" in wild.error
    assert all(torch.isfinite(p).all() for p in wild.model.parameters())


@pytest.mark.parametrize("scheme, order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_sweep_error_slope_is_the_order_of_the_scheme(scheme, order):
    # train_steps=0 with tied weights: every member carries the same autonomous field, whose
    # exact flow is known to 1e-10 (dopri5); the sweep's own error column must fall like s^order
    base = SMALL.replace(train_steps=0, time_mode="tied", scheme=scheme, horizon=2.0, n_samples=60)
    Ls = [4, 8, 16, 32] if order < 4 else [2, 4, 8, 16]
    s = run_sweep(base, "n_steps", Ls)
    h = np.array([m.step_size for m in s.members])
    e = np.array([m.disc_error for m in s.members])
    slope = np.polyfit(np.log(h), np.log(e), 1)[0]
    assert slope == pytest.approx(order, abs=0.25), (scheme, e)
    assert s.batched == (scheme == "euler")


def test_depth_transfer_of_a_continuous_flow_on_moons():
    cfg = flowviz.Config(dataset="moons", time_mode="continuous", n_steps=16, train_steps=300, lr=0.02)
    r = flowviz.train(cfg)
    t = depth_transfer([r.model], r.data, [16, 64, 256])
    acc16, acc64, acc256 = t.accuracy[0]
    assert acc16 > 0.95
    assert abs(acc64 - acc16) <= 0.02 and abs(acc256 - acc16) <= 0.02


def test_per_step_rows_hold_only_their_own_depth():
    r = flowviz.train(SMALL.replace(n_steps=4, train_steps=5))
    t = depth_transfer([r.model], r.data, [2, 4, 8])
    assert np.isnan(t.accuracy[0, 0]) and np.isfinite(t.accuracy[0, 1]) and np.isnan(t.accuracy[0, 2])


def test_refine_doubles_the_partition_and_keeps_the_field():
    r = flowviz.train(SMALL.replace(n_steps=8, train_steps=60))
    fine = refine(r.model)
    assert fine.L == 16
    t = np.linspace(0.01, 0.99, 37)  # the per-step field v(t, .) itself is unchanged
    z = torch.randn(50, 2)
    for ti in t:
        torch.testing.assert_close(fine.vector_field(float(ti), z), r.model.vector_field(float(ti), z))
    x = r.data.x_train
    p0, p1 = r.model.predict_proba(x), fine.predict_proba(x)
    assert np.mean(p0.argmax(1) == p1.argmax(1)) > 0.97
    assert np.abs(p0 - p1).mean() < 0.05
    lin = refine(r.model, "linear")  # the smoother alternative changes the field, hence the prediction more
    assert np.abs(lin.predict_proba(x) - p0).mean() > np.abs(p1 - p0).mean()


def test_coarse_to_fine_continues_where_the_coarse_level_stopped():
    c = coarse_to_fine(SMALL.replace(train_steps=60), L_start=2, L_end=16, data=None)
    assert c.levels == [2, 4, 8, 16] and c.result.model.L == 16
    assert len(c.jumps) == 3
    for j in c.jumps:  # the first evaluation at 2L is close to the last at L
        assert abs(j["accuracy_after"] - j["accuracy_before"]) <= 0.03
        assert abs(j["loss_after"] - j["loss_before"]) <= 0.05 + 0.25 * j["loss_before"]
    assert c.cost == 60 * (2 + 4 + 8 + 16) and c.scratch_cost == 240 * 16
    assert c.scratch is not None and c.scratch.model.L == 16


@pytest.mark.parametrize(
    "text, msg",
    [
        ("width=1,2", "cannot sweep"),
        ("n_steps", "KEY=V1"),
        ("n_steps=1,1", "repeat"),
        ("n_steps=0,4", "out of range"),
        ("scheme=euler,heun", "not one of"),
        ("n_steps=", "no values"),
    ],
)
def test_bad_vary_strings_are_clear(text, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_vary(text)
