"""AP of deployed models against the eager fp32 model on a recipe's validation set (issue #12).

For each weights file (baseline, teacher or student): COCO box AP of the eager fp32 model, of the BN-folded
fp32 model, under bf16 autocast (BN folded, as ``msad eval --precision bf16``), and of the exported ONNX file
(ONNX Runtime) and ``torch.export`` program, each decoded by :func:`msad.export.decode_detections`. A student
is exported for HR images (``--input hr``), so that every variant sees the same evaluation batches.

    msad data synth data/synth --train 400 --val 100 --seed 0
    msad teacher recipes/tiny.toml -o runs/demo/teacher && msad distill recipes/tiny.toml \\
        --teacher runs/demo/teacher/last.safetensors -o runs/demo/student
    python benchmarks/deploy_accuracy.py recipes/tiny.toml --out runs/deploy \\
        --weights runs/demo/teacher/last.safetensors --weights runs/demo/student/last.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from msad import api
from msad.api.export import export
from msad.api.training import build_task
from msad.config import load_recipe
from msad.engine.inference import inference_autocast, inference_model
from msad.export import ExportedDetector
from msad.models.fold import fold_batchnorm

#: What the AP of a deployed variant may differ from eager fp32 (issue #12: exported 0.05, bf16 0.1).
TOLERANCE = {"folded fp32": 0.05, "ONNX Runtime": 0.05, "torch.export": 0.05, "bf16 (folded)": 0.1}


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--weights", type=Path, action="append", required=True, help="repeatable")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="recipe override, repeatable")
    parser.add_argument("--out", type=Path, default=Path("runs/deploy"), help="where the exported files go")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    return parser.parse_args()


def _ap(task, predict) -> float:
    return float(task.evaluator(predict)["AP"])


def _eager(task, model, precision: str):
    model = inference_model(model, precision)

    @torch.no_grad()
    def predict(images, sizes):
        with inference_autocast("cpu", precision):
            return task.predict(model, images, sizes)

    return predict


def _exported(detector: ExportedDetector, mean: torch.Tensor, std: torch.Tensor):
    """Predictor over normalised evaluation batches: back to 0–255 pixels (padding → the mean), then the file."""

    def predict(images, sizes):
        return detector.detect(images * std + mean, sizes)

    return predict


def evaluate_variants(recipe, weights: Path, out: Path, batch_size: int) -> dict[str, float]:
    """AP of each variant of one weights file."""
    ckpt = api.read_checkpoint(weights)
    model = api.load_model(ckpt)
    task = build_task(recipe, ckpt.role, label_space=ckpt.label_space, model=model, val_batch_size=batch_size)
    result = export(weights, out / ckpt.role, input_frame="hr")
    mean = torch.tensor(recipe.model.pixel_mean).view(1, 3, 1, 1)
    std = torch.tensor(recipe.model.pixel_std).view(1, 3, 1, 1)
    variants = {
        "eager fp32": _eager(task, model, "fp32"),
        "folded fp32": _eager(task, fold_batchnorm(model), "fp32"),
        "bf16 (folded)": _eager(task, model, "bf16"),
        **{("ONNX Runtime" if p.suffix == ".onnx" else "torch.export"): _exported(ExportedDetector(p, trust_pt2=True), mean, std) for p in result.files},
    }
    aps = {}
    for name, predict in variants.items():
        start = time.perf_counter()
        aps[name] = _ap(task, predict)
        print(f"  {ckpt.role:8s} {name:14s} AP {aps[name]:7.3f}  ({time.perf_counter() - start:.1f} s)", flush=True)
    return aps


def main() -> None:
    args = _parse()
    recipe = load_recipe(args.recipe, overrides=args.sets)
    table = {}
    for weights in args.weights:
        table[str(weights)] = evaluate_variants(recipe, weights, args.out, args.batch_size)
    print(f"\n{'weights':40s} " + " ".join(f"{name:>14s}" for name in next(iter(table.values()))))
    for weights, aps in table.items():
        print(f"{weights:40s} " + " ".join(f"{ap:14.3f}" for ap in aps.values()))
        for name, limit in TOLERANCE.items():
            delta = abs(aps[name] - aps["eager fp32"])
            status = "ok" if delta <= limit else "OVER"
            print(f"    |AP({name}) − AP(eager fp32)| = {delta:.3f} (limit {limit}) {status}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
