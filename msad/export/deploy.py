"""What an exported detector is: a graph from raw RGB pixels to raw head maps, and the facts to use it.

:class:`DeployModel` wraps a baseline, a teacher (its fused branch) or a student and puts the preprocessing
inside the graph: normalisation and, for a student given an HR image, the nearest ×1/k copy. Its outputs are
the raw head maps, three per head level (``cls_logits``, ``box_regression``, ``centerness``). Everything a
runtime needs besides the graph travels as :class:`DeploySpec` (JSON in the file's metadata).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

import msad
from msad.errors import MsadError
from msad.levels import HEAD_LEVELS, level_stride
from msad.models.detector import downscale_nearest
from msad.structures import LevelOutputs

if TYPE_CHECKING:
    from msad.api.weights import Checkpoint

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
        role: ``baseline``, ``teacher`` (fused branch) or ``student``.
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
    coarsest_stride: int = 128
    max_side: int = 4096
    input_layout: str = "float32 RGB [B, 3, H, W], 0-255, H and W multiples of size_divisibility"
    msad_version: str = field(default=msad.__version__)

    def to_json(self) -> str:
        """The spec as a JSON string."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DeploySpec:
        """A spec from :meth:`to_json`'s string."""
        try:
            data = json.loads(text)
            data["levels"] = tuple(data["levels"])
            data["pixel_mean"], data["pixel_std"] = tuple(data["pixel_mean"]), tuple(data["pixel_std"])
            data["resize"] = None if data["resize"] is None else tuple(data["resize"])
            return cls(**data)
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ExportError(f"invalid msad metadata in an exported file ({err})") from None

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


def deploy_spec(ckpt: Checkpoint, *, input_frame: str = "lr", batchnorm_folded: bool = True) -> DeploySpec:
    """The spec of ``ckpt``'s deployed graph; ``input_frame`` matters only for a student (``hr`` or ``lr``)."""
    if input_frame not in INPUT_FRAMES:
        raise ExportError(f"input frame must be one of {INPUT_FRAMES}, got {input_frame!r}")
    recipe, role = ckpt.recipe, ckpt.role
    k, data = recipe.teacher.k, recipe.data
    frame = input_frame if role == "student" else "hr"
    if role == "teacher":
        divisibility = recipe.teacher.size_divisibility
    elif role == "student" and frame == "hr":
        divisibility = data.size_divisibility * k
    else:
        divisibility = data.size_divisibility
    return DeploySpec(
        role=role,
        input_frame=frame,
        input_factor=k if role == "student" and frame == "hr" else 1,
        box_scale=1.0 / k if role == "student" and frame == "lr" else 1.0,
        size_divisibility=divisibility,
        levels=HEAD_LEVELS,
        strides={lvl: level_stride(lvl) for lvl in HEAD_LEVELS},
        classes=[name for _, name in ckpt.label_space],
        category_ids=[cid for cid, _ in ckpt.label_space],
        pixel_mean=tuple(recipe.model.pixel_mean),
        pixel_std=tuple(recipe.model.pixel_std),
        postprocess=recipe.model.postprocess.model_dump(),
        resize=None if role == "student" and frame == "lr" else (data.test_size, data.max_size, data.scale),
        width=ckpt.width,
        batchnorm_folded=batchnorm_folded,
        coarsest_stride=max(level_stride(lvl) for lvl in HEAD_LEVELS) // (k if role == "student" and frame == "lr" else 1),
    )


class DeployModel(nn.Module):
    """Raw RGB pixels → raw head maps of a baseline, a teacher's fused branch or a student.

    Args:
        model: the detector (``FCOS``) or the aligned teacher, in eval mode.
        spec: the contract (normalisation, input factor, head levels).
    """

    def __init__(self, model: nn.Module, spec: DeploySpec) -> None:
        super().__init__()
        self.model = model
        self.role = spec.role
        self.levels = spec.levels
        self.input_factor = spec.input_factor
        self.register_buffer("mean", torch.tensor(spec.pixel_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(spec.pixel_std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """``(p3_cls_logits, p3_box_regression, p3_centerness, p4_…)`` for ``images`` (float 0–255 RGB)."""
        x = (images - self.mean) * self.inv_std
        if self.input_factor != 1:
            x = downscale_nearest(x, self.input_factor)
        if self.role == "teacher":
            outputs = self.model(x, branches=("fused",)).branch("fused")
        else:
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
