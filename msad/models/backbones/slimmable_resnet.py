"""Slimmable bottleneck ResNet-50/101 with switchable batch norm (Yu et al., "Slimmable Neural Networks").

Every conv stores its full-width weight; at width ``w`` it uses the leading slice (stem ``int(64·w)``, stage outputs
``int(256·w)`` … ``int(2048·w)``, bottleneck ``out // 4``). Every BN position holds one private BN per width.
:func:`slice_to_width` turns the network into a plain ResNet of one width (ordinary ``nn.Conv2d`` / one BN per
position) with identical outputs, for deployment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msad.levels import BACKBONE_LEVELS
from msad.models.backbones.slimmable_checkpoint import CheckpointFormatError, is_torch_pickle, public_backbone_state
from msad.models.backbones.slimmable_shapes import DEFAULT_WIDTHS, DEPTHS, STAGE_CHANNELS, STEM_CHANNELS, channels_at
from msad.plugin_declarations import declare_options
from msad.serialization import load_weights, state_mismatch
from msad.structures import FeatureInfo

__all__ = [
    "FrozenBatchNorm2d",
    "SlimmableConv2d",
    "SwitchableBatchNorm2d",
    "Bottleneck",
    "SlimmableResNet",
    "SlicedResNet",
    "build_slimmable_resnet",
    "slice_to_width",
]

_STRIDES = (4, 8, 16, 32)
Norm = Literal["bn", "frozen_bn"]


class FrozenBatchNorm2d(nn.Module):
    """Batch norm that always uses its running statistics and never trains.

    Same state-dict keys as :class:`torch.nn.BatchNorm2d`; ``weight``/``bias`` are parameters with
    ``requires_grad=False``. Not a ``_BatchNorm`` subclass, so SyncBN conversion leaves it alone; ``.train()``
    keeps it in eval mode.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(num_features), requires_grad=False)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.training = False

    def train(self, mode: bool = True) -> FrozenBatchNorm2d:
        """Ignore ``mode``: a frozen BN stays in eval mode."""
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        """Normalise with the running statistics."""
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def _make_norm(norm: Norm, channels: int) -> nn.Module:
    if norm == "frozen_bn":
        return FrozenBatchNorm2d(channels)
    return nn.BatchNorm2d(channels)


class SlimmableConv2d(nn.Conv2d):
    """Bias-free conv holding the full-width weight; the active width uses ``weight[:out_i, :in_i]``."""

    def __init__(self, in_list: Sequence[int], out_list: Sequence[int], kernel_size: int, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__(max(in_list), max(out_list), kernel_size, stride=stride, padding=padding, bias=False)
        self.in_list = list(in_list)
        self.out_list = list(out_list)
        self.index = len(self.out_list) - 1

    def forward(self, x: Tensor) -> Tensor:
        """Convolve with the active width's weight slice."""
        out, inp = self.out_list[self.index], self.in_list[self.index]
        weight = self.weight
        if (out, inp) != tuple(weight.shape[:2]):  # slicing the full width would add a copy to every backward
            weight = weight[:out, :inp]
        return F.conv2d(x, weight, None, self.stride, self.padding)


class SwitchableBatchNorm2d(nn.Module):
    """One private BN per width (``bns[j]`` for ``widths[j]``); the active one is ``bns[index]``."""

    def __init__(self, channels_list: Sequence[int], norm: Norm = "bn") -> None:
        super().__init__()
        self.bns = nn.ModuleList(_make_norm(norm, c) for c in channels_list)
        self.index = len(channels_list) - 1

    def forward(self, x: Tensor) -> Tensor:
        """Normalise with the active width's BN."""
        return self.bns[self.index](x)


# A factory builds one conv/norm position from per-width channel lists.
ConvFactory = Callable[[list[int], list[int], int, int, int], nn.Module]
NormFactory = Callable[[list[int]], nn.Module]


class Bottleneck(nn.Module):
    """1×1 → 3×3 (strided) → 1×1 bottleneck with an optional 1×1 projection ``downsample`` (conv + BN)."""

    def __init__(self, inp: list[int], out: list[int], stride: int, conv: ConvFactory, norm: NormFactory,
                 project: bool) -> None:
        super().__init__()
        mid = [c // 4 for c in out]
        self.conv1, self.bn1 = conv(inp, mid, 1, 1, 0), norm(mid)
        self.conv2, self.bn2 = conv(mid, mid, 3, stride, 1), norm(mid)
        self.conv3, self.bn3 = conv(mid, out, 1, 1, 0), norm(out)
        self.downsample = nn.Sequential(conv(inp, out, 1, stride, 0), norm(out)) if project else None

    def forward(self, x: Tensor) -> Tensor:
        """Residual bottleneck with a post-sum ReLU."""
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = F.relu(self.bn2(self.conv2(y)), inplace=True)
        y = self.bn3(self.conv3(y))
        y += x if self.downsample is None else self.downsample(x)  # in place, as torchvision: one buffer less
        return F.relu(y, inplace=True)


class Stem(nn.Module):
    """7×7 stride-2 conv, BN, ReLU, 3×3 stride-2 max-pool."""

    def __init__(self, out: list[int], conv: ConvFactory, norm: NormFactory) -> None:
        super().__init__()
        self.conv = conv([3] * len(out), out, 7, 2, 3)
        self.bn = norm(out)

    def forward(self, x: Tensor) -> Tensor:
        """Stride-4 stem output."""
        return F.max_pool2d(F.relu(self.bn(self.conv(x)), inplace=True), 3, 2, 1)


class _ResNetBase(nn.Module):
    """Shared structure (``stem``, ``res2``…``res5``), freezing and forward of the slimmable and sliced nets."""

    def __init__(self, *, depth: int, widths: Sequence[float], conv: ConvFactory, norm: NormFactory,
                 freeze_at: int, out_features: Sequence[str]) -> None:
        super().__init__()
        self.depth = depth
        self.freeze_at = freeze_at
        self.out_features = tuple(out_features)
        channels = [channels_at(STEM_CHANNELS, w) for w in widths]
        self.stem = Stem(channels, conv, norm)
        for stage, (blocks, full) in enumerate(zip(DEPTHS[depth], STAGE_CHANNELS, strict=True)):
            out = [channels_at(full, w) for w in widths]
            layers = []
            for i in range(blocks):
                stride = 2 if i == 0 and stage > 0 else 1
                layers.append(Bottleneck(channels, out, stride, conv, norm, project=i == 0))
                channels = out
            self.add_module(BACKBONE_LEVELS[stage], nn.Sequential(*layers))
        self._last = max(BACKBONE_LEVELS.index(name) for name in self.out_features)
        for module in self._frozen_modules():
            for param in module.parameters():
                param.requires_grad_(False)

    def _frozen_modules(self) -> list[nn.Module]:
        names = ("stem", *BACKBONE_LEVELS)[: self.freeze_at]
        return [getattr(self, name) for name in names]

    def train(self, mode: bool = True) -> _ResNetBase:
        """Set train/eval mode; stages frozen by ``freeze_at`` always stay in eval mode (BN statistics fixed)."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``{name: map}`` for each requested level of ``out_features``; later stages are not computed."""
        x = self.stem(x)
        out: dict[str, Tensor] = {}
        for name in BACKBONE_LEVELS[: self._last + 1]:
            x = getattr(self, name)(x)
            if name in self.out_features:
                out[name] = x
        return out


class SlimmableResNet(_ResNetBase):
    """Slimmable bottleneck ResNet; see the module docstring. Build it with :func:`build_slimmable_resnet`."""

    def __init__(self, *, depth: int = 50, widths: Sequence[float] = DEFAULT_WIDTHS, width: float | None = None,
                 norm: Norm = "bn", freeze_at: int = 0, out_features: Sequence[str] = BACKBONE_LEVELS) -> None:
        super().__init__(
            depth=depth, widths=widths, freeze_at=freeze_at, out_features=out_features,
            conv=lambda i, o, k, s, p: SlimmableConv2d(i, o, k, s, p),
            norm=lambda c: SwitchableBatchNorm2d(c, norm),
        )
        self.widths = tuple(float(w) for w in widths)
        self.norm = norm
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self._width = max(self.widths)
        self.set_width(self._width if width is None else width)

    @property
    def width(self) -> float:
        """The active width multiplier."""
        return self._width

    def set_width(self, width: float) -> None:
        """Switch every conv slice and BN to ``width`` (one of ``widths``)."""
        if float(width) not in self.widths:
            raise ValueError(f"width {width} is not one of this network's widths {list(self.widths)}")
        index = self.widths.index(float(width))
        for m in self.modules():
            if isinstance(m, (SlimmableConv2d, SwitchableBatchNorm2d)):
                m.index = index
        self._width = float(width)

    @property
    def feature_info(self) -> list[FeatureInfo]:
        """Levels of ``out_features`` with their channels at the active width."""
        return _feature_info(self.out_features, self._width)


class SlicedResNet(_ResNetBase):
    """A plain ResNet of one width (ordinary ``nn.Conv2d`` and one BN per position), made by :func:`slice_to_width`."""

    def __init__(self, *, depth: int, width: float, norm: Norm = "bn", freeze_at: int = 0,
                 out_features: Sequence[str] = BACKBONE_LEVELS) -> None:
        super().__init__(
            depth=depth, widths=(width,), freeze_at=freeze_at, out_features=out_features,
            conv=lambda i, o, k, s, p: nn.Conv2d(i[0], o[0], k, s, p, bias=False),
            norm=lambda c: _make_norm(norm, c[0]),
        )
        self.width = float(width)
        self.feature_info: list[FeatureInfo] = _feature_info(self.out_features, self.width)


def _feature_info(names: Sequence[str], width: float) -> list[FeatureInfo]:
    return [
        FeatureInfo(name, channels_at(STAGE_CHANNELS[BACKBONE_LEVELS.index(name)], width),
                    _STRIDES[BACKBONE_LEVELS.index(name)])
        for name in names
    ]


@torch.no_grad()
def slice_to_width(model: SlimmableResNet, width: float) -> SlicedResNet:
    """A plain :class:`SlicedResNet` of ``width`` with the sliced weights and that width's BNs copied.

    The result has the same ``feature_info``, ``out_features``, ``freeze_at`` and train/eval mode, and gives the
    same outputs as ``model`` at ``width``. ``model`` is left unchanged.
    """
    if float(width) not in model.widths:
        raise ValueError(f"width {width} is not one of this network's widths {list(model.widths)}")
    index = model.widths.index(float(width))
    param = next(model.parameters())
    plain = SlicedResNet(depth=model.depth, width=width, norm=model.norm, freeze_at=model.freeze_at,
                         out_features=model.out_features).to(device=param.device, dtype=param.dtype)
    targets = dict(plain.named_modules())
    for name, module in model.named_modules():
        if isinstance(module, SlimmableConv2d):
            targets[name].weight.copy_(module.weight[: module.out_list[index], : module.in_list[index]])
        elif isinstance(module, SwitchableBatchNorm2d):
            targets[name].load_state_dict(module.bns[index].state_dict())
    return plain.train(model.training)


def _validate(depth: int, width: float, widths: Sequence[float], norm: str, freeze_at: int,
              out_features: Sequence[str]) -> None:
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth}")
    if not widths or any(not 0.0 < float(w) <= 1.0 for w in widths) or len(set(widths)) != len(widths):
        raise ValueError(f"widths must be distinct multipliers in (0, 1], got {list(widths)}")
    if any(channels_at(STEM_CHANNELS, w) < 1 for w in widths):
        raise ValueError(f"widths {list(widths)} give a stem with zero channels")
    if float(width) not in [float(w) for w in widths]:
        raise ValueError(f"width {width} is not in widths {list(widths)}")
    if norm not in ("bn", "frozen_bn"):
        raise ValueError(f"norm must be 'bn' or 'frozen_bn', got {norm!r}")
    if not 0 <= freeze_at <= 5:
        raise ValueError(f"freeze_at must be in 0..5 (0 nothing, 1 stem, 2 stem+res2, …), got {freeze_at}")
    unknown = [name for name in out_features if name not in BACKBONE_LEVELS]
    if unknown or not out_features:
        raise ValueError(f"unknown backbone level(s) {unknown} in out_features; choose from {list(BACKBONE_LEVELS)}")


def _load_weights(model: SlimmableResNet, path: str | Path) -> None:
    """Load a msad backbone safetensors file or a public slimmable_networks ``.pt`` checkpoint into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointFormatError(f"backbone weights not found: {path}")
    if is_torch_pickle(path):
        state = public_backbone_state(path, model)
    else:
        state, meta = load_weights(path)
        if meta.get("role", "backbone") != "backbone":
            raise CheckpointFormatError(f"{path}: role is {meta['role']!r}, expected 'backbone'")
        if "depth" in meta and meta["depth"] != str(model.depth):
            raise CheckpointFormatError(f"{path}: holds a depth-{meta['depth']} ResNet, asked for {model.depth}")
        if "width" in meta and [float(w) for w in json.loads(meta["width"])] != list(model.widths):
            raise CheckpointFormatError(f"{path}: holds widths {meta['width']}, asked for {list(model.widths)}")
    problem = state_mismatch(model.state_dict(), state)
    if problem:
        raise CheckpointFormatError(f"{path}: does not fit this backbone: {problem}")
    model.load_state_dict(state, strict=True)


@declare_options(init_files=("weights",), freeze="freeze_at", training=("norm",), width="width")
def build_slimmable_resnet(
    *,
    depth: int = 50,
    width: float = 1.0,
    widths: tuple[float, ...] | None = None,
    norm: str = "bn",
    freeze_at: int = 0,
    weights: str | None = None,
    out_features: tuple[str, ...] = BACKBONE_LEVELS,
) -> SlimmableResNet:
    """Build a slimmable ResNet backbone (``msad.backbones`` entry point ``slimmable_resnet``).

    Args:
        depth: 50 or 101.
        width: the active width; must be one of ``widths``.
        widths: the width multipliers the network switches between (one private BN per width); default
            ``(width,)``, which stores only that width's weights (a public 4-width checkpoint is narrowed).
        norm: ``"bn"`` or ``"frozen_bn"`` (running statistics only, affine parameters frozen).
        freeze_at: 0 freezes nothing, 1 the stem, 2 stem + res2, … 5 everything (detectron2 convention).
        weights: optional local file, a msad backbone safetensors file or the public slimmable_networks
            ``.pt`` ImageNet checkpoint (converted on the fly). Nothing is ever downloaded.
        out_features: levels returned by ``forward``, from ``res2``…``res5``.

    Raises:
        ValueError: invalid arguments, or a weight file that is unreadable or does not fit.
    """
    widths = (width,) if widths is None else tuple(widths)
    _validate(depth, width, widths, norm, freeze_at, out_features)
    model = SlimmableResNet(depth=depth, widths=widths, norm=norm, freeze_at=freeze_at,  # type: ignore[arg-type]
                            out_features=out_features)
    if weights is not None:
        _load_weights(model, weights)
    model.set_width(width)
    return model
