#!/usr/bin/env bash
# Install, then the whole method on the built-in synthetic data on CPU: data → teacher → student, the two FCOS
# baselines it is measured against, and one table side by side (AP, backbone capacity, images/s on this machine).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
MSAD=.venv/bin/msad
# the demo's own folders (data/demo, runs/demo), so that the README's commands (data/synth, runs/tiny) run after it
OUT=${MSAD_DEMO_OUT:-runs/demo}
DATA_DIR=${MSAD_DEMO_DATA:-data/demo}
DATA=(--set "data.train_images=\"$DATA_DIR/train\"" --set "data.train_annotations=\"$DATA_DIR/annotations/train.json\""
      --set "data.val_images=\"$DATA_DIR/val\"" --set "data.val_annotations=\"$DATA_DIR/annotations/val.json\"")
$MSAD data synth "$DATA_DIR" --train 400 --val 100 --seed 0 --force
$MSAD teacher recipes/tiny.toml "${DATA[@]}" --output "$OUT/teacher" --force
# the student trains twice as fast as the teacher on a CPU: give it twice the iterations
$MSAD distill recipes/tiny.toml "${DATA[@]}" --teacher "$OUT/teacher/last.safetensors" --output "$OUT/student" --force \
  --set solver.iters=400 --set "solver.steps=[300,370]"
# what the student is measured against: FCOS on the ×½ images (the student's iterations) and on the full images
# (the teacher's iterations)
$MSAD train recipes/tiny.toml "${DATA[@]}" --output "$OUT/baseline_lr" --force --set data.scale=0.5 \
  --set solver.iters=400 --set "solver.steps=[300,370]"
$MSAD train recipes/tiny.toml "${DATA[@]}" --output "$OUT/baseline_hr" --force
$MSAD compare "$OUT/baseline_lr/last.safetensors" "$OUT/student/last.safetensors" "$OUT/baseline_hr/last.safetensors" \
  --name "LR baseline" --name "MSAD student" --name "HR baseline" \
  --json "$OUT/compare.json"
echo "These are CPU-minute numbers (a width-0.25 model trained for a few hundred iterations on synthetic data);"\
  "for the real comparison see benchmarks/README.md."
