"""Training through the Python API: the FCOS baseline, the MSAD teacher and the distilled student.

``train``, ``train_teacher`` and ``distill`` each launch :func:`_train_worker` on every rank (``gpus``
local ranks, or the ranks ``torchrun`` set up); the worker builds data, model and task from the resolved
recipe and hands them to the one engine.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from msad.api.run_directory import check_run_directory, check_run_outputs, check_trainable
from msad.api.run_errors import user_situations
from msad.build import build_train_dataset, run_settings, solver_settings
from msad.checkpoint import Checkpoint, check_compatible, detector_metadata, load_model, read_checkpoint
from msad.comm import get_rank, get_world_size
from msad.config import Recipe, recipe_from_dict
from msad.console import plural
from msad.data import build_train_loader
from msad.engine import Trainer, launch, resolve_device, seed_everything
from msad.engine.distributed import launched_rank, restart_count
from msad.errors import CheckpointError, UsageError
from msad.roles import Role, get_role
from msad.run_lock import hold_run_directory
from msad.tasks.detection import DetectionTask
from msad.tasks.student import kd_ramp

__all__ = ["TrainResult", "train", "train_teacher", "distill", "build_task", "stage_output"]

@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        output: the run directory.
        weights: ``last.safetensors`` of the run.
        metrics: the final evaluation metrics (COCO AP… on a 0–100 scale).
        rank: the rank of this process (under ``torchrun`` every rank returns one; only rank 0's is reported).
    """

    output: Path
    weights: Path
    metrics: dict[str, float] = field(default_factory=dict)
    rank: int = 0


@dataclass(frozen=True)
class _Job:
    """Everything a rank needs, picklable for spawned processes."""

    recipe: dict[str, Any]
    role: str
    resume: bool
    force: bool
    teacher: str | None


def train(recipe: Recipe, *, gpus: int = 1, output: str | Path | None = None, resume: bool = False, force: bool = False,
          max_restarts: int = 0) -> TrainResult:
    """Train the single-resolution FCOS baseline (``data.scale`` 0.5 gives the low-resolution baseline).

    ``max_restarts``: how many times a group whose rank failed is restarted; it resumes from the last checkpoint.
    """
    return _run(recipe, "baseline", gpus=gpus, output=output, resume=resume, force=force, max_restarts=max_restarts)


def train_teacher(recipe: Recipe, *, gpus: int = 1, output: str | Path | None = None, resume: bool = False,
                  force: bool = False, max_restarts: int = 0) -> TrainResult:
    """Train the aligned multi-scale teacher with C-FF (MSAD stage 1); ``max_restarts`` as for :func:`train`."""
    return _run(recipe, "teacher", gpus=gpus, output=output, resume=resume, force=force, max_restarts=max_restarts)


def distill(
    recipe: Recipe, *, teacher: str | Path, gpus: int = 1, output: str | Path | None = None, resume: bool = False,
    force: bool = False, max_restarts: int = 0,
) -> TrainResult:
    """Distil the low-resolution student from a trained teacher's weights (MSAD stage 2); ``max_restarts`` as
    for :func:`train`."""
    check_compatible(read_checkpoint(teacher, role="teacher"), recipe)  # fail fast, before any process starts
    return _run(recipe, "student", gpus=gpus, output=output, resume=resume, force=force, teacher=str(teacher),
                max_restarts=max_restarts)


def _warn_unfinished_ramp(recipe: Recipe) -> None:
    """Say (once, on stderr) when the KD warm-up is longer than the distillation: the weight never reaches its value."""
    ramp, iters, weight = recipe.distill.ramp_iters, recipe.solver_for(get_role("student").stage).iters, recipe.distill.kd_weight
    if weight > 0 and ramp > iters:
        print(f"msad: warning: distill.ramp_iters = {ramp} is longer than the {iters} distillation iterations, so the KD "
              f"weight ends at {kd_ramp(iters - 1, ramp):.2f} × distill.kd_weight = {weight:g}; set distill.ramp_iters "
              f"to at most {iters} (e.g. --set distill.ramp_iters={max(1, iters // 4)})", file=sys.stderr, flush=True)


def stage_output(recipe: Recipe, role: str, output: str | Path | None = None) -> Path:
    """The run directory of a stage: ``output`` when given, else ``{run.output}/{role}``.

    Each stage (``baseline``, ``teacher``, ``student``) has its own directory, so that distilling with the recipe
    that trained the teacher never writes into the teacher's run.
    """
    return Path(output) if output is not None else Path(recipe.run.output) / role


def _check_teacher_kept(teacher: str | Path, out: Path) -> None:
    """Refuse a student run whose directory holds the ``--teacher`` file, or the file a link given as
    ``--teacher`` points to (the run could overwrite or remove it)."""
    folders = {os.path.realpath(Path(teacher).parent), os.path.dirname(os.path.realpath(teacher))}
    if os.path.realpath(out) in folders:
        raise UsageError(
            f"--teacher {teacher} is in the output directory {out}, which the student run writes into "
            "(even with --force it is never overwritten): pass an --output other than the teacher's folder"
        )


def _run(recipe: Recipe, role: str, *, gpus: int, output: str | Path | None, resume: bool, force: bool,
         teacher: str | None = None, max_restarts: int = 0) -> TrainResult:
    out = stage_output(recipe, role, output)
    if teacher is not None:
        _check_teacher_kept(teacher, out)
    recipe = recipe.model_copy(update={"run": recipe.run.model_copy(update={"output": str(out)})})
    get_role(role).check_trainable(recipe)
    if restart_count():  # a rank torchrun restarted: it continues its run (the engine decides from the directory)
        resume, force = True, False
    check_run_directory(recipe, role, out, resume=resume, force=force)
    check_run_outputs(recipe, out, teacher=teacher)
    if max_restarts and launched_rank() == 0 and "TORCHELASTIC_RUN_ID" in os.environ:
        print("--max-restarts is ignored under torchrun: pass it to torchrun (torchrun --max-restarts N …)", flush=True)
    job = _Job(recipe.model_dump(mode="json"), role, resume, force, teacher)
    # one run per directory, until it ends: the lock is held here, by the launching process, so that it outlives the
    # ranks' restarts under the elastic agent (under torchrun: by rank 0's process, restarted with it)
    with hold_run_directory(out), user_situations("training", output=out):
        metrics = launch(_train_worker, num_procs=gpus, args=(job,), device=recipe.run.device,
                         max_restarts=max_restarts, timeout_minutes=recipe.run.dist_timeout_minutes) or {}
    return TrainResult(out, out / "last.safetensors", metrics, rank=launched_rank())


def _train_worker(job: _Job) -> dict[str, float]:
    """One rank: build everything from the recipe and train."""
    recipe, role = recipe_from_dict(job.recipe), get_role(job.role)
    _check_batch_split(recipe, role)
    seed_everything(recipe.run.seed)  # the model's starting weights are drawn from the recipe's seed
    train_set = build_train_dataset(recipe)
    check_trainable(train_set, recipe)
    teacher_ckpt = read_checkpoint(job.teacher, role="teacher") if job.teacher else None
    if teacher_ckpt is not None and teacher_ckpt.label_space != train_set.label_space:
        raise CheckpointError(
            f"{teacher_ckpt.path}: the teacher's classes {[n for _, n in teacher_ckpt.label_space]} differ from "
            f"the training data's {train_set.class_names}"
        )
    task = build_task(recipe, role, label_space=train_set.label_space, teacher=teacher_ckpt, train_set=train_set)
    if teacher_ckpt is not None and get_rank() == 0:
        mode = {"eval": "eval mode (running statistics)", "train": "train mode (batch statistics, as the reference)"}
        print(f"teacher {job.teacher}: frozen, BatchNorm in {mode[recipe.distill.teacher_bn]}", flush=True)
        _warn_unfinished_ramp(recipe)  # once the inputs are accepted
    solver = solver_settings(recipe, stage=role.stage)
    run = recipe.run
    settings = run_settings(recipe, stage=role.stage)
    collate = role.collator(recipe, normalize_on_device=True)  # uint8 to the device, normalised there
    pin = resolve_device(settings.device).type == "cuda"  # pinned batches: copies the host does not wait for
    landscape = train_set.landscape() if recipe.data.group_aspect_ratio else None  # None: no aspect-ratio grouping

    def loader(start: int, rank: int, world_size: int):
        return build_train_loader(
            train_set, total_batch_size=solver.batch_size, rank=rank, world_size=world_size, seed=run.seed,
            start_iter=start, num_workers=recipe.data.num_workers, collate=collate, pin_memory=pin,
            landscape=landscape,
        )

    files = {"recipe.toml": recipe.dump_toml(), "recipe.json": json.dumps(recipe.model_dump(mode="json"), indent=1)}
    trainer = Trainer(task, solver=solver, run=settings, make_train_loader=loader, resume=job.resume, force=job.force,
                      files=files, about=_data_sizes(len(train_set), getattr(task.evaluator, "num_images", None)))
    return trainer.fit()


def _data_sizes(train: int, val: int | None) -> str:
    """``"data: 400 train images, 100 val images"`` for the start banner (``no validation`` without val data)."""
    return f"data: {plural(train, 'train image')}, " + ("no validation" if val is None else plural(val, "val image"))


def _check_batch_split(recipe: Recipe, role: str | Role) -> None:
    """Refuse a global batch that the ranks cannot share equally (before anything is built)."""
    batch, ranks = recipe.solver_for(get_role(role).stage).batch_size, get_world_size()
    if batch % ranks:
        raise UsageError(
            f"solver.batch_size = {batch} (the batch over all ranks) cannot be split over {ranks} ranks; "
            f"use a multiple of {ranks} or another --gpus"
        )


def build_task(
    recipe: Recipe, role: str | Role, *, label_space: list[tuple[int, str]], teacher: Checkpoint | None = None,
    train_set=None, val_batch_size: int | None = None, model: nn.Module | None = None, eval_branch: str | None = None,
) -> DetectionTask:
    """The engine task of a role (:meth:`msad.roles.Role.build_task`), a student's from a teacher checkpoint.

    Args:
        recipe: the resolved recipe.
        role: ``baseline``, ``teacher`` or ``student`` (or the role).
        label_space: ``[(coco_id, name), …]`` in label order.
        teacher: the teacher checkpoint a student is trained from (checked against the recipe, then loaded).
        train_set: the training set, to check the validation categories against.
        val_batch_size: images per rank in evaluation (default: the solver batch over ranks).
        model: an already built (e.g. loaded) model; a student given this way needs no teacher (evaluation).
        eval_branch: the teacher branch to evaluate (default ``teacher.eval_branch``).
    """
    role = get_role(role)
    frozen_teacher = None
    if teacher is not None and model is None:
        check_compatible(teacher, recipe)
        frozen_teacher = load_model(teacher)
    return role.build_task(
        recipe, label_space=label_space, metadata=detector_metadata(recipe, role=role.name, label_space=list(label_space)),
        model=model, teacher=frozen_teacher, train_set=train_set, val_batch_size=val_batch_size, eval_branch=eval_branch,
    )
