"""Optional adapter: any timm ``features_only`` model as a msad backbone (levels ``res2``…``res5``).

timm is imported lazily, only when a timm backbone is built; nothing is ever downloaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from msad.errors import MissingDependencyError
from msad.models.backbones.slimmable_checkpoint import CheckpointFormatError, is_torch_pickle
from msad.plugin_declarations import declare_options
from msad.serialization import state_mismatch
from msad.structures import FeatureInfo

__all__ = ["TimmBackbone", "build_timm_backbone"]

_NEEDED_STRIDES = (4, 8, 16, 32)


class TimmBackbone(nn.Module):
    """Wraps a timm ``features_only`` model; ``forward`` returns ``{"res2": …, …, "res5": …}``.

    Attributes:
        model: the timm feature extractor.
        feature_info: the levels returned, finest first (stride ``2**k`` is named ``res{k}``).
    """

    def __init__(self, model: nn.Module, positions: list[int], feature_info: list[FeatureInfo]) -> None:
        super().__init__()
        self.model = model
        self._positions = positions
        self.feature_info = feature_info

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Run the timm model and name the stride 4/8/16/32 maps."""
        feats = self.model(x)
        return {info.name: feats[pos] for pos, info in zip(self._positions, self.feature_info, strict=True)}


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointFormatError(f"timm weights not found: {path}")
    if is_torch_pickle(path):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises many types for corrupt files
            raise CheckpointFormatError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__})") from err
        for key in ("state_dict", "model"):
            if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
                obj = obj[key]
    else:
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path), device="cpu")
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointFormatError(f"{path}: not a readable safetensors file ({type(err).__name__})") from err
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointFormatError(f"{path}: does not hold a state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def _load_strict(model: nn.Module, path: Path, model_name: str) -> None:
    """Load ``path`` strictly; keys of the full timm model that ``features_only`` dropped (heads) are ignored."""
    state = _read_state_dict(path)
    expected = model.state_dict()
    dropped: set[str] = set()
    if set(state) - set(expected):  # keys of the full model that ``features_only`` dropped (e.g. ``fc.*``)
        import timm

        dropped = set(timm.create_model(model_name, pretrained=False).state_dict()) - set(expected)
    problem = state_mismatch(expected, state, tolerated=dropped)
    if problem:
        raise CheckpointFormatError(f"{path}: does not fit timm model {model_name!r}: {problem}")
    model.load_state_dict({k: state[k] for k in expected}, strict=True)


@declare_options(init_files=("weights",))
def build_timm_backbone(
    *,
    model_name: str,
    weights: str | None = None,
    out_indices: tuple[int, ...] | None = None,
) -> TimmBackbone:
    """Build a timm feature extractor as a msad backbone (``msad.backbones`` entry point ``timm``).

    Args:
        model_name: a timm model name, e.g. ``"resnet18"``; created with ``pretrained=False``.
        weights: optional local safetensors or ``torch.save`` file, loaded strictly (classifier keys of the full
            model are ignored).
        out_indices: timm feature indices to compute (timm's default when ``None``); those with reduction 4, 8, 16
            or 32 become ``res2``…``res5``.

    Raises:
        MissingDependencyError: timm is not installed (the ``msad[timm]`` extra).
        ValueError: unknown model, no stride-32 features among the chosen ones, or a weight file that does not fit.
    """
    try:
        import timm
    except ImportError as err:
        raise MissingDependencyError("timm backbones need the timm extra: pip install 'msad[timm]'") from err
    if not timm.is_model(model_name):
        raise ValueError(f"unknown timm model {model_name!r}")
    kwargs = {} if out_indices is None else {"out_indices": tuple(out_indices)}
    model = timm.create_model(model_name, pretrained=False, features_only=True, **kwargs)
    positions: list[int] = []
    infos: list[FeatureInfo] = []
    for pos, (reduction, channels) in enumerate(zip(model.feature_info.reduction(), model.feature_info.channels(), strict=True)):
        if reduction in _NEEDED_STRIDES:
            info = FeatureInfo(f"res{int(math.log2(reduction))}", int(channels), int(reduction))
            if infos and infos[-1].stride == reduction:  # several maps at one stride: keep the deepest
                positions.pop()
                infos.pop()
            positions.append(pos)
            infos.append(info)
    if not any(info.stride == 32 for info in infos):
        raise ValueError(
            f"timm model {model_name!r} has no stride-32 features among out_indices {out_indices} "
            f"(reductions {list(model.feature_info.reduction())})"
        )
    if weights is not None:
        _load_strict(model, Path(weights), model_name)
    return TimmBackbone(model, positions, infos)
