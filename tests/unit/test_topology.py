"""Rings: a planar flow cannot enclose the disk (keyhole); a lift of one dimension can."""

import numpy as np
import pytest

from flowviz import preset, train
from flowviz.core.data import RING_ANNULUS
from flowviz.training.analysis import channel_fraction, diagnostics

RADII = np.linspace(RING_ANNULUS[0] + 0.1, RING_ANNULUS[1] - 0.1, 9)


def _fit(name):
    r = train(preset(name).replace(train_steps=600))
    det = diagnostics(r.model, r.data.x_train, r.data.extent(), with_reference=False).min_jac_det.min()
    return r, channel_fraction(r.model, RADII), float(det)


@pytest.mark.slow
def test_planar_flow_fits_the_rings_with_a_keyhole():
    r, channel, det = _fit("rings_plane")
    print(
        f"planar: train acc {r.metrics['train_accuracy']:.3f} test acc {r.metrics['test_accuracy']:.3f} "
        f"channel fraction {channel:.4f} min det {det:.3f}"
    )
    assert det > 0  # the steps do not fold: the map is a flow, so the theorem applies
    assert r.metrics["train_accuracy"] >= 0.95  # it fits the samples well, by squeezing the annulus
    assert channel > 0  # ... and pays with a channel of the inner class through the annulus


@pytest.mark.slow
def test_lifted_flow_encloses_the_disk():
    r, channel, det = _fit("rings_lift")
    print(
        f"lifted: train acc {r.metrics['train_accuracy']:.3f} test acc {r.metrics['test_accuracy']:.3f} "
        f"channel fraction {channel:.4f} min det {det:.3f}"
    )
    assert det > 0
    assert r.metrics["test_accuracy"] >= 0.97 and r.metrics["train_accuracy"] >= 0.97
    assert channel == 0.0
