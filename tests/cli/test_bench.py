"""Benchmarks are not timed tests: only check that each runs on a tiny size and prints its ratio line."""

import subprocess
import sys

import pytest
from helpers.bench import TINY, run


@pytest.mark.parametrize(
    "script, args",
    [
        ("bench/train_speed.py", ["--reps", "1", "--steps", "3", "--n", "40", "--L", "3", "--e2e-steps", "20"]),
        ("bench/sweep_speed.py", ["--reps", "1", "--steps", "3", "--n", "40", "--depths", "1,2,4"]),
        ("bench/train_scaling.py", ["--ns", "100,400", "--Ls", "2,4", "--reps", "1", "--budget", "0.05"]),
        ("bench/figures.py", ["--reps", "1", *TINY]),
        ("bench/memory.py", ["--small", "--steps", "1"]),
        ("bench/final_pictures.py", ["--reps", "1", "--steps", "30", *TINY, ".", "."]),
        (
            "bench/depth_transfer.py",
            ["--steps", "5", "--depths", "2,4", "--to", "8", "--datasets", "moons", "--n", "100"],
        ),
    ],
)
@pytest.mark.slow
def test_benchmark_runs_and_prints_its_ratio(script, args, root):
    """(The benchmarks that drive a real browser: tests/browser/test_bench_browser.py.)"""
    run(script, args, root)


def test_gpu_check_script_is_one_bash_command(root):
    text = (root / "bench" / "gpu_check.sh").read_text()
    assert text.startswith("#!/usr/bin/env bash") and "-m gpu" in text
    assert "train_speed.py --device cuda" in text and "train_scaling.py --device cuda" in text
    assert subprocess.run(["bash", "-n", str(root / "bench" / "gpu_check.sh")]).returncode == 0  # it parses


@pytest.mark.slow
def test_the_cuda_graphs_benchmark_runs_where_it_can(root):
    """On a GPU it prints its ratio at a tiny size; without one it says so and exits 0."""
    import torch

    p = subprocess.run(
        [sys.executable, "bench/cuda_graphs.py", "--reps", "1", "--steps", "30", "--L", "4"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    last = p.stdout.strip().splitlines()[-1]
    assert ("ratio graphs/eager" in last) if torch.cuda.is_available() else ("no CUDA device here" in last)
    assert "cuda_graphs.py" in (root / "bench" / "gpu_check.sh").read_text()
