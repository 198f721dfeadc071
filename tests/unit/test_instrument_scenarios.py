"""The instruments' scenarios: every claim of their texts, checked on the trained scenario runs."""

import numpy as np
import pytest
import torch

import flowviz
from flowviz import plots
from flowviz.core.presets import preset_configs, preset_info
from flowviz.training.instruments import adjoint_data, amplification, probe_data, stability_data, transport_comparison
from flowviz.training.volume import volume_data

INSTRUMENT_SCENARIOS = {
    "stability": "Stability region",
    "probe": "Probe",
    "volume": "Volume and density",
    "grid_solver": "Grid solver",
    "adjoint": "Adjoint",
}


def _train(name, i=0):
    return flowviz.train(preset_configs(name)[i])


@pytest.mark.parametrize("name, sub", INSTRUMENT_SCENARIOS.items())
def test_each_instrument_has_a_scenario_opening_it(name, sub):
    info = preset_info(name)
    assert info["view"] == "Instruments" and info["instrument"] == sub


def test_folding_leaves_eulers_disk_and_deep_stays_near_zero():
    r = _train("stability")
    assert preset_info("stability")["config"] == flowviz.preset("folding")  # "the folding run"
    st = stability_data(r.model, r.data.x, r.data.y)
    assert st.z.real.min() < -2  # "some lie far left of the disk"
    assert (st.det < 0).any()  # the fold
    np.testing.assert_array_equal(st.det < 0, st.fold_eig % 2 == 1)  # exactly where a real z < -1
    deep = _train("deep_vs_shallow", 1)
    assert deep.config.n_steps == 64
    sd = stability_data(deep.model, deep.data.x, deep.data.y)
    assert sd.max_abs.max() < 0.15 and not (sd.det < 0).any()  # "within 0.15 of 0"
    growth = np.abs(amplification(sd.z, "euler") - np.abs(np.exp(sd.z)))
    assert growth.max() < 0.01 * np.abs(np.exp(sd.z)).min()  # |1 + z| within 1% of |e^z|


@pytest.mark.parametrize("scheme", ["euler", "midpoint", "rk4"])
def test_stability_det_is_the_det_of_the_schemes_own_step(scheme):
    from torch.func import jacrev, vmap

    from flowviz.training.instruments import flow_paths

    r = flowviz.train(preset_configs("stability")[0].replace(scheme=scheme))
    st = stability_data(r.model, r.data.x, r.data.y)
    idx = np.sort(np.random.default_rng(0).choice(len(r.data.x), 200, replace=False))  # the sampled points
    m = r.model.double_copy()
    xs = flow_paths(r.model, r.data.x[idx]).double()
    for k in range(1, m.L + 1):  # an independent autograd Jacobian of the step x_(k-1) -> x_k, point by point
        J = vmap(jacrev(lambda z, k=k: m.step_map(z[None], k)[0]))(xs[k - 1]).detach()
        np.testing.assert_array_equal(np.sign(st.det[k - 1]), np.sign(torch.linalg.det(J).numpy()))
    fig = plots.stability(st)
    titles = {f.name: f.layout.title.text for f in fig.frames}
    for k in range(1, m.L + 1):
        n = int((st.det[k - 1] < 0).sum())
        assert f"{n} of 200 points fold (det D(step k) < 0)" in titles[str(k)]
    assert titles[fig.frames[0].name] == fig.layout.title.text
    if scheme == "euler":
        np.testing.assert_array_equal(st.det < 0, st.fold_eig % 2 == 1)
    else:  # the step's Jacobian is not I + s_k DV_k: the red line is Euler's alone, and the legend says so
        legend = [tr.name for tr in fig.data if tr.name and tr.name.startswith("Re z = −1")][0]
        assert "Euler's fold line only" in legend and "det D(step k) < 0" in legend
    if scheme == "rk4":  # here the eigenvalue count and the step's own det disagree (57 against 27 at block 2)
        assert ((st.det < 0) != (st.fold_eig % 2 == 1)).any()


def test_probe_scenario_u_constant_and_readout_changes():
    r = _train("probe")
    assert r.config.n_steps == 10 and r.config.viscosity == 0
    for x0 in r.data.x[:5]:
        pr = probe_data(r.model, x0)
        assert np.abs(pr.u - pr.u[-1]).max() < 1e-5  # constant along the path
        np.testing.assert_allclose(pr.f[-1], pr.u[-1], atol=1e-6)  # equals u at k = L
    changes = [np.abs(np.diff(probe_data(r.model, x0).f[:, 1])).max() for x0 in r.data.x[:5]]
    assert min(changes) > 1e-3  # the read-out changes from block to block


def test_volume_scenario_difference_halves_as_L_doubles():
    r = _train("volume")
    vd = volume_data(r.model, r.data)
    assert list(vd.Ls) == [2, 4, 8, 16, 32, 64]
    assert (
        "from L = 8 on their difference halves each time L doubles (Euler's order 1)"
        in preset_info("volume")["description"]
    )
    ratios = vd.diff[:-1] / vd.diff[1:]  # diff(L) / diff(2L)
    assert np.all(np.abs(np.log2(ratios[2:]) - 1) < 0.25), ratios  # L = 8 -> 16, 16 -> 32, 32 -> 64: about 2


@pytest.mark.slow
def test_grid_solver_scenario_error_shrinks_with_the_grid():
    r = _train("grid_solver")
    tc = transport_comparison(r.model, r.data.extent())
    assert list(tc.res) == [32, 64, 128]
    assert tc.err[0] > tc.err[1] > tc.err[2]
    text = preset_info("grid_solver")["description"]
    assert (
        f"falls from {tc.err[0]:.3f} at 32² to {tc.err[2]:.2g} at 128², at a measured order {tc.orders[1]:.2f} "
        "from 64² to 128²"
    ) in text
    assert r.config.kinetic > 0 and f"kinetic = {r.config.kinetic:g}" in text
    title = plots.transport_grid(tc).layout.title.text
    assert f"measured order {tc.orders[1]:.2f} from 64² to 128²" in title


def test_adjoint_scenario_p0_approaches_odeint_adjoint():
    r = _train("adjoint")
    ad = adjoint_data(r.model, r.data.x_train, r.data.y_train, with_continuous=True)
    Ls, err = ad.continuous
    assert list(Ls) == [16, 32, 64, 128]
    assert np.all(np.diff(err) < 0) and err[-1] < err[0] / 4


def test_moons_panels_against_L_say_that_they_hold_the_runs_own_L_only():
    (r,) = [flowviz.train(c) for c in preset_configs("moons")]
    assert r.config.time_mode == "per_step" and r.config.n_steps == 10  # per-step weights: L cannot change
    vd = volume_data(r.model, r.data, res=12)
    ad = adjoint_data(r.model, r.data.x_train, r.data.y_train, max_points=40, with_continuous=True)
    assert list(vd.Ls) == [10] and list(ad.continuous[0]) == [10]
    vt = [a.text for a in plots.volume(vd).layout.annotations]
    fa = plots.adjoint(ad).layout  # its panels are named by their axes
    at = [a.text for a in fa.annotations] + [fa.xaxis3.title.text, fa.yaxis3.title.text]
    assert f"|sum − integral|<br>at T = {vd.diff[0]:.3g}<br>(own L = 10 only)" in vt[3]
    assert fa.xaxis3.title.text == "the run's own L = 10 only"
    assert fa.yaxis3.title.text == f"|p₀ − p₀(ODE)| = {ad.continuous[1][0]:.3g}"  # typeset by the figure style
    assert not any("against L" in (t or "") for t in vt + at)
