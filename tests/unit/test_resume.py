"""resume continues a run exactly; a run's checkpoints rewind it exactly (result.at), within the cost model's budget."""

import threading

import pytest
import torch
from tiny import SMALL

import flowviz
from flowviz import ConfigError, resume, train, train_iter
from flowviz.core.cost import CHECKPOINT_MB, CHECKPOINTS, checkpoint_count, checkpoint_steps, estimate, thin_steps
from flowviz.training.train import TrainState, state_bytes


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def rows(history, after=-1):
    """The history rows after step ``after``, without the wall-clock time."""
    return [{k: v for k, v in r.items() if k != "elapsed"} for r in history if r["step"] > after]


@pytest.mark.parametrize("scheme", ["euler", "rk4"])
@pytest.mark.parametrize("time_mode", ["per_step", "continuous"])
@pytest.mark.parametrize("batch_size", [0, 24])
def test_resume_is_bit_for_bit_the_longer_run(scheme, time_mode, batch_size):
    cfg = SMALL.replace(scheme=scheme, time_mode=time_mode, batch_size=batch_size, train_steps=17, device="cpu")
    first = train(cfg, log_every=5)
    went_on = resume(first, steps=13, log_every=5)
    whole = train(cfg.replace(train_steps=30), log_every=5)
    assert same_weights(went_on.model, whole.model)
    assert went_on.config == whole.config and went_on.config.train_steps == 30
    assert rows(went_on.history, 17) == rows(whole.history, 17)  # the snapshots after step 17 are the same numbers
    assert rows(went_on.history)[: len(first.history)] == rows(first.history)
    assert went_on.train_state.step == 30 and torch.equal(went_on.train_state.generator, whole.train_state.generator)
    assert same_weights(first.model, train(cfg, log_every=5).model)  # the first result was not changed


def test_resume_twice_and_a_cancelled_run_go_on_exactly():
    cfg = SMALL.replace(batch_size=16, train_steps=40, device="cpu")
    whole = train(cfg)
    cancel, seen = threading.Event(), []

    def progress(s):
        seen.append(s.step)
        if s.step >= 10:
            cancel.set()

    paused = train(cfg, progress=progress, cancel=cancel)  # stops between steps 10 and 11
    assert paused.train_state.step == 10 and paused.history[-1]["step"] == 10 and 10 in paused.checkpoints
    more = resume(paused)  # to the config's own train_steps
    assert same_weights(more.model, whole.model) and more.config == whole.config
    stepwise = resume(resume(resume(train(cfg.replace(train_steps=1)), steps=1), steps=10), steps=28)
    assert same_weights(stepwise.model, whole.model)


def test_until_stops_after_that_step_with_its_state():
    cfg = SMALL.replace(batch_size=16, train_steps=40, device="cpu")
    snaps = list(train_iter(cfg, until=7, log_every=5))
    last = snaps[-1]
    assert last.done and last.cancelled and last.step == 7 and last.train_state.step == 7
    assert sorted(k for s in snaps for k in (s.kept or {})) == list(range(8))


def test_resume_refuses_a_run_without_its_optimiser_state():
    r = train(SMALL.replace(train_steps=20, device="cpu"))
    with pytest.raises(ConfigError, match="cannot be resumed"):
        resume(r.at(10), steps=5)
    with pytest.raises(ConfigError, match=">= 0"):
        resume(r, steps=-1)


@pytest.mark.slow
def test_at_a_kept_step_is_the_run_trained_that_long():
    cfg = SMALL.replace(batch_size=24, train_steps=60, device="cpu")
    r = train(cfg)
    assert r.checkpoints == list(range(61))  # 61 <= CHECKPOINTS: every step is kept
    assert r.checkpoints == sorted(r.kept) and r.at(60).checkpoints == r.checkpoints
    for s in (1, 7, 33):
        short = train(cfg.replace(train_steps=s))
        back = r.at(s)
        assert same_weights(back.model, short.model) and back.config == short.config
        assert back.metrics["steps"] == s and back.metrics["train_loss"] == short.metrics["train_loss"]
        assert [h["step"] for h in back.history] == [h["step"] for h in r.history if h["step"] <= s]
    assert same_weights(r.at(0).model, flowviz.build_model(cfg, 2))  # step 0: the initial weights
    import flowviz.plots as plots

    assert plots.learning_curves(r.at(33)).data and plots.characteristics(r.at(33)).frames


def test_long_run_keeps_about_a_hundred_dense_early():
    steps = checkpoint_steps(1000, 7384)
    assert len(steps) == CHECKPOINTS and steps[0] == 0 and steps[-1] == 1000
    assert steps[:11] == list(range(11))  # every early step
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    assert gaps == sorted(gaps) or max(gaps[:20]) < min(gaps[-20:])  # sparser later
    thinned = thin_steps(range(50), 10)
    assert thinned[0] == 0 and thinned[-1] == 49 and len(thinned) == 10


@pytest.mark.slow
def test_a_large_config_keeps_fewer_within_the_budget(monkeypatch):
    cfg = SMALL.replace(width=256, n_steps=256, lift=8, train_steps=40, n_samples=60, device="cpu")
    r = train(cfg)
    b = state_bytes(r.model)
    n = checkpoint_count(b)
    assert n < 40 and len(r.checkpoints) == n and r.checkpoints[0] == 0 and r.checkpoints[-1] == 40
    assert len(r.checkpoints) * b <= CHECKPOINT_MB * 2**20
    # the cost model counts them: its peak falls by about the kept copies' size when none may be kept (2, the
    # floor); its parameter count is its own estimate of the model's (here 22 % over the state dict's bytes)
    with_them = estimate(cfg).peak_mb
    monkeypatch.setattr("flowviz.core.cost.CHECKPOINT_MB", 0.0)
    kept_mb = with_them - estimate(cfg).peak_mb
    assert kept_mb == pytest.approx((n - 2) * b / 2**20, rel=0.3)


def test_train_state_round_trips_through_its_flat_form():
    r = train(SMALL.replace(batch_size=16, train_steps=12, device="cpu"))
    head, tensors = r.train_state.flat()
    import json

    back = TrainState.from_flat(json.loads(json.dumps(head)), {k: v.numpy() for k, v in tensors.items()})
    went_on = resume(flowviz.TrainResult(r.config, r.model, r.data, r.history, r.metrics, None, r.kept, back), steps=8)
    assert same_weights(went_on.model, train(r.config.replace(train_steps=20)).model)


# ---------------------------------------------------------------- the checkpoints kept on disk and on the wire
def test_model_safetensors_and_the_disk_cache_round_trip_the_checkpoints(tmp_path):
    from flowviz.runfiles import cache
    from flowviz.runfiles import files as runio
    from flowviz.serve.settings import Settings

    cfg = SMALL.replace(batch_size=24, train_steps=25, device="cpu")
    r = train(cfg)
    out = runio.save_run(r, tmp_path / "run")
    raw = (out / "model.safetensors").read_bytes()
    assert b"step/7/" in raw and b"__pickle__" not in raw  # tensors named per step
    back = runio.load_result(out)
    assert back.checkpoints == r.checkpoints
    assert all(same_weights(back.at(s).model, r.at(s).model) for s in (0, 7, 25))
    assert same_weights(resume(back, steps=5).model, train(cfg.replace(train_steps=30)).model)
    assert same_weights(runio.load_weights(out / "model.safetensors"), r.model)  # the model alone still loads
    settings = Settings(cache_dir=str(tmp_path / "cache"))
    cache.store(cfg, r.model, r.history, r.metrics, settings=settings, kept=r.kept, train_state=r.train_state)
    model, history, metrics, kept, state = cache.load(cfg, settings=settings)
    assert sorted(kept) == r.checkpoints and all(torch.equal(kept[12][k], r.kept[12][k]) for k in kept[12])
    assert state.step == 25 and torch.equal(state.generator, r.train_state.generator)


def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path):
    from safetensors.torch import load, save

    from flowviz.core.errors import CheckpointError
    from flowviz.runfiles import files as runio

    r = train(SMALL.replace(train_steps=5, device="cpu"))
    raw = runio.weights_bytes(r.model, r.kept)
    head = runio._metadata(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    t = load(raw)
    name = next(k for k in t if k.startswith("step/3/"))
    bad = dict(t, **{name: torch.full_like(t[name], float("nan"))})
    with pytest.raises(CheckpointError, match="NaN"):
        runio.checkpoints_from_bytes(save(bad, metadata=head), r.model)
    short = {k: v for k, v in t.items() if k != name}
    with pytest.raises(CheckpointError, match="lacks"):
        runio.checkpoints_from_bytes(save(short, metadata=head), r.model)


def test_a_snapshot_carries_its_checkpoints_and_resume_state_across_the_wire():
    from flowviz.serve.work import protocol

    snaps = list(train_iter(SMALL.replace(batch_size=16, train_steps=12, device="cpu"), log_every=5, keep_state=True))
    for s in snaps:
        got = protocol.snapshot_from(*protocol.decode(protocol.snapshot_message(s)))
        assert sorted(got.kept or {}) == sorted(s.kept or {})
        assert set(got.state) == set(s.state)
    last = protocol.snapshot_from(*protocol.decode(protocol.snapshot_message(snaps[-1])))
    assert last.train_state.step == 12 and torch.equal(last.train_state.generator, snaps[-1].train_state.generator)


@pytest.mark.slow
def test_a_served_run_paused_stepped_and_resumed_ends_with_the_weights_of_one_without_a_pause(registry):
    from tiny import wait_for

    cfg = SMALL.replace(batch_size=32, train_steps=300, seed=5, device="cpu")
    reg = registry("thread", 2, prestart=False)
    run = reg.start(cfg)
    assert wait_for(lambda: run.latest is not None and run.latest.step >= 20)
    assert run.pause()
    assert wait_for(lambda: run.status == "paused")
    p = run.latest.step
    assert run.train_state.step == p and p in run.kept
    assert run.go(1) and wait_for(lambda: run.status == "paused") and run.latest.step == p + 1
    assert run.go(10) and wait_for(lambda: run.status == "paused") and run.latest.step == p + 11
    back = run.at(p)  # the run as it was when paused
    assert back.latest.step == p and back.history[-1]["step"] <= p
    assert run.go() and wait_for(lambda: run.status == "done")
    whole = train(cfg)
    assert all(torch.equal(run.latest.state[k], v) for k, v in whole.model.state_dict().items())
    assert len(run.checkpoints) <= CHECKPOINTS and run.checkpoints[0] == 0 and run.checkpoints[-1] == 300
    run2 = reg.start(cfg.replace(seed=6))  # (the second worker: the first run's goes on to its pictures)
    assert wait_for(lambda: run2.latest is not None) and run2.pause() and wait_for(lambda: run2.paused)
    run2.stop()
    assert run2.status == "cancelled" and not run2.go(1)  # stopped: it cannot go on
