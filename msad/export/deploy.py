"""What an exported detector is: a graph from raw RGB pixels to raw head maps, and the facts to use it.

:class:`DeployModel` wraps a baseline, a teacher (one branch) or a student and puts the preprocessing
inside the graph: normalisation and, for a student given an HR image, the nearest ×1/k copy. Its outputs are
the raw head maps, three per head level (``cls_logits``, ``box_regression``, ``centerness``). Everything a
runtime needs besides the graph travels as :class:`DeploySpec` (JSON in the file's metadata).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from torch import Tensor, nn

import msad
from msad.errors import MsadError
from msad.levels import HEAD_LEVELS, level_stride
from msad.models.detector import downscale_nearest
from msad.ops.postprocess import FCOSPostProcess
from msad.roles import ROLES, get_role
from msad.structures import LevelOutputs, normalize_pixels_

if TYPE_CHECKING:
    from msad.checkpoint import Checkpoint

__all__ = ["ExportError", "INPUT_FRAMES", "OUTPUT_FIELDS", "DeploySpec", "DeployModel", "deploy_spec", "output_names", "split_outputs"]

class ExportError(MsadError, ValueError):
    """An export, or a run of an exported file, cannot be done as asked (one line for the user)."""


#: What the image given to a student's exported graph is: its HR image (downscaled inside) or its LR input.
INPUT_FRAMES = ("hr", "lr")
#: The head maps of one level, in the order the graph returns them.
OUTPUT_FIELDS = ("cls_logits", "box_regression", "centerness")


@dataclass(frozen=True)
class DeploySpec:
    """The contract of an exported graph (stored as JSON under the metadata key ``msad``).

    Attributes:
        role: ``baseline``, ``teacher`` or ``student``.
        input_frame: ``hr`` or ``lr``: the frame of the image the graph takes.
        input_factor: the graph downsamples its input by this (nearest) before the network (k or 1).
        box_scale: decoded boxes (in the frame of ``strides``) times this are in the input's frame.
        size_divisibility: input height and width must be multiples of this.
        levels: head levels, in the order of the outputs.
        strides: stride of each head level in the frame of the decoded boxes.
        classes: class names in label order; ``category_ids`` their COCO ids.
        pixel_mean, pixel_std: the normalisation inside the graph (on 0–255 RGB); padding uses ``pixel_mean``.
        postprocess: :class:`~msad.ops.postprocess.FCOSPostProcess` options.
        resize: ``(test_size, max_size, scale)`` an image is resized with before the graph, or ``None`` (as given).
        width: backbone width.
        batchnorm_folded: whether the graph's BNs were folded into the convs.
        branch: the branch of a teacher the graph runs (``hr``, ``lr`` or ``fused``; ``None`` for a role with one
            output, and in a teacher's file exported before msad recorded it: ``fused``).
        coarsest_stride: stride of the coarsest map in the input's frame; the graph needs that map to have more
            than one cell (an input side longer than this).
        max_side: the largest input height or width the graph was declared for.
        msad_version: the exporting msad.
    """

    role: str
    input_frame: str
    input_factor: int
    box_scale: float
    size_divisibility: int
    levels: tuple[str, ...]
    strides: dict[str, int]
    classes: list[str]
    category_ids: list[int]
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    postprocess: dict[str, float | int]
    resize: tuple[int, int, float] | None
    width: float | None
    batchnorm_folded: bool = True
    branch: str | None = None
    coarsest_stride: int = 128
    max_side: int = 4096
    input_layout: str = "float32 RGB [B, 3, H, W], 0-255, H and W multiples of size_divisibility"
    msad_version: str = field(default=msad.__version__)

    def to_json(self) -> str:
        """The spec as a JSON string."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str, *, source: object = "an exported file") -> DeploySpec:
        """A spec from :meth:`to_json`'s string, its values checked (``source`` names the file in errors).

        Raises:
            ExportError: not JSON, a missing field, or a value no graph of msad's could have (one line).
        """
        try:
            data = json.loads(text)
            data["levels"] = tuple(data["levels"])
            data["pixel_mean"], data["pixel_std"] = tuple(data["pixel_mean"]), tuple(data["pixel_std"])
            data["resize"] = None if data["resize"] is None else tuple(data["resize"])
            spec = cls(**data)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ExportError(f"{source}: invalid msad metadata ({err}); re-export it with `msad export`") from None
        problem = _spec_problem(spec)
        if problem is not None:
            raise ExportError(f"{source}: invalid msad metadata: {problem}; re-export it with `msad export`")
        return spec

    def check_graph(self, source: object, *, num_outputs: int, num_classes: int | None) -> None:
        """Refuse metadata that does not fit the graph it came with: ``num_outputs`` flat outputs, and class-logit maps
        of ``num_classes`` channels (``None``: not known).

        Raises:
            ExportError: one line naming ``source``.
        """
        expected = len(OUTPUT_FIELDS) * len(self.levels)
        if num_outputs != expected:
            raise ExportError(
                f"{source}: its msad metadata names {len(self.levels)} head levels ({expected} outputs) but the graph "
                f"has {num_outputs} outputs; re-export it with `msad export`"
            )
        if num_classes is not None and num_classes != len(self.classes):
            raise ExportError(
                f"{source}: its msad metadata names {len(self.classes)} classes but the graph predicts {num_classes}; "
                "re-export it with `msad export`"
            )

    @property
    def label_space(self) -> list[tuple[int, str]]:
        """``[(coco_id, name), …]`` in label order."""
        return list(zip(self.category_ids, self.classes, strict=True))

    def check_size(self, height: int, width: int) -> None:
        """Raise a one-line :class:`ExportError` when the graph cannot take an ``height × width`` input."""
        d = self.size_divisibility
        if max(height, width) > self.max_side:
            raise ExportError(f"input size {height}×{width} is larger than this exported graph takes ({self.max_side} a side)")
        s = self.coarsest_stride
        if -(-height // s) * -(-width // s) < 2:
            raise ExportError(
                f"input size {height}×{width} is too small for this exported {self.role}: its coarsest map (stride {s}) "
                f"needs two cells; make one side longer than {s} pixels"
            )
        if height % d or width % d or height <= 0 or width <= 0:
            raise ExportError(
                f"input size {height}×{width} is not a multiple of {d}, which this exported {self.role} needs; "
                f"pad it (bottom/right, with the pixel mean) to {-(-height // d) * d}×{-(-width // d) * d}"
            )


_POSTPROCESS_OPTIONS = frozenset(inspect.signature(FCOSPostProcess).parameters)


def _spec_problem(spec: DeploySpec) -> str | None:
    """The first value of ``spec`` no exported graph of msad's could have, as a phrase; ``None`` if all are sound."""
    def positive_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    def positive(value: object) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < float("inf")

    if spec.role not in ROLES:
        return f"role must be one of {', '.join(ROLES)}, got {spec.role!r}"
    role = get_role(spec.role)
    checks = [
        (spec.input_frame in INPUT_FRAMES, f"input_frame must be one of {INPUT_FRAMES}, got {spec.input_frame!r}"),
        (len(role.frames) > 1 or (spec.input_frame, spec.input_factor, spec.box_scale) == ("hr", 1, 1.0),
         f"a {spec.role}'s graph takes its own image (input_frame hr, input_factor 1, box_scale 1)"),
        (spec.branch is None or spec.branch in role.branches,
         f"branch must be one of {', '.join(role.branches)}, got {spec.branch!r}" if role.branches
         else f"a {spec.role} has no branches, got branch {spec.branch!r}"),
        (positive_int(spec.input_factor), f"input_factor must be a positive integer, got {spec.input_factor!r}"),
        (positive(spec.box_scale), f"box_scale must be positive, got {spec.box_scale!r}"),
        (positive_int(spec.size_divisibility), f"size_divisibility must be a positive integer, got {spec.size_divisibility!r}"),
        (positive_int(spec.coarsest_stride), f"coarsest_stride must be a positive integer, got {spec.coarsest_stride!r}"),
        (positive_int(spec.max_side), f"max_side must be a positive integer, got {spec.max_side!r}"),
        (bool(spec.levels) and set(spec.levels) <= set(HEAD_LEVELS), f"levels must be head levels {HEAD_LEVELS}, got {spec.levels!r}"),
        (isinstance(spec.strides, dict) and all(positive_int(spec.strides.get(lvl)) for lvl in spec.levels),
         f"strides must give a positive integer stride for every level, got {spec.strides!r}"),
        (isinstance(spec.classes, list) and isinstance(spec.category_ids, list) and len(spec.classes) == len(spec.category_ids) > 0,
         "classes and category_ids must be two lists of the same, non-zero length"),
        (len(spec.pixel_mean) == 3 and len(spec.pixel_std) == 3 and all(positive(v) for v in spec.pixel_std),
         f"pixel_mean and pixel_std must have 3 values, the std positive, got {spec.pixel_mean!r}, {spec.pixel_std!r}"),
        (spec.resize is None or (len(spec.resize) == 3 and positive_int(spec.resize[0]) and positive_int(spec.resize[1]) and positive(spec.resize[2])),
         f"resize must be null or [test size, max size, scale], all positive, got {spec.resize!r}"),
        (isinstance(spec.postprocess, dict) and set(spec.postprocess) <= _POSTPROCESS_OPTIONS
         and all(positive(v) or v in (0, False) for v in spec.postprocess.values()),
         f"postprocess must hold numbers for {', '.join(sorted(_POSTPROCESS_OPTIONS))}, got {spec.postprocess!r}"),
    ]
    return next((problem for ok, problem in checks if not ok), None)


def deploy_spec(ckpt: Checkpoint, *, input_frame: str | None = None, branch: str | None = None,
                batchnorm_folded: bool = True) -> DeploySpec:
    """The spec of ``ckpt``'s deployed graph: padded, resized and scaled as :meth:`msad.roles.Role.deploy_frame`
    says for the role (as evaluation pads it).

    Args:
        ckpt: the weights.
        input_frame: ``hr`` or ``lr``, for a role that takes both (a student); default its LR input when it takes
            one, else ``hr``.
        branch: the branch of a role that has several (a teacher); default the recipe's ``teacher.eval_branch``.
    """
    role, recipe = get_role(ckpt.role), ckpt.recipe
    frame = input_frame or ("lr" if "lr" in role.frames else "hr")
    if frame not in INPUT_FRAMES:
        raise ExportError(f"input frame must be one of {INPUT_FRAMES}, got {input_frame!r}")
    try:
        deploy = role.deploy_frame(recipe, frame)
        chosen = role.branch(recipe, branch)
    except ValueError as err:
        raise ExportError(f"{ckpt.path}: {err}") from None
    return DeploySpec(
        role=role.name,
        input_frame=deploy.input_frame,
        input_factor=deploy.input_factor,
        box_scale=deploy.box_scale,
        size_divisibility=deploy.size_divisibility,
        levels=HEAD_LEVELS,
        strides={lvl: level_stride(lvl) for lvl in HEAD_LEVELS},
        classes=[name for _, name in ckpt.label_space],
        category_ids=[cid for cid, _ in ckpt.label_space],
        pixel_mean=tuple(recipe.model.pixel_mean),
        pixel_std=tuple(recipe.model.pixel_std),
        postprocess=recipe.model.postprocess.model_dump(),
        resize=deploy.resize,
        width=ckpt.width,
        batchnorm_folded=batchnorm_folded,
        branch=chosen,
        coarsest_stride=deploy.coarsest_stride,
    )


class DeployModel(nn.Module):
    """Raw RGB pixels → raw head maps of a baseline, a teacher's branch or a student.

    Args:
        model: the detector (``FCOS``) or the aligned teacher, in eval mode.
        spec: the contract (normalisation, input factor, head levels, the teacher's branch).
    """

    def __init__(self, model: nn.Module, spec: DeploySpec) -> None:
        super().__init__()
        self.model = get_role(spec.role).inference_network(model, spec.branch)
        self.levels = spec.levels
        self.input_factor = spec.input_factor
        self.pixel_mean, self.pixel_std = spec.pixel_mean, spec.pixel_std

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """``(p3_cls_logits, p3_box_regression, p3_centerness, p4_…)`` for ``images`` (float 0–255 RGB)."""
        x = normalize_pixels_(images.clone(), self.pixel_mean, self.pixel_std)  # as msad eval's collator does
        if self.input_factor != 1:
            x = downscale_nearest(x, self.input_factor)
        outputs = self.model(x)
        return tuple(getattr(outputs[lvl], name) for lvl in self.levels for name in OUTPUT_FIELDS)


def output_names(levels: tuple[str, ...]) -> list[str]:
    """Names of the graph outputs: ``p3_cls_logits``, ``p3_box_regression``, ``p3_centerness``, ``p4_…``."""
    return [f"{lvl}_{name}" for lvl in levels for name in OUTPUT_FIELDS]


def split_outputs(flat: tuple[Tensor, ...] | list[Tensor], levels: tuple[str, ...]) -> dict[str, LevelOutputs]:
    """The graph's flat outputs regrouped as :class:`LevelOutputs` per head level."""
    if len(flat) != len(OUTPUT_FIELDS) * len(levels):
        raise ValueError(f"expected {len(OUTPUT_FIELDS) * len(levels)} outputs for levels {levels}, got {len(flat)}")
    n = len(OUTPUT_FIELDS)
    return {lvl: LevelOutputs(*flat[i * n:(i + 1) * n]) for i, lvl in enumerate(levels)}
