"""Dead box regression: how often a box channel starts dead, and which trained runs never learned boxes.

The FCOS box layer ends in a ReLU. A channel whose pre-activation is ≤ 0 at (nearly) every location gets (nearly) no
gradient, and from a random backbone it can stay that way for the whole run (``model.head.box_init``).

1. ``--recipe R --seeds N``: for each seed, the model a ``msad train`` run of that seed starts from (the same
   ``run.seed`` draw), and each ``model.head.box_init``: the share of box outputs > 0 per channel (l, t, r, b) over
   every head level of one training batch. A seed whose weakest channel is under ``--alive`` (5 %) is counted.
2. ``--runs DIR…``: every ``metrics.jsonl`` below the folders whose box loss never fell below ``--stuck`` (95 %) of
   its first logged value: a run that never learned box regression (students, which start from a trained
   head, are skipped).

    python benchmarks/box_init.py --recipe recipes/tiny.toml --seeds 20 --runs runs/study_small
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors import safe_open

from msad.build import build_train_dataset
from msad.config import Recipe, load_recipe
from msad.engine import seed_everything
from msad.models.fcos_head import BOX_INITS
from msad.roles import build_model, get_role


def alive_share(recipe: Recipe, seed: int, images: torch.Tensor, num_classes: int) -> list[float]:
    """Share of the box outputs > 0 per channel at the start of a baseline run of ``seed``."""
    seed_everything(seed)  # as msad train does before building the model
    model = build_model(recipe, role="baseline", num_classes=num_classes).eval()
    with torch.no_grad():
        maps = [out.box_regression for out in model(images).values()]
    return torch.stack([(m > 0).float().mean(dim=(0, 2, 3)) for m in maps]).mean(0).tolist()


def _images(recipe: Recipe, batch_size: int) -> tuple[torch.Tensor, int]:
    seed_everything(0)  # the training transforms' random flips: the same batch on every call
    dataset = build_train_dataset(recipe)
    batch = get_role("baseline").collator(recipe)([dataset[i] for i in range(batch_size)])
    return batch.images, len(dataset.label_space)


def _role(weights: Path) -> str | None:
    if not weights.exists():
        return None
    with safe_open(str(weights), "pt") as f:
        return (f.metadata() or {}).get("role")


def stuck_runs(root: Path, stuck: float) -> list[tuple[str, float, float]]:
    """``(run, first, lowest)`` logged box loss of every run under ``root`` whose lowest is ≥ ``stuck`` × first."""
    found = []
    for path in sorted(root.rglob("metrics.jsonl")):
        if _role(path.parent / "last.safetensors") == "student":
            continue  # a student starts from its teacher's trained head
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        box = [next((v for k, v in r.items() if k.endswith("loss_box")), None) for r in records if r.get("type") == "train"]
        box = [v for v in box if v is not None]  # a teacher's first box loss is its HR branch's
        if box and min(box) >= stuck * box[0]:
            found.append((str(path.parent), box[0], min(box)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", help="recipe whose starting models are inspected (with --seeds)")
    parser.add_argument("--seeds", type=int, default=20, help="run.seed = 0 … N-1")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="recipe override, dotted.key=value")
    parser.add_argument("--batch", type=int, default=8, help="training images the outputs are measured on")
    parser.add_argument("--alive", type=float, default=0.05, help="a channel under this share of outputs > 0 counts")
    parser.add_argument("--runs", nargs="*", default=[], type=Path, help="folders of trained runs to scan")
    parser.add_argument("--stuck", type=float, default=0.95, help="box loss never below this share of its first value")
    args = parser.parse_args()
    missing = [str(root) for root in args.runs if not root.is_dir()]
    if missing:
        parser.error(f"--runs: no such folder: {', '.join(missing)}")
    torch.set_num_threads(1)
    if args.recipe:
        recipes = {b: load_recipe(args.recipe, overrides=[*args.sets, f'model.head.box_init="{b}"']) for b in BOX_INITS}
        images, num_classes = _images(recipes["normal"], args.batch)
        print(f"share of box outputs > 0 at the start, channels l t r b, {args.recipe}:")
        print("seed | " + " | ".join(BOX_INITS))
        weak = dict.fromkeys(BOX_INITS, 0)
        for seed in range(args.seeds):
            cells = []
            for box_init in BOX_INITS:
                share = alive_share(recipes[box_init], seed, images, num_classes)
                weak[box_init] += min(share) < args.alive
                cells.append(" ".join(f"{v:.2f}" for v in share))
            print(f"{seed:4d} | " + " | ".join(cells), flush=True)
        print(", ".join(f"{k}: {v}/{args.seeds} seeds start with a channel under {args.alive:.0%}" for k, v in weak.items()))
    for root in args.runs:
        found = stuck_runs(root, args.stuck)
        print(f"{root}: {len(found)} run(s) whose box loss never fell below {args.stuck:.0%} of its first value")
        for run, first, low in found:
            print(f"  {run}: first {first:.3f}, lowest {low:.3f}")


if __name__ == "__main__":
    main()
