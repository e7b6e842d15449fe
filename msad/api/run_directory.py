"""Checks of a run directory before any process starts: the options asked for, and the recipe a resume continues.

The engine decides between a fresh start, a resume and a refusal from the run's own files; what it cannot know is
the recipe: ``--resume`` under a recipe that differs in what shapes the run (model, data, schedule, seed) would
quietly continue one experiment as another, so it is refused here naming the differing fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from msad.config import Recipe
from msad.data import CocoDetection
from msad.errors import CheckpointError, DataError, RecipeError, RunStateError, UsageError
from msad.outputs import check_outputs, same_file
from msad.roles import ROLES, Role, get_role
from msad.serialization import read_metadata

__all__ = ["RUN_FILES", "check_run_directory", "check_run_outputs", "check_trainable", "recipe_differences"]

#: Fields that never change what a run computes (data loading parallelism).
_IRRELEVANT = frozenset({"data.num_workers"})
_SHOWN = 4


def check_run_directory(recipe: Recipe, role: str | Role, output: Path, *, resume: bool, force: bool) -> None:
    """Refuse option combinations and directories a training run must not use.

    Raises:
        UsageError: ``resume`` and ``force`` together.
        RunStateError: ``resume`` under a recipe that differs from the saved run's in what matters, or a fresh
            start in a directory whose ``recipe.toml`` is not from an msad run (it would be overwritten).
    """
    if resume and force:
        raise UsageError("--resume and --force contradict each other: --resume continues the run, --force starts it over")
    if output.exists() and not output.is_dir():
        raise RunStateError(f"output {output} is a file, not a directory; choose another --output")
    if resume:
        _check_run_role(output, role)
    saved = output / "recipe.json"
    if resume and (output / "state.json").is_file() and saved.is_file():
        try:
            old = json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise RunStateError(f"cannot resume: {saved} is unreadable ({err}); start over with --force") from None
        differences = recipe_differences(old, recipe.model_dump(mode="json"), role)
        if differences:
            shown = ", ".join(differences[:_SHOWN]) + (f" (+{len(differences) - _SHOWN} more)" if len(differences) > _SHOWN else "")
            raise RunStateError(
                f"cannot resume {output}: the recipe differs from the run's in {shown}; resume with the run's own "
                f"recipe ({output / 'recipe.toml'}) or start over with --force"
            )
    user_recipe = output / "recipe.toml"
    if not resume and user_recipe.is_file() and not saved.is_file():
        raise RunStateError(
            f"{user_recipe} is not from an msad run and the run would overwrite it; choose another --output"
        )


def _check_run_role(output: Path, role: str | Role) -> None:
    """Refuse to resume, as ``role``, a run another command made (its weights say which).

    Raises:
        RunStateError: naming the command that made the run.
    """
    weights = output / "last.safetensors"
    if not weights.is_file():
        return
    try:
        found = read_metadata(weights).get("role")
    except CheckpointError:
        return  # an unreadable checkpoint is the resume's own error to report
    mine = get_role(role)
    if found in ROLES and found != mine.name:
        made_by = ROLES[found].stage  # a stage is trained by the command of its name
        raise RunStateError(
            f"cannot resume {output} with `msad {mine.stage}`: it holds a {found} run, made by `msad {made_by}`; "
            f"resume it with `msad {made_by} … --resume`, or choose another --output"
        )


def check_trainable(train_set: CocoDetection, recipe: Recipe) -> None:
    """Refuse a training set with no box to learn from, as annotated or at the recipe's ``data.scale``.

    Raises:
        DataError: the training set has no (non-crowd) annotation at all.
        RecipeError: ``data.scale`` shrinks every box below the smallest trainable size.
    """
    where = str(train_set.annotations_file)
    if train_set.num_boxes == 0:
        raise DataError(f"training set {where} has no (non-crowd) annotations: there is nothing to train on")
    data = recipe.data
    if train_set.has_trainable_box(short_size=max(data.train_sizes), max_size=data.max_size, scale=data.scale) is False:
        raise RecipeError(
            f"data.scale = {data.scale:g}: every box of {where} shrinks below 1 pixel after resizing, so training "
            "would learn from nothing; raise data.scale (0.5 is the low-resolution setting)"
        )


#: Files (and, for ``tensorboard/``, a folder) a training run writes in its directory under fixed names.
RUN_FILES = (
    "recipe.toml", "recipe.json", "environment.json", "metrics.jsonl", "state.json", "last.safetensors",
    "best.safetensors", "curves.png", "tensorboard/events",
)


def check_run_outputs(recipe: Recipe, output: Path, *, teacher: str | Path | None = None) -> None:
    """Refuse a run directory whose files would overwrite an input (recipe, annotations, ``--teacher``) or be
    written outside it through a symbolic link (:func:`msad.outputs.check_outputs`).

    The run's own ``recipe.toml`` given as the recipe (resuming with it) is no clash: the run rewrites it with
    the recipe it holds.
    """
    own = output / "recipe.toml"
    inputs = [(what, path) for what, path in recipe.input_files() if not same_file(path, own)]
    check_outputs(
        [("--output", output / name) for name in RUN_FILES],
        inputs=[*inputs, ("--teacher", teacher)], within=output, fix="choose another --output",
    )


def recipe_differences(old: Mapping[str, Any], new: Mapping[str, Any], role: str | Role) -> list[str]:
    """Dotted fields (``solver.lr`` …) where two recipe dumps differ in what shapes a run of ``role`` (its
    :attr:`~msad.roles.Role.resume_sections`)."""
    role = get_role(role)
    sections, stage = role.resume_sections, role.stage
    flat_old, flat_new = dict(_flatten(old)), dict(_flatten(new))
    # a key only one side has is a field added by another msad version (its default), except for plugin options
    keys = sorted((flat_old.keys() & flat_new.keys()) | {k for k in flat_old.keys() ^ flat_new.keys() if ".options." in k})
    return [
        key for key in keys
        if any(key == s or key.startswith(s + ".") for s in sections)
        and key not in _IRRELEVANT
        and not _other_stage(key, stage)
        and flat_old.get(key) != flat_new.get(key)
    ]


def _other_stage(key: str, stage: str) -> bool:
    """Whether ``key`` is a solver override of a stage this run does not train."""
    return any(key.startswith(f"{s}.solver.") for s in ("teacher", "distill") if s != stage)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, leaf value)`` pairs of a nested mapping."""
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, dotted + ".")
        else:
            yield dotted, value
