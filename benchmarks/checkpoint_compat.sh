#!/usr/bin/env bash
# Weights written by an older msad evaluate alike with this tree: same 12 COCO metrics and the very same detections.
#
#   bash benchmarks/checkpoint_compat.sh ea7d91d      # the commit before the roles move (#24)
#
# The old commit (a git worktree in a temporary folder) makes synthetic data and trains a baseline, a teacher and a
# student for 6 iterations each; both trees then run `msad eval --json --results` on each weights file. ~2 CPU-minutes.
set -euo pipefail
OLD_COMMIT=${1:?usage: benchmarks/checkpoint_compat.sh OLD_COMMIT}
NEW=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$NEW/.venv/bin/python}
W=$(mktemp -d)
trap 'git -C "$NEW" worktree remove --force "$W/old_tree" >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
git -C "$NEW" worktree add -q --detach "$W/old_tree" "$OLD_COMMIT"
OLD=$W/old_tree
PYTHONPATH=$OLD $PY -m msad data synth "$W/data" --train 16 --val 8 >/dev/null
SETS=(--set "data.train_images=\"$W/data/train\"" --set "data.train_annotations=\"$W/data/annotations/train.json\""
      --set "data.val_images=\"$W/data/val\"" --set "data.val_annotations=\"$W/data/annotations/val.json\""
      --set solver.iters=6 --set 'solver.steps=[5]' --set solver.warmup_iters=1 --set solver.batch_size=4
      --set distill.ramp_iters=1 --set model.postprocess.score_threshold=0.0)
R=$NEW/recipes/tiny.toml
PYTHONPATH=$OLD $PY -m msad train "$R" "${SETS[@]}" -o "$W/runs/baseline" >/dev/null
PYTHONPATH=$OLD $PY -m msad teacher "$R" "${SETS[@]}" -o "$W/runs/teacher" >/dev/null
PYTHONPATH=$OLD $PY -m msad distill "$R" "${SETS[@]}" --teacher "$W/runs/teacher/last.safetensors" -o "$W/runs/student" >/dev/null
for role in baseline teacher student; do
  for tree in old new; do
    root=$OLD; [ $tree = new ] && root=$NEW
    PYTHONPATH=$root $PY -m msad eval "$R" "${SETS[@]}" -w "$W/runs/$role/last.safetensors" \
      --json "$W/$role.$tree.json" --results "$W/$role.$tree.results.json" >/dev/null 2>&1
  done
  $PY - "$W/$role" "$role" <<'PY'
import json, sys
stem, role = sys.argv[1:3]
old, new = (json.load(open(f"{stem}.{t}.json")) for t in ("old", "new"))
old_dets, new_dets = (json.load(open(f"{stem}.{t}.results.json")) for t in ("old", "new"))
assert old["metrics"] == new["metrics"], (old["metrics"], new["metrics"])
assert old_dets == new_dets and old_dets, "the detections differ (or there are none)"
scores = [d["score"] for d in old_dets]
print(f"{role}: same 12 metrics (AP {old['metrics']['AP']:.3f}) and the same {len(old_dets)} detections "
      f"(scores {min(scores):.4f}-{max(scores):.4f})")
PY
done
