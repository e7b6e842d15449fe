"""A tiny in-memory COCO ground truth and a per-rank function for the sharded-evaluation test."""

from __future__ import annotations

import contextlib
import io

import torch
from pycocotools.coco import COCO

from msad.structures import Detections

#: label -> COCO category id (non-contiguous, and not in id order, on purpose).
CATEGORY_IDS = [7, 1]
#: image id -> [(x, y, w, h, category_id)]
OBJECTS = {
    10: [(10, 10, 30, 30, 1), (50, 50, 40, 30, 7)],
    20: [(5, 5, 50, 60, 1), (60, 10, 30, 30, 7)],
    30: [(20, 20, 40, 40, 7)],  # only evaluated when it is add()-ed
}


def make_coco() -> COCO:
    """The ground truth: three 100×100 images, categories 1 and 7."""
    annotations = []
    for image_id, objects in OBJECTS.items():
        for x, y, w, h, category_id in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.png"} for i in OBJECTS],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "cat"}, {"id": 7, "name": "dog"}],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def perfect(image_id: int, *, swap_labels: bool = False, keep: int | None = None) -> Detections:
    """Detections equal to the ground truth of ``image_id`` (xyxy, contiguous labels)."""
    objects = OBJECTS[image_id][:keep]
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h, _ in objects], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([CATEGORY_IDS.index(c) for *_, c in objects], dtype=torch.int64)
    if swap_labels:
        labels = 1 - labels
    return Detections(boxes, torch.linspace(0.9, 0.5, len(objects)), labels)


def empty() -> Detections:
    """No detections."""
    return Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))


def sharded_evaluation() -> tuple[dict[str, float], list[int]]:
    """Rank r adds its shard (image 20 on both ranks: kept once); returns (metrics, evaluated image ids)."""
    from msad.comm import get_rank
    from msad.evaluation import CocoEvaluator

    evaluator = CocoEvaluator(make_coco(), CATEGORY_IDS)
    if get_rank() == 0:
        evaluator.add([10, 20], [perfect(10), perfect(20)])
    else:
        evaluator.add([20], [perfect(20, swap_labels=True)])  # a duplicate: rank 0's detections win
    evaluator.gather()
    metrics = evaluator.summarize()
    from msad.comm import all_gather_object

    every = all_gather_object((repr(metrics), evaluator.image_ids))
    if any(other != every[0] for other in every):  # every rank returns rank 0's metrics
        raise AssertionError(f"ranks disagree: {every}")
    return metrics, evaluator.image_ids
