"""``msad convert``: checkpoints of other code bases as msad detector weights.

:func:`convert_detectron2` turns a released MSAD ``model_final.pth`` (detectron2) into a teacher or student
safetensors file that ``msad evaluate`` / ``msad predict`` read like any msad checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from msad.checkpoint import detector_metadata, load_state
from msad.config import Recipe, load_recipe
from msad.convert.coco_classes import COCO_2017_CLASSES
from msad.convert.detectron2 import (
    DETECTRON2_PIXEL_MEAN_RGB,
    DETECTRON2_ROLES,
    convert_detectron2_state,
    detectron2_num_classes,
    detectron2_role,
    load_detectron2_checkpoint,
)
from msad.errors import CheckpointError
from msad.outputs import check_outputs
from msad.roles import get_role
from msad.serialization import save_weights

__all__ = ["convert_detectron2"]

# ---------------------------------------------------------------------------------------------------------------
# convert_slimmable (the public slimmable_networks ImageNet backbone → msad backbone file) lives in
# msad/api/convert_backbone.py; msad.api re-exports both converters.
# ---------------------------------------------------------------------------------------------------------------


def _label_space(annotations: str | Path | None) -> list[tuple[int, str]]:
    """``[(category id, name), …]`` sorted by id, from a COCO json, or COCO 2017's 80 classes."""
    if annotations is None:
        return list(COCO_2017_CLASSES)
    from msad.data.coco import load_coco_json

    data = load_coco_json(annotations)
    return sorted((int(c["id"]), str(c.get("name", c["id"]))) for c in data["categories"])




def convert_detectron2(
    source: str | Path,
    output: str | Path,
    *,
    recipe: Recipe | str | Path,
    annotations: str | Path | None = None,
    role: str | None = None,
) -> Path:
    """Convert an original MSAD detectron2 checkpoint into msad teacher or student weights.

    The model is built from ``recipe`` (its backbone width must be the width the file was trained at, e.g.
    ``recipes/w025.toml`` for the 0.25 models), the converted tensors are loaded strictly, and the file is
    written atomically with the usual detector metadata. Everything is checked before ``output`` is touched.
    The stem conv is rewritten for msad's RGB input normalisation (the original read BGR, std 1).

    Args:
        source: the ``model_final.pth`` file.
        output: the ``.safetensors`` file to write.
        recipe: the resolved recipe (or a recipe file) describing the architecture.
        annotations: a COCO json whose categories, sorted by id, are the label space; default COCO 2017's 80.
        role: ``"teacher"`` or ``"student"`` to insist on; default what the file's keys say.

    Returns:
        ``output``.

    Raises:
        CheckpointError: the file is unreadable or not in the original layout, holds another role, its
            class count differs from the label space's, or it does not fit the recipe's architecture.
        DatasetError: ``annotations`` is unreadable.
    """
    source, output = Path(source), Path(output)
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    check_outputs([("OUTPUT", output)], inputs=[("SOURCE", source), ("--annotations", annotations), *recipe.input_files()])
    if role is not None and role not in DETECTRON2_ROLES:
        raise CheckpointError(f"original MSAD checkpoints hold a teacher or a student, not a {role!r}")
    state = load_detectron2_checkpoint(source)
    try:
        found = detectron2_role(state)
    except CheckpointError as err:
        raise CheckpointError(f"{source}: {err}") from None
    if role is not None and found != role:
        raise CheckpointError(f"{source}: holds a {found} (its keys say so), but a {role} was asked for")
    label_space = _label_space(annotations)
    rows = detectron2_num_classes(state, found)
    if rows != len(label_space):
        where = f"{annotations}" if annotations is not None else "COCO 2017"
        raise CheckpointError(f"{source}: the checkpoint scores {rows} classes, but {where} has {len(label_space)}")
    if recipe.model.backbone.name != "slimmable_resnet":
        raise CheckpointError(f"original MSAD checkpoints hold a slimmable ResNet; the recipe's backbone is "
                              f"{recipe.model.backbone.name!r}")
    if tuple(float(m) for m in recipe.model.pixel_mean) != DETECTRON2_PIXEL_MEAN_RGB:
        raise CheckpointError(f"the original models expect pixel mean {list(DETECTRON2_PIXEL_MEAN_RGB)} (RGB); "
                              f"the recipe's model.pixel_mean is {list(recipe.model.pixel_mean)}")
    if recipe.teacher.k != 2:
        raise CheckpointError(
            f"the original models pair HR and LR levels for k = 2; the recipe has k = {recipe.teacher.k}"
        )

    kind = get_role(found)
    model = kind.build_model(recipe, num_classes=rows)
    backbone: Any = kind.detector(model).backbone
    head_prefix = f"{kind.detector_prefix}head."
    try:
        converted = convert_detectron2_state(
            state, role=found, width=backbone.width, widths=backbone.widths, depth=backbone.depth,
            pixel_std=recipe.model.pixel_std, tower_bias=f"{head_prefix}cls_tower.0.bias" in model.state_dict(),
        )
    except CheckpointError as err:
        raise CheckpointError(f"{source}: {err}") from None
    load_state(model, converted, source=source)
    metadata = detector_metadata(recipe, role=found, label_space=label_space)
    return save_weights(output, model.state_dict(), metadata)
