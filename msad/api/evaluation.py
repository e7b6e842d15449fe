"""Evaluation through the Python API: COCO box metrics of a weights file on a recipe's validation set."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msad.api.run_errors import user_situations
from msad.api.training import build_task
from msad.build import build_val_dataset
from msad.checkpoint import check_compatible, load_model, read_checkpoint
from msad.comm import get_rank
from msad.config import Recipe, recipe_from_dict
from msad.engine import launch
from msad.engine.distributed import resolve_device
from msad.engine.inference import check_precision, inference_autocast, inference_model
from msad.engine.metrics import strict_json
from msad.errors import RecipeError, UsageError
from msad.evaluation.coco_eval import CocoEvaluator
from msad.outputs import check_outputs
from msad.roles import Teacher, get_role
from msad.serialization import atomic_write_text
from msad.tasks.evaluation_loop import evaluate_coco

__all__ = ["METRICS", "TEACHER_BRANCHES", "evaluate", "evaluate_branches", "eval_inputs"]

#: The COCO box metrics msad reports, 0–100.
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
#: The teacher's branches, in the order ``--branch all`` shows them.
TEACHER_BRANCHES = Teacher.branches


@dataclass(frozen=True)
class _EvalJob:
    recipe: dict[str, Any]
    weights: str
    branch: str | None
    batch_size: int
    precision: str = "fp32"
    per_class: bool = False
    results: str | None = None


def evaluate(
    recipe: Recipe, weights: str | Path, *, branch: str | None = None, gpus: int = 1, batch_size: int = 4,
    json_out: str | Path | None = None, precision: str = "fp32", per_class: bool = False,
    results_out: str | Path | None = None,
) -> dict[str, Any]:
    """COCO box AP, AP50, AP75, APs, APm, APl (0–100) of ``weights`` on ``recipe``'s validation data.

    The architecture comes from the checkpoint's own recipe (its width must match ``recipe``'s); the data
    pipeline from ``recipe``. A teacher is evaluated on ``branch`` (``fused`` by default; ``hr`` or ``lr``).

    The resolution is ``recipe.data.scale``: an LR baseline trained with ``--set data.scale=0.5`` is evaluated
    at LR only when the same override is given (``data_scale`` and ``trained_data_scale`` in the report tell).
    ``precision`` ``bf16`` evaluates under bfloat16 autocast with batch norm folded (:mod:`msad.engine.inference`).

    ``per_class`` adds ``"per_class": {class name: AP}`` (AP 0.50:0.95, all areas; ``nan`` for a class without
    ground truth) to the report. ``results_out`` receives the detections on the validation images as a COCO
    results file (``image_id``, ``category_id``, ``bbox`` x, y, w, h, ``score``), which ``COCO.loadRes`` reads.

    Returns:
        ``{"role", "branch", "weights", "metrics": {…}, "data_scale", "trained_data_scale"}``, also written to
        ``json_out`` when given.
    """
    check_outputs([("--json", json_out), ("--results", results_out)], inputs=eval_inputs(recipe, weights))
    ckpt = read_checkpoint(weights)
    check_compatible(ckpt, recipe)
    role = get_role(ckpt.role)
    if branch is not None and not role.branches:
        raise UsageError(f"--branch applies to teacher weights; {weights} holds a {ckpt.role}")
    job = _EvalJob(
        recipe.model_dump(mode="json"), str(weights), branch, batch_size, check_precision(precision), per_class,
        None if results_out is None else str(results_out),
    )
    detailed = per_class or results_out is not None
    with user_situations("evaluation"):
        metrics = launch(_detailed_eval_worker if detailed else _eval_worker, num_procs=gpus, args=(job,),
                         device=recipe.run.device, timeout_minutes=recipe.run.dist_timeout_minutes) or {}
    extra = {}
    if detailed:
        metrics, extra = metrics["metrics"], {"per_class": metrics["per_class"]} if per_class else {}
    used = role.branch(recipe, branch)
    report = {
        "role": ckpt.role, "branch": used, "weights": str(weights), "metrics": metrics,
        "data_scale": recipe.data.scale, "trained_data_scale": ckpt.recipe.data.scale, "precision": precision, **extra,
    }
    if json_out is not None:
        atomic_write_text(json_out, strict_json(report, indent=1))  # NaN (an undefined AP) is written as null
    return report


def evaluate_branches(
    recipe: Recipe, weights: str | Path, *, gpus: int = 1, batch_size: int = 4, json_out: str | Path | None = None,
) -> dict[str, Any]:
    """A teacher's metrics on each of its branches (HR, LR, fused), as :func:`evaluate` gives them one by one.

    Returns:
        ``{"role", "weights", "branches": {"hr": {…}, "lr": {…}, "fused": {…}}, "data_scale",
        "trained_data_scale"}``, also written to ``json_out`` when given.
    """
    check_outputs([("--json", json_out)], inputs=eval_inputs(recipe, weights))
    ckpt = read_checkpoint(weights)
    branches = get_role(ckpt.role).branches
    if not branches:
        raise UsageError(f"--branch all applies to teacher weights; {weights} holds a {ckpt.role}")
    reports = {b: evaluate(recipe, weights, branch=b, gpus=gpus, batch_size=batch_size) for b in branches}
    first = reports[branches[0]]
    report = {
        "role": ckpt.role, "weights": str(weights), "branches": {b: r["metrics"] for b, r in reports.items()},
        "data_scale": first["data_scale"], "trained_data_scale": first["trained_data_scale"],
    }
    if json_out is not None:
        atomic_write_text(json_out, strict_json(report, indent=1))
    return report


def eval_inputs(recipe: Recipe, weights: str | Path) -> list[tuple[str, str | Path]]:
    """The files an evaluation of ``weights`` on ``recipe``'s data reads (no output may land on one)."""
    return [("--weights", weights), *recipe.input_files()]


def _eval_worker(job: _EvalJob) -> dict[str, float]:
    """One rank's share of the evaluation."""
    recipe = recipe_from_dict(job.recipe)
    ckpt = read_checkpoint(job.weights)
    device = resolve_device(recipe.run.device)
    model = inference_model(load_model(ckpt), job.precision).to(device)
    task = build_task(
        recipe, ckpt.role, label_space=ckpt.label_space, model=model, eval_branch=job.branch,
        val_batch_size=job.batch_size,
    )
    if task.evaluator is None:
        raise RecipeError("data.val_annotations is empty: the recipe has no validation data to evaluate on")
    with inference_autocast(device, job.precision):
        return task.evaluate(model)


def _detailed_eval_worker(job: _EvalJob) -> dict[str, Any]:
    """One rank's share of an evaluation that also reports per-class AP and writes the COCO results (rank 0)."""
    recipe = recipe_from_dict(job.recipe)
    ckpt = read_checkpoint(job.weights)
    device = resolve_device(recipe.run.device)
    model = inference_model(load_model(ckpt), job.precision).to(device)
    task = build_task(recipe, ckpt.role, label_space=ckpt.label_space, model=model, eval_branch=job.branch,
                      val_batch_size=job.batch_size)
    if task.evaluator is None:
        raise RecipeError("data.val_annotations is empty: the recipe has no validation data to evaluate on")
    dataset = build_val_dataset(recipe, label_space=ckpt.label_space)
    evaluator = CocoEvaluator(dataset.coco, dataset.category_ids, backend=recipe.eval.backend)
    with inference_autocast(device, job.precision):
        metrics = evaluate_coco(
            lambda images, sizes: task.predict(model, images, sizes), dataset, collate=get_role(ckpt.role).collator(recipe),
            batch_size=job.batch_size, num_workers=recipe.data.num_workers, evaluator=evaluator,
        )
    per_class: dict[str, float] = {}
    if get_rank() == 0:
        names = dict(dataset.label_space)  # the model's classes: the validation file may have a subset of them
        ap = evaluator.per_category_ap()
        per_class = {names[c]: ap.get(c, 0.0 if not ap else math.nan) for c in dataset.category_ids}
        if job.results is not None:
            atomic_write_text(job.results, json.dumps(evaluator.results()))
    return {"metrics": metrics, "per_class": per_class}
