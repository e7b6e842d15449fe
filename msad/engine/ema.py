"""Exponential moving average of a model's weights (kept simple: a constant decay)."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA(nn.Module):
    """A frozen copy of a model whose floating-point state follows ``ema = decay·ema + (1 − decay)·model``.

    Integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are copied. The copy stays in eval mode and is
    what the trainer evaluates and saves as the model weights when EMA is on.

    Args:
        model: the trained module (unwrapped from DDP); its current weights start the average.
        decay: the decay in ``[0, 1)``.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current state (one fused ``_foreach_lerp_`` for all
        floating-point tensors, grouped by device and dtype by torch)."""
        current = model.state_dict()
        averages, values = [], []
        for name, average in self.module.state_dict().items():
            value = current[name].detach()
            if average.is_floating_point():
                averages.append(average)
                values.append(value.to(average.dtype))
            else:
                average.copy_(value)
        if averages:
            torch._foreach_lerp_(averages, values, 1 - self.decay)

    def train(self, mode: bool = True) -> ModelEMA:
        """The average always stays in eval mode."""
        return super().train(False)

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        """The averaged module's state dict (same keys as the model's)."""
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        """Load averaged weights saved by :meth:`state_dict`."""
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)
