"""Drawings of detections: torchvision's boxes, one colour per class, labels optional."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.utils import draw_bounding_boxes

from msad.structures import Detections
from msad.visualize import class_colour, draw_detections


def _scene() -> tuple[torch.Tensor, Detections]:
    image = torch.full((3, 80, 120), 40, dtype=torch.uint8)
    det = Detections(torch.tensor([[20.0, 30.0, 60.0, 70.0], [70.0, 35.0, 110.0, 75.0]]), torch.tensor([0.9, 0.4]),
                     torch.tensor([0, 2]))
    return image, det


def test_boxes_are_drawn_by_torchvision_one_colour_per_class() -> None:
    image, det = _scene()
    drawn = np.asarray(draw_detections(image, det, ["cat", "dog", "bird"], labels=False))
    want = draw_bounding_boxes(image, det.boxes, colors=[class_colour(0), class_colour(2)], width=2)
    assert np.array_equal(drawn, want.permute(1, 2, 0).numpy())


def test_labels_are_written_above_the_boxes_unless_hidden() -> None:
    image, det = _scene()
    labelled = np.asarray(draw_detections(image, det, ["cat", "dog", "bird"]))
    bare = np.asarray(draw_detections(image, det, ["cat", "dog", "bird"], labels=False))
    inside = (slice(32, 68), slice(22, 58))  # inside the first box, away from its outline: where its label goes
    assert (bare[inside] == 40).all()
    assert (labelled[inside] != 40).any()
    empty = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    assert np.array_equal(np.asarray(draw_detections(image, empty, ["cat"])), image.permute(1, 2, 0).numpy())
