"""Small CPU work runs on one torch thread (flowviz.core.threads): training steps, views, reference solutions and
convergence measurements pick the threads that pay, and give the setting back."""

import pytest
import torch
from tiny import TINY

import flowviz
from flowviz.core import model as model_mod
from flowviz.core.threads import cpu_threads, threads_that_pay


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


def test_small_work_gets_one_thread_and_the_setting_is_given_back(two_threads):
    with threads_that_pay(1000, 16):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with threads_that_pay(100_000, 64):  # 6.4e6 activations: the threads there are
        assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), threads_that_pay(10, 2):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == 2  # given back on an error too
    assert cpu_threads(999, 1000) == 1 and cpu_threads(1000, 1000) == 2


def test_reference_solutions_and_views_run_on_one_thread(two_threads, monkeypatch):
    r = flowviz.train(TINY.replace(time_mode="tied"))
    seen = []
    real = model_mod.reference_solution

    def spy(*args, **kw):
        seen.append(torch.get_num_threads())
        return real(*args, **kw)

    monkeypatch.setattr(model_mod, "reference_solution", spy)
    r.model.reference(r.data.x[:50])
    from flowviz.training.analysis import analyse

    analyse(r.model, r.data)  # its diagnostics solve the reference flow too
    flowviz.convergence(r, n_steps=[2, 4])
    assert len(seen) >= 3 and set(seen) == {1}
    assert torch.get_num_threads() == 2
