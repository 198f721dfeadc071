"""flowviz.convergence: orders of convergence on ONE field, against torchdiffeq as the oracle."""

import numpy as np
import pytest
import torch
from torchdiffeq import odeint

import flowviz
from flowviz.core.errors import ConfigError
from flowviz.core.solvers import STEPPERS, TIGHT_RTOL
from flowviz.training.convergence import FLOOR_FACTOR, KINK_REASON, convergence

BASE = flowviz.Config(n_samples=200, train_steps=60, n_steps=8)


@pytest.fixture(scope="module")
def tied():
    return flowviz.train(BASE.replace(time_mode="tied"))


@pytest.fixture(scope="module")
def continuous():
    return flowviz.train(BASE.replace(time_mode="continuous", knots=5))


@pytest.mark.parametrize("scheme", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("which", ["tied", "continuous"])
def test_slope_is_the_order_of_the_scheme(which, scheme, request):
    r = request.getfixturevalue(which)
    c = convergence(r, scheme=scheme, max_points=100, res=20)
    p = STEPPERS[scheme].order
    if which == "continuous":  # the default ladder puts every step on a knot: multiples of knots - 1 = 4
        assert all(L % 4 == 0 for L in c.n_steps) and c.aligned
    assert c.expected == p and str(p) in c.reason
    assert c.fitted.sum() >= 3
    assert abs(c.slope - p) <= 0.15, (c.n_steps, c.errors, c.slope)
    # the fit is the least-squares line through the fitted points, on log-log axes
    h, e = c.step_size[c.fitted], c.errors[c.fitted]
    assert np.isclose(c.slope, np.polyfit(np.log(h), np.log(e), 1)[0])
    assert np.all(c.errors[c.fitted] > FLOOR_FACTOR * c.floor)


def test_misaligned_knots_limit_the_order_to_two():
    r = flowviz.train(BASE.replace(time_mode="continuous", knots=6))
    c = convergence(r, n_steps=[4, 8, 16, 32], scheme="rk4", max_points=100, res=20)
    assert not c.aligned and c.expected == 2 and KINK_REASON in c.reason and "multiple of knots − 1 = 5" in c.reason
    assert c.slope < 2.6, c.errors  # measured about 2.1: the kinks, not rk4, set the order
    ok = convergence(r, n_steps=[10, 20, 40], scheme="rk4", max_points=100, res=20)
    assert ok.aligned and ok.expected == 4


def test_per_step_weights_have_no_field_between_blocks():
    r = flowviz.train(BASE.replace(train_steps=5))
    with pytest.raises(ConfigError, match="no field between the blocks"):
        convergence(r, n_steps=[4, 8])
    with pytest.raises(ConfigError, match="at least two"):
        convergence(flowviz.train(BASE.replace(time_mode="tied", train_steps=5)), n_steps=[8])


@torch.no_grad()
def test_reference_and_discrete_chain_against_torchdiffeq(tied):
    """The oracle: our dopri5 reference (1e-12) agrees, within the floor it reports, with torchdiffeq's fixed-step
    rk4 on 2048 steps (error ~ 1e-4 (8/2048)^4 ~ 1e-14 on this field), and our rk4 chain is torchdiffeq's rk4
    (the 3/8 rule) to round-off. (torchdiffeq's dopri8 is no oracle here: at rtol 1e-14 it is off by 4e-10.)"""
    m = tied.model
    x = tied.data.x_train[:50]
    c = convergence(tied, n_steps=[8, 16], scheme="rk4", x=x, res=10)
    d = m.rediscretised(n_steps=1).double_copy()
    x0 = torch.as_tensor(x).double()
    T = torch.linspace(0.0, m.config.horizon, 2049, dtype=torch.float64)
    oracle = odeint(lambda t, z: d.vector_field(float(t), z), x0, T, method="rk4")[-1]
    ref = m.rediscretised(n_steps=1).reference(x, rtol=TIGHT_RTOL / 10, atol=TIGHT_RTOL / 10)[-1]  # as convergence()
    assert np.abs(ref - oracle.numpy()).max() <= c.floor
    assert c.floor < c.errors.min() / FLOOR_FACTOR  # the floor sits below every error shown
    for L, err in zip(c.n_steps, c.errors):
        dm = m.rediscretised(n_steps=int(L), scheme="rk4").double_copy()
        ours = dm.flow(x0)
        theirs = odeint(lambda t, z: d.vector_field(float(t), z), x0, torch.as_tensor(dm.times), method="rk4")[-1]
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
        assert np.isclose(err, np.linalg.norm(theirs.numpy() - oracle.numpy(), axis=1).max(), rtol=1e-3)


def test_decision_level_error_shrinks_with_the_steps(tied):
    c = convergence(tied, n_steps=[2, 4, 8, 16, 32], scheme="euler", max_points=100, res=30)
    assert c.decision_max_diff[-1] < c.decision_max_diff[0] / 8  # euler: about 1/16
    assert c.decision_mismatch[-1] <= c.decision_mismatch[0]
    assert 0 <= c.decision_mismatch.min() and c.decision_mismatch.max() <= 1
    d = c.to_dict()
    assert d["n_steps"] == [2, 4, 8, 16, 32] and d["expected"] == 1 and len(d["decision_mismatch"]) == 5


def test_public_name():
    assert flowviz.convergence is convergence and "convergence" in flowviz.__all__


def test_depth_sweep_shows_members_and_the_one_field_order():
    from flowviz.plots import convergence as convergence_figure
    from flowviz.plots.sweep import MEMBERS_LABEL, SWEEP_FIGURES, sweep_html
    from flowviz.training.sweep import run_sweep

    base = BASE.replace(time_mode="tied", scheme="rk4", train_steps=10, n_samples=100)
    s = run_sweep(base, "n_steps", [2, 4])
    c = s.convergence
    assert c is not None and c.scheme == "rk4" and c.expected == 4 and "L = 4" in s.convergence_note
    err = SWEEP_FIGURES["error"](s)
    assert err.data[0].name == MEMBERS_LABEL and "(not an order)" in err.layout.title.text
    assert "expected" not in err.layout.title.text  # no order is claimed for separately trained members
    fig = convergence_figure(c)
    assert f"slope {c.slope:.2f}" in fig.layout.title.text and "expected 4" in fig.layout.title.text
    assert any(sh.y0 == c.floor for sh in fig.layout.shapes)  # the reference floor is marked
    html = sweep_html(s)
    assert MEMBERS_LABEL in html and "Order of convergence on one field" in html
    assert '"convergence": {' in s.to_json()
    per_step = run_sweep(base.replace(time_mode="per_step"), "n_steps", [2, 4])
    assert per_step.convergence is None and "no field between the blocks" in per_step.convergence_note
    assert "no field between the blocks" in sweep_html(per_step)


@pytest.mark.slow
def test_a_tied_relu_field_is_not_called_smooth_and_keeps_midpoints_order():
    r = flowviz.train(BASE.replace(time_mode="tied", activation="relu"))
    c = convergence(r, scheme="midpoint", max_points=100, res=20)
    assert c.expected == 2 and "smooth field" not in c.reason and "only piecewise smooth in x" in c.reason
    assert abs(c.slope - 2) <= 0.15, (c.n_steps, c.errors, c.slope)  # the kinks cost no order up to 2
