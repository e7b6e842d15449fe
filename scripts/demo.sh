#!/usr/bin/env bash
# Install, then the whole method on the built-in synthetic data on CPU: data → teacher → student → eval.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
MSAD=.venv/bin/msad
OUT=${MSAD_DEMO_OUT:-runs/demo}
$MSAD data synth data/synth --train 400 --val 100 --seed 0 --force
$MSAD teacher recipes/tiny.toml --output "$OUT/teacher" --force
# the student trains twice as fast as the teacher on a CPU: give it twice the iterations
$MSAD distill recipes/tiny.toml --teacher "$OUT/teacher/last.safetensors" --output "$OUT/student" --force \
  --set solver.iters=400 --set "solver.steps=[300,370]"
$MSAD eval recipes/tiny.toml --weights "$OUT/student/last.safetensors" --json "$OUT/student_eval.json"
