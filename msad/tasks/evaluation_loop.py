"""COCO evaluation of any predictor over a dataset, sharded across ranks and gathered."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from msad.comm import get_rank, get_world_size
from msad.console import LoopProgress
from msad.data.collate import padded_size
from msad.data.loaders import build_test_loader
from msad.evaluation.coco_eval import CocoEvaluator
from msad.structures import Detections

__all__ = ["Predictor", "to_original_frame", "unpadded_groups", "evaluate_coco"]

#: ``predict(images, image_sizes) -> detections`` in the frame of the batch tensor.
Predictor = Callable[[Tensor, list[tuple[int, int]]], list[Detections]]


def to_original_frame(det: Detections, size: tuple[int, int], original: tuple[int, int]) -> Detections:
    """Map detections from a resized image of ``size`` (h, w) back to its ``original`` (h, w)."""
    return det.scaled(original[1] / size[1], original[0] / size[0])


def unpadded_groups(
    images: Tensor, image_sizes: list[tuple[int, int]], size_divisibility: int
) -> list[tuple[list[int], Tensor]]:
    """Split a padded batch into groups of images that need the same padding on their own.

    Each group is ``(indices, images[indices]`` cropped to the size that image would be padded to alone``)``.
    The collator pads with zeros at the bottom and right, so the crop *is* the image's own padded tensor:
    detections then never depend on which images share a batch (as the reference, which evaluates one image
    per GPU), even through padding-sensitive layers (GroupNorm statistics, C-FF's global pooling, the P6/P7
    borders).
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for index, size in enumerate(image_sizes):
        groups.setdefault(padded_size([size], size_divisibility), []).append(index)
    return [(indices, images[indices, :, : hw[0], : hw[1]]) for hw, indices in groups.items()]


def evaluate_coco(
    predict: Predictor, dataset, *, collate, batch_size: int, num_workers: int, evaluator: CocoEvaluator | None = None,
    backend: str = "pycocotools",
) -> dict[str, float]:
    """COCO box metrics (0–100) of ``predict`` on ``dataset``; every rank must call this.

    Args:
        predict: the model's predictor in the batch frame.
        dataset: an evaluation :class:`~msad.data.coco.CocoDetection` (``coco`` and ``category_ids``).
        collate: the batch collator (its ``size_divisibility`` also pads each image on its own, see
            :func:`unpadded_groups`).
        batch_size: images per rank and step.
        num_workers: data loader workers.
        evaluator: the (empty) evaluator to fill, for the caller to read detections or per-class AP from after;
            a new one by default.
        backend: the COCOeval implementation of the new evaluator (``pycocotools`` or ``faster_coco_eval``).
    """
    loader = build_test_loader(
        dataset,
        batch_size=batch_size,
        rank=get_rank(),
        world_size=get_world_size(),
        num_workers=num_workers,
        collate=collate,
    )
    evaluator = evaluator if evaluator is not None else CocoEvaluator(dataset.coco, dataset.category_ids, backend=backend)
    with LoopProgress("eval", total=len(dataset), enabled=get_rank() == 0) as progress:
        for batch in loader:
            _evaluate_batch(predict, batch, collate.size_divisibility, evaluator)
            progress.advance(len(batch.image_ids) * get_world_size())  # rank 0 counts the ranks' equal shares
    evaluator.gather()
    return evaluator.summarize()


def _evaluate_batch(predict: Predictor, batch, size_divisibility: int, evaluator: CocoEvaluator) -> None:
    """Add one batch's detections, in the original image frames, to ``evaluator``."""
    detections: list[Detections | None] = [None] * len(batch.image_sizes)
    for indices, images in unpadded_groups(batch.images, batch.image_sizes, size_divisibility):
        for i, det in zip(indices, predict(images, [batch.image_sizes[i] for i in indices]), strict=True):
            detections[i] = det
    mapped = [
        to_original_frame(d.to("cpu"), s, o)
        for d, s, o in zip(detections, batch.image_sizes, batch.original_sizes, strict=True)
    ]
    evaluator.add(batch.image_ids, mapped)
