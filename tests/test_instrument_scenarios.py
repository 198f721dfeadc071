"""The instruments' scenarios: every claim of their texts, checked on the trained scenario runs."""

import numpy as np
import pytest

import flowviz
from flowviz.core.presets import preset_configs, preset_info
from flowviz.training.instruments import adjoint_data, amplification, probe_data, stability_data, transport_comparison
from flowviz.training.volume import volume_data

INSTRUMENT_SCENARIOS = {"stability": "Stability region", "probe": "Probe", "volume": "Volume and density",
                        "grid_solver": "Grid solver", "adjoint": "Adjoint"}


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
    assert "from L = 8 on their difference halves each time L doubles (Euler's order 1)" in \
        preset_info("volume")["description"]
    ratios = vd.diff[:-1] / vd.diff[1:]  # diff(L) / diff(2L)
    assert np.all(np.abs(np.log2(ratios[2:]) - 1) < 0.25), ratios  # L = 8 -> 16, 16 -> 32, 32 -> 64: about 2


def test_grid_solver_scenario_error_shrinks_with_the_grid():
    r = _train("grid_solver")
    tc = transport_comparison(r.model, r.data.extent())
    assert list(tc.res) == [32, 64, 128]
    assert tc.err[0] > tc.err[1] > tc.err[2]


def test_adjoint_scenario_p0_approaches_odeint_adjoint():
    r = _train("adjoint")
    ad = adjoint_data(r.model, r.data.x_train, r.data.y_train, with_continuous=True)
    Ls, err = ad.continuous
    assert list(Ls) == [16, 32, 64, 128]
    assert np.all(np.diff(err) < 0) and err[-1] < err[0] / 4
