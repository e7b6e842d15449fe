"""A compact, fork-friendly table of what detection training reads from a COCO file.

:class:`ImageTable` keeps, per image, its id, file name, size and the ``xyxy`` boxes and contiguous labels of its
non-crowd annotations in a handful of numpy arrays (file names as one UTF-8 buffer with offsets, boxes as one
``float32 [N, 4]`` array with per-image offsets). It holds no per-image Python object: a 118k-image COCO training
set is a few dozen megabytes, and data workers forked from the process that built it share its pages (reading an
entry does not write to them, unlike the reference counts and GC headers of a dict per annotation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["ImageTable"]

_NAME_ERRORS = "surrogatepass"  # JSON may carry lone surrogates ("\ud800"); keep them round-trippable


class ImageTable:
    """Images (sorted by id) and their non-crowd boxes in flat numpy arrays.

    Attributes:
        image_ids: ``int64 [n]`` COCO image id of each index, ascending.
        heights, widths: ``int32 [n]`` image size from the file; ``-1`` where the file lacks it.
        boxes: ``float32 [N, 4]`` unclipped ``xyxy`` boxes of every image, image ``i`` at
            ``box_offsets[i]:box_offsets[i + 1]`` in the file's annotation order.
        labels: ``int64 [N]`` contiguous label of each box.
        box_offsets: ``int64 [n + 1]``.
    """

    def __init__(
        self,
        image_ids: np.ndarray,
        heights: np.ndarray,
        widths: np.ndarray,
        names: np.ndarray,
        name_offsets: np.ndarray,
        boxes: np.ndarray,
        labels: np.ndarray,
        box_offsets: np.ndarray,
    ) -> None:
        self.image_ids = image_ids
        self.heights = heights
        self.widths = widths
        self._names = names
        self._name_offsets = name_offsets
        self.boxes = boxes
        self.labels = labels
        self.box_offsets = box_offsets

    @classmethod
    def from_coco(
        cls, images: Sequence[Mapping[str, Any]], annotations: Sequence[Mapping[str, Any]], label_of: Mapping[int, int]
    ) -> ImageTable:
        """Build the table from validated COCO ``images`` and ``annotations`` lists.

        Args:
            images: entries with ``id``, ``file_name`` and optionally ``height`` / ``width``; ids unique.
            annotations: entries with ``image_id`` (a listed image), ``category_id`` (a key of ``label_of``),
                ``bbox`` ``[x, y, w, h]`` and optionally ``iscrowd``; crowd annotations are left out.
            label_of: COCO category id -> contiguous label.
        """
        ids = np.fromiter((int(img["id"]) for img in images), dtype=np.int64, count=len(images))
        order = np.argsort(ids, kind="stable")
        image_ids = ids[order]
        heights = np.fromiter((_size(images[i], "height") for i in order), dtype=np.int32, count=len(images))
        widths = np.fromiter((_size(images[i], "width") for i in order), dtype=np.int32, count=len(images))
        encoded = [str(images[i]["file_name"]).encode("utf-8", _NAME_ERRORS) for i in order]
        name_offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=name_offsets[1:])
        names = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        del encoded
        boxes, labels, box_offsets = _box_arrays(annotations, image_ids, label_of)
        return cls(image_ids, heights, widths, names, name_offsets, boxes, labels, box_offsets)

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def num_boxes(self) -> int:
        """Number of (non-crowd) boxes."""
        return len(self.labels)

    def file_name(self, index: int) -> str:
        """The ``file_name`` of image ``index`` as written in the annotation file."""
        start, end = int(self._name_offsets[index]), int(self._name_offsets[index + 1])
        return self._names[start:end].tobytes().decode("utf-8", _NAME_ERRORS)

    def image_boxes(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes float32 [k, 4], labels int64 [k])`` of image ``index`` (read-only views: copy to modify)."""
        start, end = int(self.box_offsets[index]), int(self.box_offsets[index + 1])
        return self.boxes[start:end], self.labels[start:end]

    def size(self, index: int) -> tuple[int, int] | None:
        """``(height, width)`` of image ``index`` from the annotation file, ``None`` when it lacks either."""
        height, width = int(self.heights[index]), int(self.widths[index])
        return None if height < 0 or width < 0 else (height, width)

    @property
    def nbytes(self) -> int:
        """Bytes held by the table's arrays."""
        arrays = (self.image_ids, self.heights, self.widths, self._names, self._name_offsets, self.boxes, self.labels,
                  self.box_offsets)
        return sum(a.nbytes for a in arrays)


def _size(image: Mapping[str, Any], key: str) -> int:
    """An image's ``height`` / ``width`` as an int, ``-1`` when missing or not a number."""
    try:
        return int(image[key])
    except (KeyError, TypeError, ValueError):
        return -1


def _box_arrays(
    annotations: Sequence[Mapping[str, Any]], image_ids: np.ndarray, label_of: Mapping[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-crowd boxes grouped by image index (stable: the file's order within an image) and their offsets."""
    kept = [ann for ann in annotations if not ann.get("iscrowd", 0)]
    count = len(kept)
    xywh = np.fromiter((float(v) for ann in kept for v in ann["bbox"]), dtype=np.float64, count=4 * count)
    xywh = xywh.reshape(count, 4)
    owners = np.fromiter((int(ann["image_id"]) for ann in kept), dtype=np.int64, count=count)
    labels = np.fromiter((label_of[int(ann["category_id"])] for ann in kept), dtype=np.int64, count=count)
    del kept
    index = np.searchsorted(image_ids, owners)
    order = np.argsort(index, kind="stable")
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)  # float64 sums, as Python floats
    boxes = np.ascontiguousarray(xyxy[order], dtype=np.float32)
    offsets = np.zeros(len(image_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(index, minlength=len(image_ids)), out=offsets[1:])
    return boxes, np.ascontiguousarray(labels[order]), offsets
