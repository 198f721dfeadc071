"""Benchmarks are not timed tests: only check that each runs on a tiny size and prints its ratio line."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("script, args", [
    ("bench/train_speed.py", ["--reps", "1", "--steps", "3", "--n", "40", "--L", "3"]),
    ("bench/sweep_speed.py", ["--reps", "1", "--steps", "3", "--n", "40", "--depths", "1,2,4"]),
])
def test_benchmark_runs_and_prints_its_ratio(script, args, root):
    p = subprocess.run([sys.executable, script, *args], cwd=root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "ratio" in p.stdout.strip().splitlines()[-1]
