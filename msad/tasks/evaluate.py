"""COCO evaluation of any predictor over a dataset, sharded across ranks and gathered."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from msad.data.samplers import build_test_loader
from msad.comm import get_rank, get_world_size
from msad.evaluation.coco_eval import CocoEvaluator
from msad.structures import Detections

__all__ = ["Predictor", "to_original_frame", "evaluate_coco"]

#: ``predict(images, image_sizes) -> detections`` in the frame of the batch tensor.
Predictor = Callable[[Tensor, list[tuple[int, int]]], list[Detections]]


def to_original_frame(det: Detections, size: tuple[int, int], original: tuple[int, int]) -> Detections:
    """Map detections from a resized image of ``size`` (h, w) back to its ``original`` (h, w)."""
    return det.scaled(original[1] / size[1], original[0] / size[0])


def evaluate_coco(predict: Predictor, dataset, *, collate, batch_size: int, num_workers: int) -> dict[str, float]:
    """COCO box metrics (0–100) of ``predict`` on ``dataset``; every rank must call this.

    Args:
        predict: the model's predictor in the batch frame.
        dataset: an evaluation :class:`~msad.data.coco.CocoDetection` (``coco`` and ``category_ids``).
        collate: the batch collator.
        batch_size: images per rank and step.
        num_workers: data loader workers.
    """
    loader = build_test_loader(
        dataset,
        batch_size=batch_size,
        rank=get_rank(),
        world_size=get_world_size(),
        num_workers=num_workers,
        collate=collate,
    )
    evaluator = CocoEvaluator(dataset.coco, dataset.category_ids)
    for batch in loader:
        detections = predict(batch.images, batch.image_sizes)
        mapped = [
            to_original_frame(d.to("cpu"), s, o)
            for d, s, o in zip(detections, batch.image_sizes, batch.original_sizes, strict=True)
        ]
        evaluator.add(batch.image_ids, mapped)
    evaluator.gather()
    return evaluator.summarize()
