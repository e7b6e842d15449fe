"""Accuracy benchmark: HR baseline, LR baseline, MSAD teacher and MSAD student, side by side.

On the built-in synthetic dataset (many small objects, so halving the resolution hurts), this trains
(a) the FCOS baseline at high resolution, (b) the conventional low-resolution baseline (``data.scale=0.5``),
(c) the aligned multi-scale teacher (evaluated on its fused branch, and on its HR and LR branches), and
(d) the MSAD student distilled from (c), which sees only the ×½ image; then prints one table with AP,
AP50, APs and the paper's capacity (backbone multiply-adds relative to width 1.0 at HR).

    python benchmarks/accuracy.py                      # recipes/tiny.toml on data/synth, CPU
    python benchmarks/accuracy.py --set solver.iters=2000 --set run.device=cuda --out runs/bench_gpu

Results (table and JSON) go to ``--out``; nothing in the repo is modified.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from msad import api
from msad.config import Recipe, load_recipe
from msad.engine.metrics import read_metrics


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="recipes/tiny.toml", help="recipe of all four runs")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="recipe override dotted.key=value")
    parser.add_argument("--distill-set", action="append", default=[], help="overrides of the student run only")
    parser.add_argument("--out", default="runs/bench_accuracy", help="run directories and results go here")
    parser.add_argument("--data", default="data/synth", help="synthetic dataset root (generated when missing)")
    parser.add_argument("--train-images", type=int, default=400)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="reuse finished runs in --out instead of refusing")
    return parser.parse_args()


def _ensure_data(root: Path, train: int, val: int) -> None:
    if not (root / "annotations" / "val.json").exists():
        print(f"generating the synthetic dataset in {root} …", flush=True)
        api.synth_data(root, train=train, val=val, seed=0)


def _stage(name: str, fn, **kwargs) -> tuple[api.TrainResult, float | None]:
    """Run (or, with --resume, re-evaluate a finished) training; return it and its training seconds."""
    print(f"\n=== {name} ===", flush=True)
    result = fn(**kwargs)
    records = [r for r in read_metrics(result.output / "metrics.jsonl") if r.get("type") == "train"]
    return result, (records[-1].get("elapsed") if records else None)


def main() -> None:
    args = _parse()
    out = Path(args.out)
    _ensure_data(Path(args.data), args.train_images, args.val_images)
    base = load_recipe(args.recipe, overrides=args.sets)
    lr = load_recipe(args.recipe, overrides=[*args.sets, "data.scale=0.5"])
    student_recipe = load_recipe(args.recipe, overrides=[*args.sets, *args.distill_set])
    common = {"gpus": args.gpus, "resume": args.resume}
    runs = {}
    runs["hr"] = _stage("(a) FCOS baseline, HR", api.train, recipe=base, output=out / "baseline_hr", **common)
    runs["lr"] = _stage("(b) FCOS baseline, LR (data.scale=0.5)", api.train, recipe=lr, output=out / "baseline_lr", **common)
    runs["teacher"] = _stage("(c) MSAD teacher", api.train_teacher, recipe=base, output=out / "teacher", **common)
    teacher_weights = runs["teacher"][0].weights
    runs["student"] = _stage(
        "(d) MSAD student, LR", api.distill, recipe=student_recipe, teacher=teacher_weights, output=out / "student", **common
    )
    # Controls: the student starts from the teacher, so it has seen twice the iterations of (b).
    no_kd = load_recipe(args.recipe, overrides=[*args.sets, *args.distill_set, "distill.kd_weight=0"])
    runs["no_kd"] = _stage(
        "(e) student init from teacher, KD off", api.distill, recipe=no_kd, teacher=teacher_weights, output=out / "student_no_kd",
        **common,
    )
    solver = base.solver
    long_lr = load_recipe(args.recipe, overrides=[
        *args.sets, "data.scale=0.5", f"solver.iters={2 * solver.iters}", f"solver.steps={[2 * s for s in solver.steps]}",
    ])
    runs["lr_long"] = _stage("(b2) FCOS LR baseline, 2x iterations", api.train, recipe=long_lr, output=out / "baseline_lr_2x", **common)
    branches = {b: api.evaluate(base, teacher_weights, branch=b)["metrics"] for b in ("hr", "lr")}
    report = api.capacity(base, widths=(_width(base),), image_size=(base.data.test_size, base.data.max_size), num_classes=5)
    cap = report.rows[0]
    hr_capacity = cap.backbone_gmacs_hr / report.reference_gmacs
    rows = [
        ("(a) FCOS HR baseline", "HR", runs["hr"][0].metrics, hr_capacity, runs["hr"][1]),
        ("(b) FCOS LR baseline", "LR", runs["lr"][0].metrics, cap.student_capacity, runs["lr"][1]),
        ("(c) MSAD teacher, fused", "HR+LR", runs["teacher"][0].metrics, cap.teacher_capacity, runs["teacher"][1]),
        ("    teacher, HR branch", "HR", branches["hr"], None, None),
        ("    teacher, LR branch", "LR", branches["lr"], None, None),
        ("(d) MSAD student", "LR", runs["student"][0].metrics, cap.student_capacity, runs["student"][1]),
        ("(e) student init from teacher, no KD", "LR", runs["no_kd"][0].metrics, cap.student_capacity, runs["no_kd"][1]),
        ("(b2) FCOS LR baseline, 2x iterations", "LR", runs["lr_long"][0].metrics, cap.student_capacity, runs["lr_long"][1]),
    ]
    table = _markdown(rows)
    print("\n" + table)
    gains = {
        "student_minus_lr_baseline_AP": runs["student"][0].metrics["AP"] - runs["lr"][0].metrics["AP"],
        "teacher_minus_student_AP": runs["teacher"][0].metrics["AP"] - runs["student"][0].metrics["AP"],
        "kd_gain_AP": runs["student"][0].metrics["AP"] - runs["no_kd"][0].metrics["AP"],
        "student_minus_lr_baseline_2x_AP": runs["student"][0].metrics["AP"] - runs["lr_long"][0].metrics["AP"],
    }
    print("\n" + ", ".join(f"{k} = {v:+.2f}" for k, v in gains.items()))
    (out / "accuracy.md").write_text(table + "\n")
    (out / "accuracy.json").write_text(json.dumps({"recipe": args.recipe, "sets": args.sets, "rows": [
        {"model": m, "input": i, "metrics": met, "capacity": c, "seconds": s} for m, i, met, c, s in rows
    ], **gains}, indent=1))


def _width(recipe: Recipe) -> float:
    return float(recipe.model.backbone.options.get("width", 1.0))


def _markdown(rows) -> str:
    lines = ["| model | input | AP | AP50 | APs | capacity | train time (s) |", "|---|---|---:|---:|---:|---:|---:|"]
    for model, res, metrics, capacity, seconds in rows:
        cap = "" if capacity is None else f"{capacity:.3f}x"
        secs = "" if seconds is None else f"{seconds:.0f}"
        lines.append(f"| {model} | {res} | {metrics['AP']:.2f} | {metrics['AP50']:.2f} | {metrics['APs']:.2f} | {cap} | {secs} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
