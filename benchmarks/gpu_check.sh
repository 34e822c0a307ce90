#!/usr/bin/env bash
# The prepared GPU check, at most about 8 minutes on one GPU: environment, the CUDA copies of the rule tests,
# throughput and memory of every method, two epochs of the CIFAR-10 Conv-4 paper recipe. Writes its report under
# $OUT (or the folder given as the first argument). Without a GPU it says so and exits 2.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-check}}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python - <<'PY' || { echo "gpu_check: no CUDA device here; run it on a GPU machine" >&2; exit 2; }
import sys, torch
sys.exit(0 if torch.cuda.is_available() else 1)
PY
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
timeout 180 python -m pytest -q -p no:cacheprovider -m cuda tests/ > "$out/cuda-tests.txt" 2>&1 || true
tail -3 "$out/cuda-tests.txt"
timeout 420 python benchmarks/gpu_check.py --out "$out"
