"""The public slimmable_networks ImageNet checkpoint layout, and msad backbone weight files.

The public ``s_resnet50_0.25_0.5_0.75_1.0.pt`` is ``{"model": state_dict}`` with keys prefixed ``module.``:
``features.0.0.weight`` (stem conv), ``features.0.1.bn.{j}.*`` (stem BNs, ``j`` indexes the width list), blocks
``features.{1..16}`` with ``body.{0,3,6}.weight`` convs and ``body.{1,4,7}.bn.{j}.*`` BNs, ``shortcut.0.weight`` +
``shortcut.1.bn.{j}.*`` in the first block of every stage, and ``classifier.0.{weight,bias}`` (1,115 tensors for R-50).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from msad.errors import CheckpointError
from msad.levels import BACKBONE_LEVELS
from msad.models.backbones.slimmable_shapes import DEFAULT_WIDTHS, DEPTHS, STAGE_CHANNELS, channels_at
from msad.serialization import save_weights

__all__ = [
    "CheckpointFormatError",
    "convert_slimmable_state_dict",
    "public_backbone_state",
    "load_slimmable_checkpoint",
    "save_backbone",
    "is_torch_pickle",
]

_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class CheckpointFormatError(CheckpointError, ValueError):
    """A backbone weight file is missing, unreadable, or does not have the expected layout."""


def is_torch_pickle(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts like a ``torch.save`` file (zip archive or legacy pickle)."""
    with Path(path).open("rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def load_slimmable_checkpoint(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a slimmable_networks checkpoint (``{"model": state_dict}``) safely; return its raw state dict.

    Uses ``torch.load(..., map_location="cpu", weights_only=True)``. A bare state dict is accepted too.

    Raises:
        CheckpointFormatError: the file is missing, truncated, not a PyTorch checkpoint, or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointFormatError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for corrupt files
        text = " ".join(str(err).split())[:200]
        raise CheckpointFormatError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {type(err).__name__}: {text}"
        ) from err
    state = obj.get("model", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(state, Mapping) or not state or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise CheckpointFormatError(f"{path}: expected {{'model': state_dict}} of tensors, got {type(obj).__name__}")
    return dict(state)


def _layout(depth: int, widths: Sequence[float]) -> Iterator[tuple[str, str, tuple[int, ...]]]:
    """``(source key without 'module.', msad key, expected shape)`` for every backbone tensor."""
    full = max(widths)

    def conv(src: str, dst: str, cin: int, cout: int, k: int) -> Iterator[tuple[str, str, tuple[int, ...]]]:
        in_channels = 3 if cin == 3 else channels_at(cin, full)  # the image has 3 channels at every width
        yield f"{src}.weight", f"{dst}.weight", (channels_at(cout, full), in_channels, k, k)

    def bn(src: str, dst: str, channels: int) -> Iterator[tuple[str, str, tuple[int, ...]]]:
        for j, w in enumerate(widths):
            for key in _BN_KEYS:
                shape = () if key == "num_batches_tracked" else (channels_at(channels, w),)
                yield f"{src}.bn.{j}.{key}", f"{dst}.bns.{j}.{key}", shape

    yield from conv("features.0.0", "stem.conv", 3, 64, 7)
    yield from bn("features.0.1", "stem.bn", 64)
    index, cin = 1, 64
    for stage, (blocks, cout) in enumerate(zip(DEPTHS[depth], STAGE_CHANNELS, strict=True)):
        mid = cout // 4
        for i in range(blocks):
            src, dst = f"features.{index}", f"{BACKBONE_LEVELS[stage]}.{i}"
            yield from conv(f"{src}.body.0", f"{dst}.conv1", cin, mid, 1)
            yield from bn(f"{src}.body.1", f"{dst}.bn1", mid)
            yield from conv(f"{src}.body.3", f"{dst}.conv2", mid, mid, 3)
            yield from bn(f"{src}.body.4", f"{dst}.bn2", mid)
            yield from conv(f"{src}.body.6", f"{dst}.conv3", mid, cout, 1)
            yield from bn(f"{src}.body.7", f"{dst}.bn3", cout)
            if i == 0:
                yield from conv(f"{src}.shortcut.0", f"{dst}.downsample.0", cin, cout, 1)
                yield from bn(f"{src}.shortcut.1", f"{dst}.downsample.1", cout)
            index, cin = index + 1, cout


def convert_slimmable_state_dict(
    state: Mapping[str, Tensor], *, depth: int = 50, widths: Sequence[float] = DEFAULT_WIDTHS
) -> dict[str, Tensor]:
    """Map a slimmable_networks ``s_resnet`` state dict onto :class:`SlimmableResNet` keys.

    The ``module.`` prefix is optional; ``classifier.*`` is dropped; a missing ``num_batches_tracked`` (old
    PyTorch) becomes 0.

    Raises:
        ValueError: an unsupported depth, or the state dict has missing or unexpected keys or wrong shapes
            (all named in the message).
    """
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth}")
    source = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    out: dict[str, Tensor] = {}
    missing: list[str] = []
    wrong: list[str] = []
    known: set[str] = set()
    for src, dst, shape in _layout(depth, widths):
        known.add(src)
        if src not in source:
            if src.endswith("num_batches_tracked"):
                out[dst] = torch.tensor(0, dtype=torch.long)
            else:
                missing.append(src)
            continue
        tensor = source[src]
        if tuple(tensor.shape) != shape:
            wrong.append(f"{src} {tuple(tensor.shape)} (expected {shape})")
        out[dst] = tensor
    unexpected = sorted(k for k in source if k not in known and not k.startswith("classifier."))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s) {unexpected[:5]}")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatch(es) {wrong[:5]}")
        raise ValueError(
            f"not a slimmable ResNet-{depth} checkpoint with widths {list(widths)}: " + "; ".join(parts)
        )
    return out


def save_backbone(path: str | os.PathLike, model: nn.Module, *, widths: Sequence[float]) -> Path:
    """Write ``model``'s weights as a msad backbone safetensors file (role ``backbone``, widths, depth).

    ``model`` is a :class:`SlimmableResNet`; the file loads back with
    ``build_slimmable_resnet(weights=path, depth=..., widths=...)``.
    """
    depth = getattr(model, "depth", None)
    metadata = {"format": "msad/1", "role": "backbone", "width": json.dumps([float(w) for w in widths])}
    if depth is not None:
        metadata["depth"] = str(depth)
    return save_weights(path, model.state_dict(), metadata)


def public_backbone_state(path: str | os.PathLike, model: nn.Module) -> dict[str, Tensor]:
    """The public slimmable_networks checkpoint at ``path`` as a state dict of ``model`` (a ``SlimmableResNet``).

    The checkpoint's four widths are narrowed to ``model.widths`` when the model keeps fewer.

    Raises:
        CheckpointFormatError: the file is unreadable, not in the documented layout, or lacks one of the
            model's widths (named with ``path``).
    """
    try:
        state = convert_slimmable_state_dict(load_slimmable_checkpoint(path), depth=model.depth)
        if tuple(model.widths) != DEFAULT_WIDTHS:
            state = narrow_state(state, source_widths=DEFAULT_WIDTHS, expected=model.state_dict(), widths=model.widths)
    except CheckpointFormatError:
        raise
    except ValueError as err:
        raise CheckpointFormatError(f"{path}: {err}") from err
    return state


def narrow_state(
    state: Mapping[str, Tensor], *, source_widths: Sequence[float], expected: Mapping[str, Tensor],
    widths: Sequence[float],
) -> dict[str, Tensor]:
    """Narrow a :class:`SlimmableResNet` state of ``source_widths`` to a network of fewer ``widths``.

    Each BN ``bns.{j}`` of the narrow network takes the source BN of the same width; each conv weight takes
    the leading slice of the source weight with the narrow network's shape (what slimmable inference uses).

    Raises:
        ValueError: a width is not among ``source_widths``, or a tensor is missing in the source.
    """
    source_widths = [float(w) for w in source_widths]
    missing_widths = [w for w in widths if float(w) not in source_widths]
    if missing_widths:
        raise ValueError(f"widths {missing_widths} are not in the checkpoint's widths {source_widths}")
    index = [source_widths.index(float(w)) for w in widths]
    out: dict[str, Tensor] = {}
    for key, like in expected.items():
        parts = key.split(".")
        if "bns" in parts:
            at = parts.index("bns") + 1
            parts[at] = str(index[int(parts[at])])
        src = ".".join(parts)
        if src not in state:
            raise ValueError(f"the checkpoint lacks {src}")
        tensor = state[src]
        out[key] = tensor[tuple(slice(0, n) for n in like.shape)].clone() if tensor.dim() else tensor.clone()
    return out

