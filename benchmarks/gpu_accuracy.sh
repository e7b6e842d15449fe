#!/usr/bin/env bash
# One command for a GPU-lent session: the multi-seed accuracy study of one profile, all runs in parallel on the GPU.
#
#   bash benchmarks/gpu_accuracy.sh                       # COCO-shaped profile, 3 seeds, the claims only
#   CONTROLS=1 bash benchmarks/gpu_accuracy.sh            # plus the teacher and KD controls of issue #10
#   PROFILE=small ITERS=600 bash benchmarks/gpu_accuracy.sh
#
# Environment: PROFILE (coco|coco_cpu|small, default coco), SEEDS (3), JOBS (runs at once on the one GPU, default 8),
# ITERS (iterations of every stage, default the recipe's 600), WORKERS (data workers per run, default 1),
# OUT (default runs/gpu_bench_${PROFILE}_${ITERS}). Rerunning the same command resumes: finished runs are reused
# as they are, so a changed ITERS needs its own OUT (the default does that).
# Results: $OUT/accuracy.md (mean ± std per row, paired differences with 95 % intervals), accuracy.json, accuracy.png.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-coco}
SEEDS=${SEEDS:-3}
JOBS=${JOBS:-8}
ITERS=${ITERS:-600}
WORKERS=${WORKERS:-1}
OUT=${OUT:-runs/gpu_bench_${PROFILE}_${ITERS}}
PY=${PYTHON:-.venv/bin/python}
STEPS="[$((ITERS * 3 / 4)),$((ITERS * 11 / 12))]"
args=(--profile "$PROFILE" --seeds "$SEEDS" --jobs "$JOBS" --out "$OUT" --resume
      --set run.device=cuda --set "data.num_workers=$WORKERS"
      --set "solver.iters=$ITERS" --set "solver.steps=$STEPS")
# the KD control of a student that stays below its teacher: a third of the student schedule (issue #10)
SHORT="distill.solver.iters=$((ITERS / 3));distill.solver.steps=[$((ITERS / 4)),$((ITERS * 3 / 10))];distill.solver.warmup_iters=$((ITERS / 18));distill.ramp_iters=$((ITERS / 18))"
if [[ "${CONTROLS:-0}" == 1 ]]; then
  args+=(
    --teacher-variant 'hr_only:teacher.loss_weights={hr = 1.0, lr = 0.0, fused = 0.0};teacher.eval_branch="hr"'
    --teacher-variant 'lr_third:teacher.solver.lr=0.0033'
    --teacher-variant 'private_bn:teacher.bn="per_resolution"'
    --teacher-variant 'fused_only:teacher.loss_weights={hr = 0.0, lr = 0.0, fused = 1.0}'
    --student-variant 'kd4:distill.kd_weight=4'
    --student-variant 'bn_train:distill.teacher_bn="train"'
    --student-variant 'no_ramp:distill.ramp_iters=0'
    --student-variant 'private_bn@private_bn:'
    --baseline-variant "lr_2x:data.scale=0.5;solver.iters=$((ITERS * 2));solver.steps=[$((ITERS * 3 / 2)),$((ITERS * 11 / 6))]"
    --student-variant "short:$SHORT" --student-variant "short_nokd:$SHORT;distill.kd_weight=0"
    --difference 'student:short,student:short_nokd'
    --teacher-variant "long:teacher.solver.iters=$((ITERS * 3));teacher.solver.steps=[$((ITERS * 9 / 4)),$((ITERS * 11 / 4))]"
    --student-variant 'from_long@long:' --student-variant 'from_long_nokd@long:distill.kd_weight=0'
    --difference 'student:from_long,student:from_long_nokd'
    # claims 1 and 2 in the long regime: baselines trained as long as the long teacher (HR) and teacher + student (LR)
    --baseline-variant "hr_long:solver.iters=$((ITERS * 3));solver.steps=[$((ITERS * 9 / 4)),$((ITERS * 11 / 4))]"
    --baseline-variant "lr_long:data.scale=0.5;solver.iters=$((ITERS * 4));solver.steps=[$((ITERS * 3)),$((ITERS * 11 / 3))]"
    --difference 'teacher:long,baseline:hr_long' --difference 'student:from_long,baseline:lr_long'
  )
fi
exec "$PY" benchmarks/accuracy.py "${args[@]}"
