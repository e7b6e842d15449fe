"""Crossing feature-level fusion (C-FF) of the aligned multi-scale teacher.

For each level pair, the HR map ``P_i`` and the LR map ``P_{i-1}`` (same size) are concatenated, pooled to a
vector, squeezed through FC(2C→hidden, no bias) → ReLU → FC(hidden→2, no bias) → softmax, and the two
weights ``(a, b)`` — one pair per image and level — mix the maps: ``fused = a·HR + b·LR``. One module is
shared by all level pairs. Both linear layers start as detectron2's ``c2_xavier_fill`` (the reference's init).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["CrossFeatureFusion"]


class CrossFeatureFusion(nn.Module):
    """C-FF: softmax-gated sum of an HR map and its aligned LR map.

    Args:
        channels: channels of each input map (256 in the paper, so the concatenation has 512).
        hidden: width of the squeeze layer (32 in the paper).
    """

    def __init__(self, *, channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(2 * channels, hidden, bias=False), nn.ReLU(inplace=True), nn.Linear(hidden, 2, bias=False)
        )
        for layer in (self.fc[0], self.fc[2]):
            # detectron2's c2_xavier_fill, as the reference: uniform on ±sqrt(3 / fan_in) (no bias here)
            nn.init.kaiming_uniform_(layer.weight, a=1)

    def weights(self, hr: Tensor, lr: Tensor) -> Tensor:
        """``[B, 2]`` softmax weights ``(a, b)`` for one level pair."""
        if hr.shape != lr.shape:
            raise ValueError(f"C-FF needs aligned maps of equal shape, got HR {tuple(hr.shape)} and LR {tuple(lr.shape)}")
        pooled = torch.cat([hr, lr], dim=1).mean(dim=(2, 3))
        return torch.softmax(self.fc(pooled), dim=1)

    def forward(self, hr: Tensor, lr: Tensor) -> Tensor:
        """Fuse one HR map with its aligned LR map."""
        w = self.weights(hr, lr)
        return w[:, 0, None, None, None] * hr + w[:, 1, None, None, None] * lr
