"""Inference precision: fp32 eager as trained, or bf16 autocast on a model with batch norm folded.

``bf16`` autocasts convolutions and matrix products to bfloat16 on the CPU (fast where the CPU has AVX-512
BF16 / AMX) and on CUDA; the batch norms are folded into the convolutions first (:func:`fold_batchnorm`), so
no normalisation runs in bfloat16. Decoding and NMS cast the head maps back to float32.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from msad.errors import UsageError
from msad.models.fold import fold_batchnorm

__all__ = ["PRECISIONS", "check_precision", "inference_model", "inference_autocast"]

#: Inference precisions msad offers.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    """``precision`` itself, or a one-line :class:`UsageError` naming the choices."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def inference_model(model: nn.Module, precision: str) -> nn.Module:
    """The module to run for ``precision``: ``model`` itself for fp32, a BN-folded eval copy for bf16."""
    return fold_batchnorm(model) if check_precision(precision) == "bf16" else model


def inference_autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` for ``bf16``; a no-op for ``fp32``."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
