"""The benchmarks that drive a real browser, each on a tiny size: they run and print their ratio line (their own
file, beside tests/cli/test_bench.py, so that pytest-xdist can give the long ones to the other test process)."""

import os

import pytest
from helpers.bench import TINY
from helpers.bench import run as _run

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(
    "script, args",
    [
        pytest.param("bench/first_picture.py", ["--reps", "1", *TINY], marks=pytest.mark.browser),
        pytest.param(
            "bench/first_picture.py",
            ["--reps", "1", "--prebuilt", "--preset", "folding", *TINY],
            marks=pytest.mark.browser,
        ),
        pytest.param(
            "bench/instrument_click.py",
            ["--reps", "1", *TINY],
            marks=pytest.mark.browser,
        ),
        # phase 4 with the default budget (both hard-limit links refused at once): with it lifted, two hard-limit runs
        # took both cores for two minutes beside the rest of the suite; bench/README.md quotes the lifted phase
        pytest.param(
            "bench/load.py",
            [
                "--sessions",
                "1",
                "--cycles",
                "1",
                "--steps",
                "20",
                "--heavy-budget",
                "--swarm",
                "2",
                "--swarm-steps",
                "20",
            ],
            marks=pytest.mark.browser,
        ),
        pytest.param(
            "bench/streaming.py",
            ["--reps", "1", "--steps", "60", "--min-rate", "20", "--set", "n_samples=100"],
            marks=pytest.mark.browser,
        ),
    ],
)
def test_browser_benchmark_runs_and_prints_its_ratio(script, args, root):
    if not os.path.exists("/usr/bin/chromium"):  # the browser tests say so loudly; these just skip
        pytest.skip("BENCHMARK NOT RUN: /usr/bin/chromium is missing")
    _run(script, args, root)
