"""Diagnostics of a trained MSAD teacher: C-FF weights per level, and BatchNorm statistics per resolution.

1. The mean fusion weights ``(a_hr, b_lr)`` of C-FF per head level over one validation batch: a weight of 1.00
   means the fused branch is the HR branch at that level.
2. The teacher's AP per branch with its stored BN statistics, then with the backbone's BN statistics re-estimated
   on HR images only and on LR images only (the HR and LR passes update the same statistics in turn during
   training; a large change here would point at that mixing).

    python benchmarks/teacher_diagnostics.py runs/demo/teacher/last.safetensors --recipe recipes/tiny.toml
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from msad.api.training import build_task
from msad.build import build_train_dataset, build_val_dataset
from msad.checkpoint import Checkpoint, load_model, read_checkpoint
from msad.config import Recipe, load_recipe
from msad.data import build_test_loader, build_train_loader
from msad.roles import get_role


def fusion_weights(recipe: Recipe, ckpt: Checkpoint, batch_size: int) -> dict[str, tuple[float, float]]:
    """Mean C-FF weights per head level over the first validation batch."""
    model = load_model(ckpt)
    dataset = build_val_dataset(recipe, label_space=ckpt.label_space)
    loader = build_test_loader(dataset, batch_size=batch_size, rank=0, world_size=1, collate=get_role("teacher").collator(recipe))
    images = next(iter(loader)).images
    with torch.no_grad():
        out = model(images, branches=())
        return {
            lvl: tuple(model.fusion.weights(out.hr_features[lvl], out.lr_features[lvl]).mean(0).tolist())
            for lvl in out.hr_features
        }


def branch_ap(recipe: Recipe, ckpt: Checkpoint, model: nn.Module) -> dict[str, float]:
    """AP of the HR, LR and fused branches."""
    return {
        branch: build_task(recipe, "teacher", label_space=ckpt.label_space, model=model, eval_branch=branch).evaluate(model)["AP"]
        for branch in ("hr", "lr", "fused")
    }


def reestimate_bn(recipe: Recipe, ckpt: Checkpoint, *, resolution: str, batches: int, batch_size: int) -> nn.Module:
    """The teacher with its backbone's BN statistics recomputed (cumulative average) on HR or LR training images."""
    model = load_model(ckpt)
    norms = [m for m in model.detector.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    loader = build_train_loader(
        build_train_dataset(recipe), total_batch_size=batch_size, rank=0, world_size=1, seed=1,
        collate=get_role("teacher").collator(recipe),
    )
    model.detector.backbone.train()
    with torch.no_grad():
        for _ in range(batches):
            images = next(loader).images
            model.detector.backbone(images if resolution == "hr" else images[:, :, :: recipe.teacher.k, :: recipe.teacher.k])
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", help="teacher weights (.safetensors)")
    parser.add_argument("--recipe", default="recipes/tiny.toml", help="recipe whose data to use")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="recipe override dotted.key=value")
    parser.add_argument("--batches", type=int, default=15, help="training batches for the BN re-estimation")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, overrides=args.sets)
    ckpt = read_checkpoint(args.weights, role="teacher")
    print("C-FF mean weights (a_hr, b_lr) per level:")
    for level, (a, b) in fusion_weights(recipe, ckpt, args.batch_size).items():
        print(f"  {level}: {a:.3f} {b:.3f}")
    rows = {"stored BN statistics": branch_ap(recipe, ckpt, load_model(ckpt))}
    for resolution in ("hr", "lr"):
        model = reestimate_bn(recipe, ckpt, resolution=resolution, batches=args.batches, batch_size=args.batch_size)
        rows[f"BN re-estimated on {resolution.upper()}"] = branch_ap(recipe, ckpt, model)
    print(f"{'':32s} {'HR AP':>7s} {'LR AP':>7s} {'fused AP':>9s}")
    for name, aps in rows.items():
        print(f"{name:32s} {aps['hr']:7.2f} {aps['lr']:7.2f} {aps['fused']:9.2f}")


if __name__ == "__main__":
    main()
