"""``msad convert slimmable``: the public slimmable_networks ImageNet checkpoint as an msad backbone file."""

from __future__ import annotations

from pathlib import Path

from msad.models.backbones.slimmable_checkpoint import public_backbone_state, save_backbone
from msad.models.backbones.slimmable_resnet import SlimmableResNet
from msad.models.backbones.slimmable_shapes import DEFAULT_WIDTHS
from msad.outputs import check_outputs

__all__ = ["convert_slimmable"]


def convert_slimmable(
    source: str | Path, output: str | Path, *, width: float | None = None, depth: int = 50
) -> Path:
    """Convert ``s_resnet50_0.25_0.5_0.75_1.0.pt`` into a safetensors backbone file at all widths or one.

    The file loads with ``build_slimmable_resnet(weights=output, width=…)`` (all widths: also pass
    ``widths=(0.25, 0.5, 0.75, 1.0)``). Everything is checked before ``output`` is written (atomically).

    Raises:
        CheckpointFormatError: the source is missing, corrupt, not in the documented layout, or without ``width``.
    """
    check_outputs([("OUTPUT", output)], inputs=[("SOURCE", source)])
    widths = DEFAULT_WIDTHS if width is None else (float(width),)
    model = SlimmableResNet(depth=depth, widths=widths)
    model.load_state_dict(public_backbone_state(source, model), strict=True)
    return save_backbone(output, model, widths=widths)
