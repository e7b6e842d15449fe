"""COCO-format detection datasets with contiguous labels and seed-driven augmentation."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pycocotools.coco import COCO
from torch import Tensor

from msad.data.coco_table import ImageTable
from msad.data.images import ImageReadError, read_image
from msad.data.transforms import resized_shape
from msad.errors import DataError
from msad.structures import Target

__all__ = ["DatasetError", "CocoDetection", "DatasetItem", "check_category_compat", "load_coco_json"]

logger = logging.getLogger(__name__)

#: ``(image uint8 [3, h, w], target, meta)`` with meta keys ``image_id``, ``original_size``, ``size``.
DatasetItem = tuple[Tensor, Target, dict[str, Any]]
TransformFn = Callable[[Tensor, Target, "torch.Generator | None"], tuple[Tensor, Target]]

_MIN_SIDE = 1.0  # boxes whose width or height is <= this many pixels after clipping are dropped


class DatasetError(DataError, ValueError):
    """An annotation file or dataset is missing, malformed, empty or incompatible (one-line message)."""


def load_coco_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate the top-level structure of a COCO detection json.

    Missing ``area`` and ``iscrowd`` fields are filled in (``w * h`` and ``0``) so that pycocotools'
    evaluation accepts the file.

    Raises:
        DatasetError: the file is missing, is not JSON, or lacks ``images`` / ``annotations`` / ``categories``
            lists, or an annotation is malformed or references an unknown image or category.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"annotations file {str(path)!r} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"annotations file {str(path)!r} is not valid JSON: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read annotations file {str(path)!r}: {exc}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"annotations file {str(path)!r} must hold a JSON object, got {type(data).__name__}")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"annotations file {str(path)!r} has no {key!r} list")
    data.setdefault("annotations", [])
    if not isinstance(data["annotations"], list):
        raise DatasetError(f"annotations file {str(path)!r}: 'annotations' must be a list")
    _validate_entries(data, path)
    return data


def _validate_entries(data: dict[str, Any], path: Path) -> None:
    """Check ids and boxes; fill missing ``area`` / ``iscrowd`` in place."""
    where = f"annotations file {str(path)!r}"
    try:
        image_ids = {int(img["id"]) for img in data["images"]}
        for img in data["images"]:
            str(img["file_name"])
        category_ids = {int(cat["id"]) for cat in data["categories"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: every image needs 'id' and 'file_name', every category 'id' ({exc!r})") from None
    if len(image_ids) != len(data["images"]):
        raise DatasetError(f"{where}: duplicate image ids")
    for ann in data["annotations"]:
        ann_id = ann.get("id", "?") if isinstance(ann, dict) else "?"
        try:
            bbox = [float(v) for v in ann["bbox"]]
            image_id, category_id = int(ann["image_id"]), int(ann["category_id"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{where}: annotation {ann_id} needs 'image_id', 'category_id' and 'bbox'") from None
        if len(bbox) != 4:
            raise DatasetError(f"{where}: annotation {ann_id} bbox must be [x, y, w, h], got {ann['bbox']!r}")
        if image_id not in image_ids:
            raise DatasetError(f"{where}: annotation {ann_id} refers to unknown image_id {image_id}")
        if category_id not in category_ids:
            raise DatasetError(f"{where}: annotation {ann_id} refers to unknown category_id {category_id}")
        ann.setdefault("area", max(bbox[2], 0.0) * max(bbox[3], 0.0))
        ann.setdefault("iscrowd", 0)


def _return_free_memory() -> None:
    """Ask glibc's allocator to hand free heap pages back to the OS (``malloc_trim(0)``); no-op elsewhere.

    Parsing an annotation file allocates many small objects; once they are freed their pages stay in the process
    (10× the compact table on a COCO-sized file) until trimmed.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _quiet_coco(data: dict[str, Any]) -> COCO:
    """A pycocotools ``COCO`` index over ``data`` built without its stdout chatter."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(torch.utils.data.Dataset):
    """A COCO detection dataset yielding ``(image, Target, meta)`` with contiguous labels.

    Args:
        images_dir: folder the images' ``file_name`` entries are relative to.
        annotations_file: COCO detection json.
        transforms: ``(image, target, generator) -> (image, target)``; ``None`` keeps the original frame.
        on_bad_image: ``"error"`` raises :class:`~msad.data.images.ImageReadError`; ``"skip"`` logs a warning and,
            in training, returns the next readable image (deterministically) or, in evaluation, returns ``None``
            (the collator drops it, so the image is excluded from the batch).
        train: training (seeded augmentation via a generator) or evaluation (``generator=None``: deterministic).
        label_space: ``[(coco_id, name), …]`` fixing label ``i`` to ``label_space[i]`` (e.g. a training set's
            :attr:`label_space` for its validation set); default: this file's categories sorted by id.
        check_files: check now that every listed image file exists (one ``stat`` per image; missing files are an
            error or, with ``on_bad_image="skip"``, counted on stderr and skipped); ``False`` leaves it to the
            first read of each image (the same :class:`~msad.data.images.ImageReadError` or skip). Under DDP one
            process per node checks (see :func:`msad.build.build_train_dataset`).

    Storage: the annotation file is parsed once into an :class:`~msad.data.coco_table.ImageTable` (numpy arrays:
    ids, sizes, file names, non-crowd boxes and labels); the parsed JSON is then dropped. A training set keeps
    nothing else (no pycocotools object, no per-image Python object), so forked data workers share its memory; an
    evaluation set also keeps the pycocotools ``COCO`` index COCOeval needs (:attr:`coco`).

    Indexing: ``dataset[i]`` or ``dataset[(i, seed)]``; the augmentation generator is
    ``torch.Generator().manual_seed(seed)`` (``seed = i`` when not given), its only source of randomness.

    Attributes:
        class_names: name of each contiguous label.
        category_ids: COCO category id of each label.
        coco: a pycocotools ``COCO`` object over the file (evaluation sets only: ``train=False``).
        image_ids: COCO image id of each index (ascending).
    """

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        annotations_file: str | os.PathLike[str],
        *,
        transforms: TransformFn | None = None,
        on_bad_image: Literal["error", "skip"] = "error",
        on_bad_annotation: Literal["error", "drop"] = "error",
        train: bool,
        label_space: Sequence[tuple[int, str]] | None = None,
        check_files: bool = True,
    ) -> None:
        if on_bad_image not in ("error", "skip"):
            raise ValueError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
        if on_bad_annotation not in ("error", "drop"):
            raise ValueError(f"on_bad_annotation must be 'error' or 'drop', got {on_bad_annotation!r}")
        self.images_dir = Path(images_dir)
        self.annotations_file = Path(annotations_file)
        self.transforms = transforms
        self.on_bad_image = on_bad_image
        self.train = train
        data = load_coco_json(self.annotations_file)
        if not data["images"]:
            raise DatasetError(f"dataset {str(self.annotations_file)!r} contains no images")
        data["annotations"] = _checked_annotations(data["annotations"], on_bad_annotation, self.annotations_file)
        self._file_categories = {int(c["id"]): str(c.get("name", c["id"])) for c in data["categories"]}
        self._set_label_space(label_space)
        self._table = ImageTable.from_coco(data["images"], data["annotations"], self._label_of)
        self._coco: COCO | None = None if train else _quiet_coco(data)
        del data
        _return_free_memory()  # the parsed JSON's pages, now free, go back to the OS instead of staying resident
        self._bad: set[int] = self._missing_images(on_bad_image) if check_files else set()

    @property
    def coco(self) -> COCO:
        """The pycocotools ``COCO`` index of an evaluation set (a training set keeps none)."""
        if self._coco is None:
            raise AttributeError(
                f"the training set {str(self.annotations_file)!r} keeps no pycocotools index; build it with "
                "train=False to evaluate on it"
            )
        return self._coco

    @property
    def image_ids(self) -> list[int]:
        """COCO image id of each index (ascending)."""
        return self._table.image_ids.tolist()

    def image_id(self, index: int) -> int:
        """COCO image id of index ``index``."""
        return int(self._table.image_ids[index])

    def _missing_images(self, on_bad_image: str) -> set[int]:
        """Indices of listed images that are not on disk: refused (``error``) or skipped with a count (``skip``)."""
        missing = [i for i in range(len(self)) if not self.image_path(i).is_file()]
        if not missing:
            return set()
        names = [self._table.file_name(i) for i in missing]
        what = (
            f"{len(missing)} of {len(self)} images listed in {str(self.annotations_file)!r} are missing from "
            f"{str(self.images_dir)!r}: {', '.join(names[:3])}{' …' if len(names) > 3 else ''}"
        )
        if on_bad_image == "error":
            raise DatasetError(what)
        print(f"msad: warning: {what}; skipped (data.on_bad_image = \"skip\")", file=sys.stderr, flush=True)
        return set(missing)

    # ------------------------------------------------------------------ categories
    def _set_label_space(self, label_space: Sequence[tuple[int, str]] | None) -> None:
        if label_space is None:
            label_space = sorted(self._file_categories.items())
        space = [(int(i), str(n)) for i, n in label_space]
        _check_subset(self._file_categories, dict(space), what=f"{str(self.annotations_file)!r}")
        self.category_ids: list[int] = [i for i, _ in space]
        self.class_names: list[str] = [n for _, n in space]
        self._label_of = {cid: label for label, cid in enumerate(self.category_ids)}

    @property
    def label_space(self) -> list[tuple[int, str]]:
        """``[(coco_id, name), …]`` in label order; pass it to another dataset to share labels."""
        return list(zip(self.category_ids, self.class_names, strict=True))

    @property
    def num_classes(self) -> int:
        """Number of contiguous labels."""
        return len(self.category_ids)

    # ------------------------------------------------------------------ annotations
    @property
    def num_boxes(self) -> int:
        """Number of (non-crowd) annotated boxes."""
        return self._table.num_boxes

    def landscape(self) -> np.ndarray:
        """``bool [n]``: image ``i`` is wider than high, by the annotation file's sizes (for aspect-ratio grouping).

        Raises:
            DatasetError: an image has no ``width`` / ``height`` in the file.
        """
        table = self._table
        missing = np.flatnonzero((table.heights < 0) | (table.widths < 0))
        if len(missing):
            raise DatasetError(
                f"{len(missing)} of {len(self)} images in {str(self.annotations_file)!r} have no 'width'/'height' "
                f"(first: {table.file_name(int(missing[0]))!r}); aspect-ratio grouping reads them: add them or set "
                "data.group_aspect_ratio = false"
            )
        return table.widths > table.heights

    def has_trainable_box(self, *, short_size: int, max_size: int, scale: float) -> bool | None:
        """Whether any box keeps both sides above the minimum after resizing to ``short_size`` (long side capped) × ``scale``.

        Stops at the first such box. ``None`` when an image before it lacks its ``height`` and ``width``.
        """
        table = self._table
        for index in np.flatnonzero(np.diff(table.box_offsets)).tolist():
            size = table.size(index)
            if size is None:
                return None
            height, width = size
            boxes = self.target(index, height, width).boxes
            new_h, new_w = resized_shape(height, width, short_size, max_size, scale)
            sides_w = (boxes[:, 2] - boxes[:, 0]) * new_w / width
            sides_h = (boxes[:, 3] - boxes[:, 1]) * new_h / height
            if bool(((sides_w > _MIN_SIDE) & (sides_h > _MIN_SIDE)).any()):
                return True
        return False

    def target(self, index: int, height: int, width: int) -> Target:
        """Ground truth of image ``index`` in its original frame: boxes clipped, degenerate ones dropped."""
        array, labels = self._table.image_boxes(index)
        boxes = torch.tensor(array, dtype=torch.float32).reshape(-1, 4)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = ((boxes[:, 2] - boxes[:, 0]) > _MIN_SIDE) & ((boxes[:, 3] - boxes[:, 1]) > _MIN_SIDE)
        return Target(boxes[keep], torch.tensor(labels, dtype=torch.int64)[keep])

    # ------------------------------------------------------------------ items
    def __len__(self) -> int:
        return len(self._table)

    def __getitem__(self, key: int | tuple[int, int]) -> DatasetItem | None:
        """Item ``key`` (``index`` or ``(index, seed)``); ``None`` only for a skipped image in evaluation."""
        index, seed = (key if isinstance(key, tuple) else (key, key))
        index, seed = int(index), int(seed)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        index %= len(self)
        image, index = self._read(index)
        if image is None:
            return None
        height, width = image.shape[-2:]
        target = self.target(index, height, width)
        if self.transforms is not None:
            generator = torch.Generator().manual_seed(seed) if self.train else None
            image, target = self.transforms(image, target, generator)
        meta = {
            "image_id": self.image_id(index),
            "original_size": (int(height), int(width)),
            "size": (int(image.shape[-2]), int(image.shape[-1])),
        }
        return image, target, meta

    def image_path(self, index: int) -> Path:
        """Path of image ``index`` on disk."""
        return self.images_dir / self._table.file_name(index)

    def _read(self, index: int) -> tuple[Tensor | None, int]:
        """Read image ``index``; in skip mode, fall through to the next readable image (training) or ``None``."""
        candidates = [(index + offset) % len(self) for offset in range(len(self))] if self.train else [index]
        for candidate in candidates:
            if candidate in self._bad:
                continue
            try:
                return read_image(self.image_path(candidate)), candidate
            except ImageReadError as exc:
                if self.on_bad_image == "error":
                    raise
                self._bad.add(candidate)
                logger.warning("skipping image id %s: %s", self.image_id(candidate), exc)
        if not self.train:
            return None, index
        raise DatasetError(f"dataset {str(self.annotations_file)!r}: no readable image in {str(self.images_dir)!r}")

    def __repr__(self) -> str:
        return (
            f"CocoDetection({str(self.annotations_file)!r}, images={len(self)}, classes={self.num_classes}, "
            f"train={self.train})"
        )


def _bad_boxes(annotations: Sequence[dict[str, Any]]) -> np.ndarray:
    """Mask of the COCO ``[x, y, w, h]`` boxes with a NaN or infinite value or a negative width or height."""
    values = np.fromiter((float(v) for ann in annotations for v in ann["bbox"]), dtype=np.float64,
                         count=4 * len(annotations)).reshape(-1, 4)
    return ~np.isfinite(values).all(axis=1) | (values[:, 2] < 0) | (values[:, 3] < 0)


def _checked_annotations(annotations: list[dict[str, Any]], on_bad: str, path: Path) -> list[dict[str, Any]]:
    """``annotations`` without NaN / infinite / negative-size boxes (``drop``, counted on stderr) or an error."""
    mask = _bad_boxes(annotations)
    if not mask.any():
        return annotations
    bad = [annotations[i] for i in np.flatnonzero(mask).tolist()]
    first = bad[0]
    what = (
        f"{len(bad)} of {len(annotations)} annotations in {str(path)!r} have a NaN, infinite or negative-size bbox "
        f"(first: annotation {first.get('id', '?')} of image {first['image_id']}, bbox {first['bbox']})"
    )
    if on_bad == "error":
        raise DatasetError(f"{what}; fix them or set data.on_bad_annotation = \"drop\" to train without them")
    print(f"msad: warning: dropped {what} (data.on_bad_annotation = \"drop\")", file=sys.stderr, flush=True)
    return [ann for ann, dropped in zip(annotations, mask.tolist(), strict=True) if not dropped]


def _check_subset(sub: dict[int, str], full: dict[int, str], *, what: str) -> None:
    """Raise unless every ``id -> name`` of ``sub`` is in ``full`` with the same name."""
    missing = sorted(set(sub) - set(full))
    if missing:
        names = ", ".join(f"{i} ({sub[i]!r})" for i in missing)
        raise DatasetError(f"{what} has categories the label space lacks: {names}")
    renamed = [i for i in sub if sub[i] != full[i]]
    if renamed:
        i = renamed[0]
        raise DatasetError(f"{what}: category id {i} is named {sub[i]!r} but {full[i]!r} in the label space")


def check_category_compat(train_ds: CocoDetection, val_ds: CocoDetection) -> None:
    """Check that ``val_ds`` labels mean what ``train_ds`` labels mean.

    Matching is by COCO category id (order in the files does not matter; a subset is fine). Build the
    validation set with ``label_space=train_ds.label_space`` to share the training labels.

    Raises:
        DatasetError: the validation file has categories the training file lacks, an id is named differently,
            or ``val_ds`` was built with a different label order.
    """
    _check_subset(val_ds._file_categories, dict(train_ds.label_space), what=f"{str(val_ds.annotations_file)!r}")
    if val_ds.category_ids != train_ds.category_ids:
        raise DatasetError(
            f"{str(val_ds.annotations_file)!r} uses a different label order than {str(train_ds.annotations_file)!r}; "
            "build it with label_space=train_dataset.label_space"
        )

