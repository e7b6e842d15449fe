"""The closed sets of values CLI options take, as ``typing.Literal`` types: Typer checks them and ``--help`` lists them.

Kept free of torch so that ``msad --help`` stays fast; ``tests/cli/test_help.py`` checks each against the
constant of the layer that owns it (``msad.engine.inference.PRECISIONS``, ``msad.api.prediction.INPUT_SCALES`` …).
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

__all__ = [
    "Device", "Precision", "Runtime", "InputScale", "Branch", "EvalBackend", "ExportInput", "ConvertRole", "DeviceOpt", "PrecisionOpt",
]

#: ``--device`` of inference commands (:func:`msad.engine.distributed.resolve_device`).
Device = Literal["auto", "cpu", "cuda"]
#: ``--precision`` of inference (:data:`msad.engine.inference.PRECISIONS`).
Precision = Literal["fp32", "bf16"]
#: ``msad predict --runtime`` (:data:`msad.api.prediction.RUNTIME_CHOICES`).
Runtime = Literal["auto", "torch", "onnx", "torch.export"]
#: ``msad predict --input-scale`` (:data:`msad.api.prediction.INPUT_SCALES`).
InputScale = Literal["hr", "lr"]
#: ``msad eval --branch``: a teacher branch (:data:`msad.api.evaluation.TEACHER_BRANCHES`) or ``all``.
Branch = Literal["fused", "hr", "lr", "all"]
#: ``msad eval --eval-backend`` (:data:`msad.evaluation.EVAL_BACKENDS`).
EvalBackend = Literal["pycocotools", "faster_coco_eval"]
#: ``msad export --branch``: a teacher branch (:attr:`msad.roles.Teacher.branches`).
ExportBranch = Literal["fused", "hr", "lr"]
#: ``msad export --input`` (:data:`msad.export.deploy.INPUT_FRAMES`).
ExportInput = Literal["lr", "hr"]
#: ``msad convert detectron2 --role``: what an original MSAD checkpoint holds.
ConvertRole = Literal["teacher", "student"]

DeviceOpt = Annotated[Device, typer.Option(help="Where to run: auto (CUDA when available), cpu or cuda.")]
PrecisionOpt = Annotated[Precision, typer.Option(help="fp32, or bf16 (autocast, batch norm folded).")]
