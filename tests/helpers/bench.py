"""A benchmark script run on a tiny size: it must finish and print its ratio line (benchmarks are not timed
tests)."""

import subprocess
import sys

import tiny

TINY = tiny.cli_sets(tiny.TINY)


def run(script, args, root):
    p = subprocess.run([sys.executable, script, *args], cwd=root, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "ratio" in p.stdout.strip().splitlines()[-1]
