"""Drawing detections on images (PNG output of ``msad predict``)."""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor

from msad.structures import Detections

__all__ = ["class_colour", "draw_detections", "Previewer", "make_previewer"]

#: ``previewer(predict) -> {name: image}``, ``predict(images, image_sizes) -> detections`` in the batch frame.
Previewer = Callable[[Callable[[Tensor, list[tuple[int, int]]], list[Detections]]], dict[str, Image.Image]]


def class_colour(label: int) -> tuple[int, int, int]:
    """A distinct, saturated RGB colour per label (golden-ratio hue walk)."""
    hue = (label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(
    image: Tensor, detections: Detections, class_names: Sequence[str], *, labels: bool = True
) -> Image.Image:
    """An RGB PIL image of ``image`` (uint8 ``[3, H, W]``) with boxes drawn (by
    :func:`torchvision.utils.draw_bounding_boxes`), one colour per class.

    Boxes must be in the frame of ``image``. ``labels``: write each box's class name and score in its top-left corner.
    """
    # imported here: torchvision.utils pulls in torch's compiler stack, which `import msad.api` must not pay for
    from torchvision.utils import draw_bounding_boxes

    image = image.cpu()
    if len(detections.boxes):
        label_ids = [int(label) for label in detections.labels.tolist()]
        text = None
        if labels:
            text = [
                f"{class_names[i] if 0 <= i < len(class_names) else i} {score:.2f}"
                for i, score in zip(label_ids, detections.scores.tolist(), strict=True)
            ]
        image = draw_bounding_boxes(
            image, detections.boxes.detach().float().cpu(), labels=text, colors=[class_colour(i) for i in label_ids],
            width=2, fill_labels=True, label_colors="black",
        )
    return Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).numpy()))


def make_previewer(dataset: Any, *, collate: Callable[[list], Any], count: int = 4, score_threshold: float = 0.3) -> Previewer:
    """A :data:`Previewer` drawing the detections on the first ``count`` images of ``dataset`` (TensorBoard).

    Args:
        dataset: items ``(image uint8 [3, h, w], target, meta)`` with ``class_names`` (a validation set).
        collate: its evaluation collator (the batch frame the predictions come in is the items' frame).
        count: images drawn.
        score_threshold: detections scoring below it are not drawn.
    """
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    batch = collate(items) if items else None

    def previewer(predict: Callable[[Tensor, list[tuple[int, int]]], list[Detections]]) -> dict[str, Image.Image]:
        if batch is None:
            return {}
        detections = predict(batch.images, batch.image_sizes)
        drawn = {}
        for (image, _target, meta), det in zip(items, detections, strict=True):
            keep = det.scores >= score_threshold
            det = Detections(det.boxes[keep], det.scores[keep], det.labels[keep]).to("cpu")
            drawn[f"image_{meta.get('image_id', len(drawn))}"] = draw_detections(image, det, dataset.class_names)
        return drawn

    return previewer
