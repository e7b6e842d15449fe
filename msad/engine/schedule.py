"""Learning-rate schedule (linear warm-up, step decay) and the SGD optimizer with detectron2's parameter groups.

The lr is a pure function of the iteration (:func:`lr_at`), so a resumed run needs no scheduler state: each
step simply writes ``lr_at(iteration)`` into every parameter group.
"""

from __future__ import annotations

from bisect import bisect_right

import torch
from torch import nn

from msad.engine.settings import SolverSettings

__all__ = ["NORM_TYPES", "lr_at", "LRSchedule", "param_groups", "build_optimizer"]

#: Module types whose parameters take ``weight_decay_norm``.
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.modules.instancenorm._InstanceNorm,
)


def lr_at(iteration: int, settings: SolverSettings) -> float:
    """The learning rate of (0-based) ``iteration``.

    ``lr · warmup · gamma^k``, where ``warmup`` rises linearly from ``warmup_factor`` at iteration 0 to 1 at
    ``warmup_iters`` (detectron2's ``WarmupMultiStepLR``) and ``k`` is the number of ``steps`` ≤ ``iteration``.
    """
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    warmup = 1.0
    if iteration < settings.warmup_iters:
        alpha = iteration / settings.warmup_iters
        warmup = settings.warmup_factor * (1 - alpha) + alpha
    return settings.lr * warmup * settings.gamma ** bisect_right(settings.steps, iteration)


class LRSchedule:
    """Sets every parameter group's lr to :func:`lr_at` of the iteration (no ``LambdaLR``, no state to save).

    Args:
        optimizer: the optimizer whose groups are updated.
        settings: the solver settings defining the curve.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, settings: SolverSettings) -> None:
        self.optimizer = optimizer
        self.settings = settings

    def step(self, iteration: int) -> float:
        """Apply the lr of ``iteration`` before its optimizer step and return it."""
        lr = lr_at(iteration, self.settings)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr


def param_groups(model: nn.Module, settings: SolverSettings) -> list[dict]:
    """Parameter groups with per-parameter weight decay, merged by value (detectron2's default groups).

    Norm-layer parameters take ``weight_decay_norm`` when set; biases (``*.bias``) take ``weight_decay_bias``
    when set, even in norm layers; everything else takes ``weight_decay``. Frozen parameters
    (``requires_grad=False``) and repeated (shared) parameters are skipped.
    """
    seen: set[int] = set()
    groups: dict[float, list[nn.Parameter]] = {}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            decay = settings.weight_decay
            if isinstance(module, NORM_TYPES) and settings.weight_decay_norm is not None:
                decay = settings.weight_decay_norm
            if name == "bias" and settings.weight_decay_bias is not None:
                decay = settings.weight_decay_bias
            groups.setdefault(decay, []).append(param)
    return [{"params": params, "weight_decay": decay} for decay, params in groups.items()]


def build_optimizer(model: nn.Module, settings: SolverSettings, *, fused: bool = False) -> torch.optim.SGD:
    """SGD with momentum over :func:`param_groups`, at the lr of iteration 0.

    ``fused``: torch's fused kernel, which takes a GradScaler's inf check as a device tensor; the default
    (foreach) SGD makes the scaler read it back to the host every step. The trainer asks for it under fp16.
    """
    groups = param_groups(model, settings)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.SGD(groups, lr=lr_at(0, settings), momentum=settings.momentum, fused=fused or None)
