#!/usr/bin/env bash
# The GPU checks in one command (about 5 minutes on one GPU): the suite's gpu-marked tests, then
# train_speed.py and train_scaling.py on cuda. Everything goes to bench/gpu_check.log (and the screen).
#
#   bash bench/gpu_check.sh            # from the repository root, after `make install` (a CUDA build of torch)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
LOG=${LOG:-bench/gpu_check.log}
{
  echo "== flowviz GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || echo "no nvidia-smi"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
  echo "== gpu-marked tests"
  timeout 120 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests
  echo "== train_speed (cuda)"
  timeout 60 "$PY" bench/train_speed.py --device cuda --reps 3 --steps 300 --e2e-steps 300
  echo "== train_speed at L = 64 (cuda)"
  timeout 60 "$PY" bench/train_speed.py --device cuda --reps 3 --steps 300 --e2e-steps 300 --L 64
  echo "== CUDA graphs against eager steps at L = 64 (cuda)"
  timeout 60 "$PY" bench/cuda_graphs.py --reps 3 --steps 400
  echo "== train_scaling (cuda)"
  timeout 120 "$PY" bench/train_scaling.py --device cuda --reps 2 --budget 0.5
  echo "== done"
} 2>&1 | tee "$LOG"
