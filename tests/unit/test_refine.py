"""refine(): twice the steps, the same field, also for geometric partitions (where 2L steps with the same
ratio are NOT a refinement of L)."""

import numpy as np
import pytest
import torch

import flowviz
from flowviz.core.timegrid import partition
from flowviz.training.sweep import _prolongation, coarse_to_fine, refine, refined_config

GEO = flowviz.Config(n_samples=200, n_steps=6, partition="geometric", partition_ratio=1.5, train_steps=20)


@pytest.mark.parametrize("time_mode", ["per_step", "continuous"])
def test_refine_keeps_the_field_of_a_geometric_partition(time_mode):
    r = flowviz.train(GEO.replace(time_mode=time_mode, knots=4))
    fine = refine(r.model)
    assert fine.L == 12 and fine.config.partition_ratio == pytest.approx(np.sqrt(1.5))
    np.testing.assert_allclose(fine.times[::2], r.model.times, rtol=0, atol=1e-12)  # every old t_k is kept
    z = torch.randn(40, 2)
    mids = (fine.times[1:] + fine.times[:-1]) / 2  # one time inside every new block
    for t in np.concatenate([mids, np.linspace(0.01, 0.99, 23)]):
        torch.testing.assert_close(fine.vector_field(float(t), z), r.model.vector_field(float(t), z))


def test_the_same_ratio_would_not_be_a_refinement():
    old = partition(1.0, 6, "geometric", 1.5)
    same_ratio = partition(1.0, 12, "geometric", 1.5)
    assert np.min(np.abs(same_ratio[None, :] - old[1:-1, None]), 1).max() > 1e-3  # old points are missed
    M = _prolongation(old, same_ratio)  # blocks straddling old boundaries take one side: the field changes
    straddle = [j for j in range(12) if np.any((old > same_ratio[j] + 1e-12) & (old < same_ratio[j + 1] - 1e-12))]
    assert straddle and M.shape == (12, 6)
    cfg = refined_config(flowviz.Config(n_steps=6, partition="geometric", partition_ratio=1.5))
    ok = partition(1.0, cfg.n_steps, cfg.partition, cfg.partition_ratio)
    np.testing.assert_allclose(ok[::2], old, atol=1e-12)


def test_coarse_to_fine_on_a_geometric_partition_ends_on_the_refined_partition():
    c = coarse_to_fine(GEO.replace(train_steps=10), L_start=3, L_end=12, compare=True)
    assert c.levels == [3, 6, 12] and c.result.model.L == 12
    assert c.result.config.partition_ratio == pytest.approx(1.5**0.25)
    np.testing.assert_allclose(c.scratch.model.times, c.result.model.times)  # from scratch on the same partition
