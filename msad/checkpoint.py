"""Detector weights files: their metadata, reading and checking them, and rebuilding a model from them.

Below :mod:`msad.api` (it builds on :mod:`msad.build`), so export, conversion and the API all read checkpoints here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

import msad
from msad.build import model_width
from msad.config import PluginSpec, Recipe, recipe_from_dict
from msad.config.recipe import PLUGIN_TABLES
from msad.errors import CheckpointError, RecipeError
from msad.plugins import declared_options
from msad.roles import ROLES, get_role
from msad.serialization import load_weights, state_mismatch

__all__ = ["Checkpoint", "detector_metadata", "read_checkpoint", "load_model", "check_compatible", "without_init_files"]


def detector_metadata(recipe: Recipe, *, role: str, label_space: list[tuple[int, str]]) -> dict[str, str]:
    """Checkpoint metadata of a detector: role, width, resolved recipe, classes and COCO ids (JSON strings)."""
    return {
        "role": role,
        "width": json.dumps(model_width(recipe)),
        "recipe": json.dumps(recipe.model_dump(mode="json")),
        "classes": json.dumps([name for _, name in label_space]),
        "category_ids": json.dumps([cid for cid, _ in label_space]),
        "msad_version": msad.__version__,
    }


@dataclass
class Checkpoint:
    """A detector weights file, checked.

    Attributes:
        path: the file.
        state: its tensors.
        role: ``baseline``, ``teacher`` or ``student``.
        recipe: the resolved recipe it was trained with.
        label_space: ``[(coco_id, name), …]`` in label order.
        metadata: every metadata string.
    """

    path: Path
    state: dict[str, Tensor]
    role: str
    recipe: Recipe
    label_space: list[tuple[int, str]]
    metadata: dict[str, str]

    @property
    def width(self) -> float | None:
        """Backbone width (``None`` when the backbone has none)."""
        return model_width(self.recipe)


def read_checkpoint(path: str | Path, *, role: str | None = None) -> Checkpoint:
    """Read and check a detector weights file (optionally of one ``role``).

    Raises:
        CheckpointError: missing, corrupt, not a detector, incomplete metadata, or the wrong role.
    """
    path = Path(path)
    state, meta = load_weights(path)
    found = meta.get("role")
    if found not in ROLES:
        what = "a backbone file" if found == "backbone" else f"role {found!r}"
        raise CheckpointError(f"{path}: {what}, not detector weights (baseline, teacher or student)")
    if role is not None and found != role:
        raise CheckpointError(f"{path}: holds a {found} model, expected a {role}")
    try:
        recipe = recipe_from_dict(json.loads(meta["recipe"]))
        names, ids = json.loads(meta["classes"]), json.loads(meta["category_ids"])
    except (KeyError, json.JSONDecodeError, RecipeError) as err:
        raise CheckpointError(f"{path}: incomplete or invalid metadata ({err})") from None
    if len(names) != len(ids):
        raise CheckpointError(f"{path}: metadata has {len(names)} class names but {len(ids)} category ids")
    return Checkpoint(path, state, found, recipe, list(zip(ids, names, strict=True)), meta)


def check_compatible(ckpt: Checkpoint, recipe: Recipe) -> None:
    """Refuse a checkpoint whose backbone width or architecture differs from ``recipe``'s.

    Raises:
        CheckpointError: naming the first difference.
    """
    mine, theirs = recipe.model, ckpt.recipe.model
    if model_width(recipe) != ckpt.width:
        raise CheckpointError(f"{ckpt.path}: width {ckpt.width} does not match the recipe's width {model_width(recipe)}")
    for part, group in _PARTS.items():
        a, b = getattr(mine, part), getattr(theirs, part)
        if a.name != b.name:
            raise CheckpointError(f"{ckpt.path}: model.{part} is {b.name!r}, the recipe asks for {a.name!r}")
        ours, its = _architecture(group, a), _architecture(group, b)
        for key in sorted(ours.keys() | its.keys()):
            if ours.get(key) != its.get(key):
                raise CheckpointError(
                    f"{ckpt.path}: model.{part}.{key} is {its.get(key)!r}, the recipe asks for {ours.get(key)!r}"
                )
    if recipe.teacher.k != ckpt.recipe.teacher.k:
        raise CheckpointError(f"{ckpt.path}: teacher.k is {ckpt.recipe.teacher.k}, the recipe asks for {recipe.teacher.k}")


#: The model's plugin tables and their entry-point groups (the ``[model.*]`` rows of the recipe's plugin tables).
_PARTS = {part: group for (table, part), group in PLUGIN_TABLES.items() if table == "model"}


def _architecture(group: str, spec: PluginSpec) -> dict:
    """The options of a plugin that shape its weights: all but those it declares as initialisation, freezing or
    training options (:func:`msad.plugins.declared_options`)."""
    ignored = declared_options(group, spec.name).not_architecture
    return {k: v for k, v in spec.options.items() if k not in ignored}


def load_model(ckpt: Checkpoint) -> nn.Module:
    """Rebuild the checkpoint's model from its own recipe and load its weights strictly (eval mode).

    The checkpoint is self-contained: its recipe's initialisation files (``model.backbone.weights`` …, the options
    each plugin declares as such) are never
    opened, since the checkpoint's own tensors replace them (and a path in metadata is not for msad to follow).

    Raises:
        CheckpointError: the weights do not fit the architecture (names the first keys that differ).
    """
    model = get_role(ckpt.role).build_model(without_init_files(ckpt.recipe), num_classes=len(ckpt.label_space))
    load_state(model, ckpt.state, source=ckpt.path)
    return model.eval()


def without_init_files(recipe: Recipe) -> Recipe:
    """A copy of ``recipe`` whose model plugins are built from scratch: the options each declares as naming an
    initialisation file (read when training starts, never when loading weights) are removed."""
    model = recipe.model.model_copy(deep=True)
    for part, group in _PARTS.items():
        spec = getattr(model, part)
        init_files = declared_options(group, spec.name).init_files
        spec.options = {k: v for k, v in spec.options.items() if k not in init_files}
    return recipe.model_copy(update={"model": model})


def load_state(model: nn.Module, state: dict[str, Tensor], *, source: Path | str) -> None:
    """``model.load_state_dict(state)`` with a one-line :class:`CheckpointError` on any mismatch."""
    problem = state_mismatch(model.state_dict(), state)
    if problem:
        raise CheckpointError(f"{source}: weights do not fit the model: {problem}")
    model.load_state_dict(state)
