"""Capacity (``msad flops``): the paper's relative backbone cost and the honest whole-detector cost.

The paper's capacity column is backbone multiply-adds relative to slimmable ResNet-50 width 1.0 at 800×1333,
FPN and head excluded, the teacher paying for an HR and an LR pass and the student for an LR pass. The
whole-detector figures add the FPN and head (the student's head runs on HR-sized maps) and the C-FF fusion.
Models are built and run on the ``meta`` device and counted from shapes by :func:`msad.macs.count_macs`
(fvcore's conventions, one multiply-add per "flop"): nothing is computed, so the whole table takes a moment.
Operators that are not counted are listed.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from msad.build import model_width
from msad.checkpoint import without_init_files
from msad.config import Recipe, recipe_from_dict
from msad.errors import UsageError
from msad.macs import count_macs, on_meta
from msad.outputs import check_outputs
from msad.plugins import declared_options
from msad.roles import ROLES
from msad.serialization import atomic_write_text

__all__ = ["CapacityRow", "CapacityReport", "capacity", "paper_recipe", "is_slimmable", "PAPER_WIDTHS"]

PAPER_WIDTHS = (1.0, 0.75, 0.5, 0.25)


@dataclass
class CapacityRow:
    """Cost of one width.

    Attributes:
        width: backbone width (``None`` for a backbone without a width option, measured as built).
        teacher_capacity, student_capacity: backbone multiply-adds relative to the width-1.0 HR backbone.
        backbone_gmacs_hr, backbone_gmacs_lr: backbone GMACs on the HR image and on its ×1/k copy.
        baseline_gmacs: whole HR detector (backbone + FPN + head) in GMACs.
        teacher_gmacs: whole teacher at inference (HR + LR passes, C-FF, head on the fused pyramid).
        student_gmacs: whole student (LR backbone + FPN, head on HR-sized maps).
        baseline_params_m, teacher_params_m, student_params_m: parameters in millions.
    """

    width: float | None
    teacher_capacity: float
    student_capacity: float
    backbone_gmacs_hr: float
    backbone_gmacs_lr: float
    baseline_gmacs: float
    teacher_gmacs: float
    student_gmacs: float
    baseline_params_m: float
    teacher_params_m: float
    student_params_m: float


@dataclass
class CapacityReport:
    """The capacity table and how it was measured.

    Attributes:
        image_size: the HR image (h, w) of the paper's capacity column (backbone figures, unpadded).
        k: the LR factor.
        num_classes: classes of the head.
        reference_gmacs: the HR backbone the capacities are relative to (width 1.0, or the backbone as built).
        rows: one per width.
        skipped_ops: operators that cost arithmetic but are not counted, with how often they ran.
        padded_size: the HR image padded to the teacher's size multiple, which the whole-detector figures use.
        backbone: the recipe's backbone plugin.
    """

    image_size: tuple[int, int]
    k: int
    num_classes: int
    reference_gmacs: float
    rows: list[CapacityRow]
    skipped_ops: dict[str, int] = field(default_factory=dict)
    padded_size: tuple[int, int] | None = None
    backbone: str = "slimmable_resnet"

    def to_json(self) -> str:
        """The report as JSON (units: GMACs, millions of parameters, capacity ratios)."""
        return json.dumps(asdict(self), indent=1)


def _params_m(module: nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def _padded(size: int, multiple: int) -> int:
    return math.ceil(size / multiple) * multiple


def _image(h: int, w: int) -> Tensor:
    return torch.empty(1, 3, h, w, device="meta")


def is_slimmable(recipe: Recipe) -> bool:
    """Whether the recipe's backbone declares a width option (:func:`msad.plugins.declared_options`)."""
    return declared_options("msad.backbones", recipe.model.backbone.name).width is not None


def capacity(
    recipe: Recipe, *, widths: Sequence[float] | None = None, image_size: tuple[int, int] = (800, 1333),
    num_classes: int = 80, json_out: str | Path | None = None,
) -> CapacityReport:
    """The capacity table of the recipe's architecture at ``image_size`` (h, w), one row per width.

    ``widths`` default to the recipe's own width; a backbone without a ``width`` option gets one row, measured
    as built, and capacities relative to itself at HR.
    The paper's capacity column (backbone convolutions; batch norm folded) is measured on the HR image as given
    and on its ×1/k copy, so that the width-1.0 reference is S-R50 at exactly ``image_size`` (87.3 GMACs at
    800×1333). The ratios leave out the 7×7 stem (3 % of the reference), whose cost grows with w rather than w²:
    so measured, they are the paper's w²·1.25 and w²·0.25 (with the stem, w 0.75 and 0.5 read 0.71 and 0.32);
    the GMACs columns include the stem.
    The whole-detector figures pad the HR image to ``data.size_divisibility`` (baseline, student) or to the
    teacher's multiple (HR and LR pyramids must align).

    Raises:
        UsageError: ``widths`` given for a backbone without a width option.
    """
    check_outputs([("--json", json_out)], inputs=recipe.input_files())
    slimmable = is_slimmable(recipe)
    if widths is not None and not slimmable:
        raise UsageError(
            f"backbone {recipe.model.backbone.name!r} has no width option: flops measures it as built (drop --widths)"
        )
    if widths is None:
        widths = (model_width(recipe) or 1.0,) if slimmable else (None,)
    k, mult = recipe.teacher.k, recipe.teacher.size_divisibility
    h0, w0 = image_size
    h, w = _padded(h0, mult), _padded(w0, mult)
    d = recipe.data.size_divisibility * k
    images = {
        "bb_hr": _image(h0, w0), "bb_lr": _image(math.ceil(h0 / k), math.ceil(w0 / k)),
        "baseline": _image(_padded(h0, d), _padded(w0, d)), "student": _image(_padded(h0, d) // k, _padded(w0, d) // k),
        "teacher": _image(h, w),
    }
    skipped: Counter[str] = Counter()
    measured = [(wd, *_measure(_with_width(recipe, wd), images, num_classes, skipped)) for wd in widths]
    full = next((c for wd, c, *_ in measured if wd in (1.0, None)), None)
    if full is None:
        full = _backbone_costs(_with_width(recipe, 1.0), images, num_classes)
    rows = [
        CapacityRow(
            width=wd, teacher_capacity=(c["bb_hr_body"] + c["bb_lr_body"]) / full["bb_hr_body"],
            student_capacity=c["bb_lr_body"] / full["bb_hr_body"],
            backbone_gmacs_hr=c["bb_hr"] / 1e9, backbone_gmacs_lr=c["bb_lr"] / 1e9, baseline_gmacs=c["baseline"] / 1e9,
            teacher_gmacs=c["teacher"] / 1e9, student_gmacs=c["student"] / 1e9,
            baseline_params_m=pb, teacher_params_m=pt, student_params_m=ps,
        )
        for wd, c, pb, pt, ps in measured
    ]
    report = CapacityReport(
        (h0, w0), k, num_classes, full["bb_hr"] / 1e9, rows, dict(sorted(skipped.items())), padded_size=(h, w),
        backbone=recipe.model.backbone.name,
    )
    if json_out is not None:
        atomic_write_text(json_out, report.to_json())
    return report


def _build(recipe: Recipe, num_classes: int) -> dict[str, nn.Module]:
    """The model of every role of ``recipe``, by role name, on the ``meta`` device, in eval mode.

    The student is built as when its weights are loaded (not copied from the teacher): the same modules.
    """
    with on_meta():
        return {name: role.build_model(recipe, num_classes=num_classes).eval() for name, role in ROLES.items()}


def _backbone_costs(recipe: Recipe, images: dict[str, Tensor], num_classes: int) -> dict[str, float]:
    """Backbone multiply-adds on HR and LR, with and without the stem (batch norm folded)."""
    with on_meta():
        backbone = ROLES["baseline"].build_model(recipe, num_classes=num_classes).eval().backbone
    return _backbone_counts(backbone, images)


def _backbone_counts(backbone: nn.Module, images: dict[str, Tensor]) -> dict[str, float]:
    costs = {}
    stem = ("stem",) if hasattr(backbone, "stem") else ()
    for name in ("bb_hr", "bb_lr"):
        count = count_macs(backbone, images[name], fold_bn=True, exclude=stem)
        costs[name], costs[f"{name}_body"] = count.total + count.excluded, count.total
    return costs


def _measure(recipe: Recipe, images: dict[str, Tensor], num_classes: int, skipped: Counter[str]):
    """``(costs, baseline params M, teacher params M, student params M)`` of one width."""
    models = _build(recipe, num_classes)
    costs = _backbone_counts(ROLES["teacher"].detector(models["teacher"]).backbone, images)
    for name, role in ROLES.items():  # each on its own input (``images[name]``), at inference (the teacher: fused)
        count = count_macs(role.inference_network(models[name]), images[name], module=models[name])
        costs[name] = count.total
        skipped.update(count.skipped)
    return costs, _params_m(models["baseline"]), _params_m(models["teacher"]), _params_m(models["student"])


def paper_recipe() -> Recipe:
    """The paper's architecture (slimmable ResNet-50 FCOS, 256-channel FPN and head) with placeholder data."""
    coco = "datasets/coco"
    return recipe_from_dict({
        "data": {
            "train_images": f"{coco}/train2017", "train_annotations": f"{coco}/annotations/instances_train2017.json",
            "val_images": f"{coco}/val2017", "val_annotations": f"{coco}/annotations/instances_val2017.json",
        },
        "solver": {"batch_size": 16, "lr": 0.01, "iters": 90000, "steps": [60000, 80000]},
    })


def _with_width(recipe: Recipe, width: float | None) -> Recipe:
    """A copy of ``recipe`` whose backbone runs at ``width`` (as built for ``None``), without initialisation files."""
    copy = without_init_files(recipe)
    backbone = copy.model.backbone
    if width is not None:
        backbone.options[declared_options("msad.backbones", backbone.name).width] = width  # type: ignore[index]
    return copy
