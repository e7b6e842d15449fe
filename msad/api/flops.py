"""Capacity (``msad flops``): the paper's relative backbone cost and the honest whole-detector cost.

The paper's capacity column is backbone multiply-adds relative to slimmable ResNet-50 width 1.0 at 800×1333,
FPN and head excluded, the teacher paying for an HR and an LR pass and the student for an LR pass. The
whole-detector figures add the FPN and head (the student's head runs on HR-sized maps) and the C-FF fusion.
Counts come from fvcore (one multiply-add per "flop"); operators fvcore does not count are listed.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from msad.build import build_model
from msad.config import Recipe, recipe_from_dict
from msad.serialization import atomic_write_text

__all__ = ["CapacityRow", "CapacityReport", "count_macs", "capacity", "paper_recipe", "PAPER_WIDTHS"]

PAPER_WIDTHS = (1.0, 0.75, 0.5, 0.25)


@dataclass
class CapacityRow:
    """Cost of one width.

    Attributes:
        width: backbone width.
        teacher_capacity, student_capacity: backbone multiply-adds relative to the width-1.0 HR backbone.
        backbone_gmacs_hr, backbone_gmacs_lr: backbone GMACs on the HR image and on its ×1/k copy.
        baseline_gmacs: whole HR detector (backbone + FPN + head) in GMACs.
        teacher_gmacs: whole teacher at inference (HR + LR passes, C-FF, head on the fused pyramid).
        student_gmacs: whole student (LR backbone + FPN, head on HR-sized maps).
        baseline_params_m, teacher_params_m, student_params_m: parameters in millions.
    """

    width: float
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
        padded_size: the HR image padded to the teacher's size multiple, which the whole-detector figures use.
    """

    image_size: tuple[int, int]
    k: int
    num_classes: int
    reference_gmacs: float
    rows: list[CapacityRow]
    skipped_ops: dict[str, int] = field(default_factory=dict)
    padded_size: tuple[int, int] | None = None

    def to_json(self) -> str:
        """The report as JSON (units: GMACs, millions of parameters, capacity ratios)."""
        return json.dumps(asdict(self), indent=1)


class _Flat(nn.Module):
    """Wraps a model so that tracing sees a tuple of tensors (fvcore cannot trace dataclass outputs)."""

    def __init__(self, fn, owner: nn.Module | None = None) -> None:
        super().__init__()
        self.fn = fn
        if owner is not None and owner is not fn:  # register the module a plain callable runs, so that tracing
            self.owner = owner  # sees its parameters as parameters (not as grad-requiring constants, an error)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(_tensors(self.fn(x)))


def _tensors(value) -> list[Tensor]:
    """Every tensor inside nested dicts, sequences and dataclasses, in a stable order."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for key in sorted(value) for t in _tensors(value[key])]
    if isinstance(value, list | tuple):
        return [t for item in value for t in _tensors(item)]
    if hasattr(value, "__dataclass_fields__"):
        return [t for name in value.__dataclass_fields__ for t in _tensors(getattr(value, name))]
    return []


def count_macs(
    fn, image: Tensor, *, owner: nn.Module | None = None, fold_bn: bool = False, exclude: Sequence[str] = ()
) -> tuple[float, dict[str, int]]:
    """``(multiply-adds, {skipped operator: count})`` of ``fn(image)`` measured by fvcore.

    ``owner`` is the module whose parameters ``fn`` uses when ``fn`` is not itself a module (e.g. a lambda).
    ``fold_bn`` leaves batch norm out (it folds into the convolutions at inference), as the paper's capacity does.
    ``exclude`` names submodules of ``fn`` (a module) whose cost is left out, e.g. ``("stem",)``.
    """
    from fvcore.nn import FlopCountAnalysis

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(_Flat(fn, owner), image)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        if fold_bn:  # a zero count (fvcore's ``None`` handle does not stop a default handle from counting)
            analysis.set_op_handle("aten::batch_norm", lambda inputs, outputs: 0)
        total = float(analysis.total())
        if exclude:
            by_module = analysis.by_module()
            total -= sum(float(by_module.get(f"fn.{name}", 0)) for name in exclude)
        skipped = dict(analysis.unsupported_ops())
    return total, skipped


def _params_m(module: nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def _padded(size: int, multiple: int) -> int:
    return math.ceil(size / multiple) * multiple


def capacity(
    recipe: Recipe, *, widths: Sequence[float] = PAPER_WIDTHS, image_size: tuple[int, int] = (800, 1333),
    num_classes: int = 80, json_out: str | Path | None = None,
) -> CapacityReport:
    """The capacity table for ``widths`` of the recipe's architecture at ``image_size`` (h, w).

    The paper's capacity column (backbone convolutions; batch norm folded) is measured on the HR image as given
    and on its ×1/k copy, so that the width-1.0 reference is S-R50 at exactly ``image_size`` (87.3 GMACs at
    800×1333). The ratios leave out the 7×7 stem (3 % of the reference), whose cost grows with w rather than w²:
    so measured, they are the paper's w²·1.25 and w²·0.25 (with the stem, w 0.75 and 0.5 read 0.71 and 0.32);
    the GMACs columns include the stem.
    The whole-detector figures pad the HR image to ``data.size_divisibility`` (baseline, student) or to the
    teacher's multiple (HR and LR pyramids must align).
    """
    k = recipe.teacher.k
    mult = recipe.teacher.size_divisibility
    h0, w0 = image_size
    h, w = _padded(h0, mult), _padded(w0, mult)
    hr, lr = torch.zeros(1, 3, h, w), torch.zeros(1, 3, h // k, w // k)
    d = recipe.data.size_divisibility * k
    hr_plain = torch.zeros(1, 3, _padded(h0, d), _padded(w0, d))
    lr_plain = torch.zeros(1, 3, _padded(h0, d) // k, _padded(w0, d) // k)
    hr_bb, lr_bb = torch.zeros(1, 3, h0, w0), torch.zeros(1, 3, math.ceil(h0 / k), math.ceil(w0 / k))
    skipped: dict[str, int] = {}
    measured = []
    for width in widths:
        r = _with_width(recipe, width)
        teacher = build_model(r, role="teacher", num_classes=num_classes).eval()
        student = build_model(r, role="student", num_classes=num_classes, teacher=teacher).eval()
        baseline = build_model(r, role="baseline", num_classes=num_classes).eval()
        costs = {}
        for name, fn, image, owner in (
            ("bb_hr", teacher.detector.backbone, hr_bb, None), ("bb_lr", teacher.detector.backbone, lr_bb, None),
            ("baseline", baseline, hr_plain, None), ("student", student, lr_plain, None),
            ("teacher", lambda x, t=teacher: t(x, branches=("fused",)).fused, hr, teacher),
        ):
            costs[name], ops = count_macs(fn, image, owner=owner, fold_bn=name.startswith("bb_"))
            if name.startswith("bb_"):
                costs[f"{name}_body"] = count_macs(fn, image, fold_bn=True, exclude=("stem",))[0]
            for op, n in ops.items():
                skipped[op] = skipped.get(op, 0) + n
        measured.append((width, costs, _params_m(baseline), _params_m(teacher), _params_m(student)))
    reference = next((c["bb_hr"] for wd, c, *_ in measured if wd == 1.0), None)
    body_reference = next((c["bb_hr_body"] for wd, c, *_ in measured if wd == 1.0), None)
    if reference is None:
        reference_model = build_model(_with_width(recipe, 1.0), role="baseline", num_classes=num_classes).eval()
        reference = count_macs(reference_model.backbone, hr_bb, fold_bn=True)[0]
        body_reference = count_macs(reference_model.backbone, hr_bb, fold_bn=True, exclude=("stem",))[0]
    rows = [
        CapacityRow(
            width=wd, teacher_capacity=(c["bb_hr_body"] + c["bb_lr_body"]) / body_reference,
            student_capacity=c["bb_lr_body"] / body_reference,
            backbone_gmacs_hr=c["bb_hr"] / 1e9, backbone_gmacs_lr=c["bb_lr"] / 1e9, baseline_gmacs=c["baseline"] / 1e9,
            teacher_gmacs=c["teacher"] / 1e9, student_gmacs=c["student"] / 1e9,
            baseline_params_m=pb, teacher_params_m=pt, student_params_m=ps,
        )
        for wd, c, pb, pt, ps in measured
    ]
    report = CapacityReport((h0, w0), k, num_classes, reference / 1e9, rows, skipped, padded_size=(h, w))
    if json_out is not None:
        atomic_write_text(json_out, report.to_json())
    return report


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


def _with_width(recipe: Recipe, width: float) -> Recipe:
    """A copy of ``recipe`` whose backbone runs at ``width``."""
    backbone = recipe.model.backbone
    options = {**backbone.options, "width": width}
    model = recipe.model.model_copy(update={"backbone": backbone.model_copy(update={"options": options})})
    return recipe.model_copy(update={"model": model})
