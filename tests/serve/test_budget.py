"""The cost of a whole run on stiff links (training, final pictures, instruments), re-estimated with the trained
flow's stiffness; the step budget of adaptive solves; cancelling the adjoint partway."""

import threading
import time

import numpy as np
import pytest

import flowviz
from flowviz import Config
from flowviz.core import cost
from flowviz.core.solvers import Cancelled, TooStiff, solve_limits
from flowviz.serve.work.views import reestimate
from flowviz.training.analysis import analyse
from flowviz.training.instruments import adjoint_data
from flowviz.training.prepared import each

# the stiff links (T = 100, large steps, no weight decay, wide), their training shortened to seconds:
# the stiffness that escaped the budget comes within the first hundred steps (lr 1 and 10)
STIFF = {
    "tanh": "horizon=100&n_steps=4&lr=1&weight_decay=0&width=256&train_steps=200",
    "relu": "horizon=100&n_steps=2&lr=10&weight_decay=0&width=256&activation=relu&train_steps=100",
}
BUDGET_S = 20.0  # what the final pictures and instruments may take here: the tanh link fits, the relu one does not


def _config(link: str) -> Config:
    return Config.from_query(dict(kv.split("=", 1) for kv in link.split("&")))


def _cpu(fn):
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


@pytest.fixture(scope="module")
def trained():
    flowviz.train(Config(n_samples=100, n_steps=2, width=4, train_steps=3))  # the first optimiser's imports
    out = {}
    for name, link in STIFF.items():
        cfg = _config(link)
        result, seconds = _cpu(lambda: flowviz.train(cfg))
        out[name] = (cfg, result, seconds)
    return out


def _pictures_and_instruments(cfg, result):
    """What a worker does after training (flowviz.serve.work.views): re-estimate with the measured stiffness,
    then the final pictures and every instrument under the adaptive solves' budget; CPU seconds of each."""
    m, ds = result.model, result.data
    memo = {}
    (c, stiff, cap), probe_s = _cpu(lambda: reestimate(m, ds, BUDGET_S, memo))
    with solve_limits(max_evals=cap, needs=stiff.evals, memo=memo):
        views, pictures_s = _cpu(lambda: analyse(m, ds))
        # as the worker makes them: an instrument that does not fit the run (a flow past the data's box) is a message
        made, inst_s = _cpu(lambda: list(each(m, ds, views.extent)))
        inst = {name: obj for name, obj, _ in made}
        said = {name: msg for name, _, msg in made if msg is not None}
    return c, stiff, cap, views, inst, said, probe_s + pictures_s, inst_s


@pytest.mark.slow
@pytest.mark.alone
@pytest.mark.parametrize("name", list(STIFF))
def test_a_stiff_link_costs_within_3x_of_its_estimate_in_every_phase(trained, name):
    """Training against the estimate from the config; the final pictures (the stiffness probe included) and the
    instruments against the estimate re-made with the probe's measurement, as the server re-estimates before
    they start. What is refused is priced as refused: a solve too stiff for its budget, an instrument that does
    not fit the flow (the relu link's flow leaves the data's box by 1e12: no volume, no grid solver), so what
    runs is what is estimated. The old model (no stiffness, no instruments) was 20x and more under on the
    final pictures of the tanh link."""
    cfg, result, train_s = trained[name]
    before = cost.estimate(cfg, len(result.data.x_train))
    assert before.part("instruments") > 0 and before.seconds > before.part("training") + before.part("analysis")
    assert before.part("instruments") == pytest.approx(
        sum(before.part(n) for n in ("stability", "volume", "grid", "adjoint")) + cost.K["inst_setup"]
    )
    c, stiff, cap, views, inst, said, pictures_s, inst_s = _pictures_and_instruments(cfg, result)
    refused = not stiff.done
    est_train = before.part("setup") + before.part("training") + before.part("snapshots")
    est_pictures = c.part("analysis")  # the reference made (once) or refused at its budget: both measured
    gone = set(said) | ({"adjoint"} if refused else set())
    est_inst = c.part("instruments") - sum(c.part(n) for n in gone)
    pairs = {
        "training": (train_s, est_train),
        "pictures": (pictures_s, est_pictures),
        "instruments": (inst_s, est_inst),
    }
    print(
        name,
        {k: f"measured {a:.2f} s, estimated {b:.2f} s" for k, (a, b) in pairs.items()},
        f"stiffness: {stiff.evals:.0f} evaluations, budget {cap}",
    )
    # a phase of hundredths of a second (the relu link's instruments once three of four are refused: 0.008 s
    # measured against 0.025 s estimated in one run) is timer noise, not a budget hole: 0.05 s of slack either way
    slack = 0.05
    for phase, (measured, estimated) in pairs.items():
        assert measured / 3 - slack <= estimated <= 3 * measured + slack, (phase, measured, estimated)
    assert (views.diagnostics.stiff is not None) == refused
    assert (inst["adjoint"].stiff is not None) == refused
    assert name == "relu" or not refused  # the tanh link fits this budget, the relu one does not
    assert set(said) == ({"volume", "grid"} if name == "relu" else set()), said  # (the box's coordinates)


@pytest.mark.slow
def test_a_stiff_flow_over_its_step_budget_gets_the_plain_message_and_the_partial_picture(trained):
    """The dopri5 reference and odeint_adjoint stop at their evaluation budget: the discrete pictures are all
    there, the continuous ones are missing, and each says so in plain words."""
    cfg, result, _ = trained["tanh"]
    m, ds = result.model, result.data
    count = [0]
    with solve_limits(max_evals=500, counter=count):
        views = analyse(m, ds)
        adj = adjoint_data(m, ds.x_train, ds.y_train, with_continuous=True)
    assert 500 < count[0] <= 2 * 501  # each solve stopped right after its 500th evaluation
    assert (
        "too stiff to draw exactly" in views.diagnostics.stiff
        and "without the continuous reference" in views.diagnostics.stiff
    )
    assert np.isnan(views.diagnostics.error).all()
    assert views.characteristics.x.shape[0] == m.L + 1 and np.isfinite(views.characteristics.x).all()
    assert views.surfaces.u.shape[0] == m.L + 1 and np.isfinite(views.surfaces.u).all()
    assert adj.continuous is None and "too stiff to draw exactly" in adj.stiff
    assert np.isfinite(adj.p).all()
    with pytest.raises(TooStiff):  # a solve measured to need more than the budget is refused before it starts
        with solve_limits(max_evals=100, needs=1000):
            m.reference(ds.x_train[:3])


@pytest.mark.slow
def test_the_adjoint_stops_within_2_s_of_a_cancel(trained):
    """odeint_adjoint checks its task's cancel flag at every evaluation of the field: the adjoint instrument of
    the stiff link (about 6 s of CPU) ends within 2 s of the cancel, in the library and in a worker process."""
    cfg, result, _ = trained["tanh"]
    m, ds = result.model, result.data
    cancel, box = threading.Event(), {}

    def work():
        try:
            with solve_limits(cancel=cancel):
                adjoint_data(m, ds.x_train, ds.y_train, with_continuous=True)
            box["end"] = "finished"
        except Cancelled:
            box["end"] = "cancelled"
        box["t"] = time.monotonic()

    t = threading.Thread(target=work)
    t.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    cancel.set()
    t.join(10)
    assert box["end"] == "cancelled" and box["t"] - t0 < 2.0, box


@pytest.mark.slow
def test_a_worker_making_the_adjoint_answers_a_cancel_within_2_s(trained):
    from tiny import executor

    cfg, result, _ = trained["tanh"]
    m, ds = result.model, result.data
    ex = executor("process")
    try:
        cancel, started, box = threading.Event(), threading.Event(), {}

        def work():
            try:
                box["got"] = ex.instruments(
                    m, ds, extent=ds.extent(), names=["adjoint"], cancel=cancel, started=started.set
                )
            except Exception as e:  # noqa: BLE001 - cut short: TaskFailed
                box["error"] = e
            box["t"] = time.monotonic()

        t = threading.Thread(target=work)
        t.start()
        assert started.wait(60)
        time.sleep(2.0)  # the worker is inside odeint_adjoint (about 6 s of it)
        t0 = time.monotonic()
        cancel.set()
        t.join(10)
        assert "t" in box and box["t"] - t0 < 2.0, box
        assert "adjoint" not in box.get("got", ({}, {}))[0]
        assert ex.busy() == 0
    finally:
        ex.shutdown()
