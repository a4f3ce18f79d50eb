#!/usr/bin/env bash
# One prepared GPU check (< 8 minutes on one GPU): the `cuda` pytest marker, then the CUDA
# comparisons (search step vs MONAI DiNTS at 96^3, AMP training step vs MONAI DynUNet, GPipe
# memory), printed as one markdown table (benchmarks/gpu_check.py).
#
#   benchmarks/gpu_check.sh              on a GPU machine
#   benchmarks/gpu_check.sh --dry-run    on a CPU: tiny shapes, pytest collect-only (a check)
#
# PYTHON picks the interpreter (default: python3); any other arguments go to gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="${PWD}${PYTHONPATH:+:$PYTHONPATH}"
if [[ "${1:-}" != "--dry-run" ]] && ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_check.sh: no CUDA device here; use --dry-run to check the script on a CPU" >&2
    exit 2
fi
# 7.5 minutes in all: the table is printed even when a row fails
exec timeout --signal=INT 450 "$PYTHON" benchmarks/gpu_check.py "$@"
