"""Decoding an exported graph's raw head maps into detections: a small pure function beside the graph.

Why decoding and NMS stay outside the graph (and not ONNX ``NonMaxSuppression``): the FCOS post-processing
ranks candidates per level (top 1000 of ``sigmoid(cls)·sigmoid(ctr)`` above 0.05), scores with
``sqrt(cls·ctr)``, runs one class-wise NMS over all levels and keeps the best 100 per image. ONNX's NMS
operator keeps ``max_output_boxes_per_class`` per class and returns indices whose count depends on the
data, so the same behaviour needs a chain of data-dependent gathers that each runtime (ONNX Runtime, a
``torch.export`` program, TensorRT…) treats differently. Keeping the graph to fixed-shape head maps makes
it checkable against eager outputs to a tolerance, and this one function — msad's own
:class:`~msad.ops.postprocess.FCOSPostProcess` — gives identical detections behind every runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from msad.export.deploy import DeploySpec
from msad.ops.postprocess import FCOSPostProcess
from msad.structures import Detections, LevelOutputs

__all__ = ["decode_detections"]


def decode_detections(
    outputs: Mapping[str, LevelOutputs], spec: DeploySpec, input_sizes: Sequence[tuple[int, int]]
) -> list[Detections]:
    """Detections per image of an exported graph's outputs, in the frame of the graph's input.

    Args:
        outputs: head maps per head level (e.g. from :func:`~msad.export.deploy.split_outputs`), torch tensors.
        spec: the graph's :class:`DeploySpec` (strides, box scale, post-processing options).
        input_sizes: ``(h, w)`` of each image inside the (padded) input, in the input's frame.

    Returns:
        One :class:`Detections` per image: boxes in the input frame, clipped to its ``input_sizes``, class-wise
        NMS applied, at most ``spec.postprocess["max_detections"]`` each.
    """
    inv = 1.0 / spec.box_scale
    frame_sizes = [(round(h * inv), round(w * inv)) for h, w in input_sizes]
    detections = FCOSPostProcess(**spec.postprocess)(outputs, spec.strides, frame_sizes)
    if spec.box_scale == 1.0:
        return detections
    return [d.scaled(spec.box_scale, spec.box_scale) for d in detections]
