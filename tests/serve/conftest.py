"""The serve tier: registries, executors and their worker processes. One pool of two worker processes is shared
by the tier's files in a test process (its workers start once), and ``each_executor`` runs a test on every
executor by name."""

import pytest

from flowviz.serve.work.executor import EXECUTORS


@pytest.fixture(scope="package")
def pool():
    """A process pool of two workers, shared by the tier's tests (each gives its workers back)."""
    from flowviz.serve.work.pool import ProcessPool

    p = ProcessPool(2)
    yield p
    p.shutdown()


@pytest.fixture(params=[pytest.param(n, marks=pytest.mark.ray) if n == "ray" else n for n in sorted(EXECUTORS)])
def each_executor(request, executor):
    """Each executor of ``EXECUTORS`` with one worker, shut down after the test (the Ray one, on the test
    process's cluster, runs with the other Ray tests: `make test` runs those after the parallel part)."""
    return executor(request.param)
