"""GPU checks (marked gpu): they skip cleanly on a machine without CUDA; bench/gpu_check.sh runs them."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import flowviz
from flowviz.core.data import make_dataset
from flowviz.core.model import build_model
from flowviz.training.batch import train_batched

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")]


@pytest.mark.parametrize("act", ["tanh", "relu", "softplus"])
def test_fast_path_on_cuda_matches_the_cpu(act):
    cfg = flowviz.Config(activation=act, n_steps=9, width=16, time_mode="continuous", knots=4)
    x, y = torch.randn(300, 2), torch.randint(0, 2, (300,))
    out = {}
    for dev in ("cpu", "cuda"):
        m = build_model(cfg, 2).to(dev)
        loss = F.cross_entropy(m(x.to(dev)), y.to(dev))
        loss.backward()
        out[dev] = (loss.item(), {n: p.grad.cpu() for n, p in m.named_parameters()})
    assert out["cuda"][0] == pytest.approx(out["cpu"][0], rel=1e-4)
    for n, g in out["cpu"][1].items():
        torch.testing.assert_close(out["cuda"][1][n], g, rtol=1e-3, atol=1e-5)


def test_training_on_cuda_reaches_the_cpu_result():
    cfg = flowviz.preset("moons").replace(train_steps=150)
    cpu = flowviz.train(cfg.replace(device="cpu"))
    gpu = flowviz.train(cfg.replace(device="cuda"))
    assert gpu.metrics["device"].startswith("cuda")
    assert abs(gpu.metrics["train_accuracy"] - cpu.metrics["train_accuracy"]) <= 0.02


def test_batched_sweep_on_cuda_matches_one_by_one():
    base = flowviz.Config(n_samples=400, width=16, train_steps=30, device="cuda")
    configs = [base.replace(n_steps=L) for L in (1, 2, 4, 8)]
    ds = make_dataset(base)
    for c, b in zip(configs, train_batched(configs, data=ds)):
        a = flowviz.train(c, data=ds)
        assert b.metrics["train_loss"] == pytest.approx(a.metrics["train_loss"], rel=1e-3)


def test_views_of_a_cuda_model_are_numpy():
    r = flowviz.train(flowviz.Config(n_samples=200, n_steps=4, train_steps=10, device="cuda"))
    xs = r.model.trajectory(r.data.x)
    assert isinstance(xs, np.ndarray) and xs.shape == (5, 200, 2)


@pytest.mark.parametrize("extra", [{}, {"batch_size": 128}, {"optimizer": "sgd", "lr": 0.2}])
def test_cuda_graph_replays_train_like_eager_steps(extra):
    cfg = flowviz.preset("moons").replace(train_steps=80, n_steps=16, device="cuda", **extra)
    ds = make_dataset(cfg)
    eager = flowviz.train(cfg, data=ds, log_every=20)
    graphed = flowviz.train(cfg, data=ds, log_every=20, cuda_graphs=True)
    for a, b in zip(eager.history, graphed.history):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3, abs=1e-5), a["step"]
    for (n, pa), pb in zip(eager.model.state_dict().items(), graphed.model.state_dict().values()):
        torch.testing.assert_close(pb, pa, rtol=1e-3, atol=1e-4, msg=n)
