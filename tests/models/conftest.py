"""A tiny stand-in backbone so model tests do not depend on the slimmable ResNet."""

import pytest
import torch
from torch import nn

from msad.structures import FeatureInfo


class TinyBackbone(nn.Module):
    """Four strided convs producing res2…res5 at strides 4…32."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        self.stem = nn.Conv2d(3, width, 3, stride=4, padding=1)
        self.stages = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1) for i in range(1, 4))
        self.feature_info = [FeatureInfo(f"res{i + 2}", chans[i + 1], 2 ** (i + 2)) for i in range(4)]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = torch.relu(self.stem(x))
        out = {"res2": x}
        for i, stage in enumerate(self.stages):
            x = torch.relu(stage(x))
            out[f"res{i + 3}"] = x
        return out


@pytest.fixture
def tiny_backbone() -> TinyBackbone:
    torch.manual_seed(0)
    return TinyBackbone()
