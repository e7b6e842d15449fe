#!/usr/bin/env bash
# One command for a one-GPU machine (issue #22), about 5-10 minutes: msad's train step time and peak memory at the
# recipes' per-GPU shapes (fp32, bf16), host syncs per step (torch.cuda.set_sync_debug_mode), end-to-end trainer
# images/s on 500 generated 640x480 JPEGs with 2 and 4 data workers against the bare step, the DataLoader alone,
# and batch-1 inference latency; every figure with its ratio to torchvision's FCOS measured in the same run.
#
#   bash benchmarks/gpu_check.sh                              # the GPU check
#   bash benchmarks/gpu_check.sh --json runs/gpu_check.json   # also every figure as JSON
#   bash benchmarks/gpu_check.sh --smoke                      # CPU, tiny sizes, well under a minute
#
# Any other option goes to benchmarks/gpu_check.py (--help). Environment: PYTHON (default .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_check.py "$@"
