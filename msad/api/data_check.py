"""``msad data check``: a fast, complete look at a recipe's training and validation data before a long run.

Every image header of both splits is read in parallel (threads: the work is file I/O and PIL's header
parsing), every annotation's box is checked, and what the run will see is counted. Problems are returned, not
raised: the command prints them as one table and exits 1 (see :func:`check_data`).
"""

from __future__ import annotations

import math
import os
import statistics
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msad.config import Recipe
from msad.data import load_coco_json, resized_shape
from msad.data.preflight import PROBLEM_KINDS, ImageCheck, box_clipped, box_problem, inspect_image
from msad.data.synth import coco_size_bin

__all__ = ["DataProblem", "SplitSummary", "DataCheckReport", "check_data"]


@dataclass(frozen=True)
class DataProblem:
    """One problem: ``split`` (``train``/``val``), the image's ``file_name``, its ``kind`` (one of
    :data:`~msad.data.preflight.PROBLEM_KINDS`) and a one-line ``detail``."""

    split: str
    file_name: str
    kind: str
    detail: str


@dataclass
class SplitSummary:
    """What a run will see of one split.

    Attributes:
        images: images listed in the annotation file; ``readable``: of them, without an image problem.
        instances: boxes training uses (not crowd, not bad); ``crowd``: crowd boxes (ignored by training);
            ``clipped``: instances reaching past an image edge by more than 1 px (training clips them).
        classes: categories in the file; ``classes_used``: of them, with at least one instance.
        sizes: instances per COCO size bin (small, medium, large) of their ``area`` at the input size: the short side
            ``input_short`` (long side capped at the recipe's ``max_size``) times ``scale``.
    """

    split: str
    images: int = 0
    readable: int = 0
    instances: int = 0
    crowd: int = 0
    clipped: int = 0
    classes: int = 0
    classes_used: int = 0
    sizes: tuple[int, int, int] = (0, 0, 0)
    input_short: int = 0
    scale: float = 1.0


@dataclass
class DataCheckReport:
    """The result of :func:`check_data`: per-split summaries and every problem found (empty when the data is clean)."""

    splits: list[SplitSummary] = field(default_factory=list)
    problems: list[DataProblem] = field(default_factory=list)
    decoded: bool = False

    @property
    def counts(self) -> dict[str, int]:
        """Problems per kind, in :data:`PROBLEM_KINDS` order (kinds with none left out)."""
        found = Counter(p.kind for p in self.problems)
        return {kind: found[kind] for kind in PROBLEM_KINDS if found[kind]}


def check_data(
    recipe: Recipe, *, workers: int | None = None, decode: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> DataCheckReport:
    """Check every image and annotation of the recipe's training and validation sets.

    Args:
        workers: threads reading headers (default: 4 per CPU, at most 32; file reads wait on the disk).
        decode: decode every image fully, as training does (slower; finds corrupt data inside a file).
        progress: called with ``(files checked, files in all)`` as the check goes.

    Raises:
        DatasetError: an annotation file is missing, is not JSON or is not COCO detection data (one line).
    """
    data = recipe.data
    middle = int(statistics.median_low(data.train_sizes))
    splits = [
        ("train", Path(data.train_images), load_coco_json(data.train_annotations), middle),
        ("val", Path(data.val_images), load_coco_json(data.val_annotations), data.test_size),
    ]
    jobs = [(split, folder / str(img["file_name"])) for split, folder, coco, _ in splits for img in coco["images"]]
    checks = _inspect_all([path for _, path in jobs], workers or min(32, 4 * (os.cpu_count() or 1)), decode, progress)
    report = DataCheckReport(decoded=decode)
    start = 0
    for split, _, coco, short in splits:
        count = len(coco["images"])
        summary, problems = _check_split(split, coco, checks[start:start + count], short, data.max_size, data.scale)
        report.splits.append(summary)
        report.problems.extend(sorted(problems, key=lambda p: PROBLEM_KINDS.index(p.kind)))  # stable: file order kept
        start += count
    return report


def _inspect_all(
    paths: list[Path], workers: int, decode: bool, progress: Callable[[int, int], None] | None
) -> list[ImageCheck]:
    """:func:`inspect_image` of every path in a thread pool, in the order of ``paths``."""
    results: list[ImageCheck] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for check in pool.map(lambda p: inspect_image(p, decode=decode), paths):
            results.append(check)
            if progress is not None and (len(results) % 64 == 0 or len(results) == len(paths)):
                progress(len(results), len(paths))
    return results


def _check_split(
    split: str, coco: dict[str, Any], checks: list[ImageCheck], short: int, max_size: int, scale: float
) -> tuple[SplitSummary, list[DataProblem]]:
    """Problems and summary of one split from its annotation data and its images' checks."""
    problems: list[DataProblem] = []
    frames: dict[int, tuple[str, int | None, int | None, bool]] = {}
    for img, check in zip(coco["images"], checks, strict=True):
        name = str(img["file_name"])
        width, height = _int_or_none(img.get("width")), _int_or_none(img.get("height"))
        if check.kind is not None:
            problems.append(DataProblem(split, name, check.kind, check.detail))
        elif check.size is not None and width is not None and height is not None and check.size != (height, width):
            turned = f" (EXIF orientation {check.orientation})" if check.orientation != 1 else ""
            file_h, file_w = check.size
            problems.append(DataProblem(
                split, name, "wrong size", f"the annotation says {width}×{height}, the image is {file_w}×{file_h}{turned}"
            ))
        if width is None or height is None:  # the file's own size, when the annotation does not give one
            height, width = check.size or (None, None)
        frames[int(img["id"])] = (name, width, height, check.kind is None)
    bins, used, instances, crowd, clipped = [0, 0, 0], set(), 0, 0, 0
    for ann in coco["annotations"]:
        name, width, height, _ = frames[int(ann["image_id"])]
        problem = box_problem(ann["bbox"], width, height)
        if problem:
            problems.append(DataProblem(split, name, "bad box", f"annotation {ann.get('id', '?')}: {problem}"))
        elif ann.get("iscrowd", 0):
            crowd += 1
        else:
            instances += 1
            clipped += box_clipped(ann["bbox"], width, height)
            used.add(int(ann["category_id"]))
            bins[_size_bin(ann, width, height, short, max_size, scale)] += 1
    summary = SplitSummary(
        split, images=len(checks), readable=sum(ok for *_, ok in frames.values()), instances=instances, crowd=crowd,
        clipped=clipped, classes=len(coco["categories"]), classes_used=len(used), sizes=(bins[0], bins[1], bins[2]),
        input_short=short, scale=scale,
    )
    return summary, problems


def _size_bin(ann: dict[str, Any], width: int | None, height: int | None, short: int, max_size: int, scale: float) -> int:
    """0, 1 or 2: small, medium or large (:func:`msad.data.synth.coco_size_bin`) of the annotation's ``area``
    (what COCOeval's APs/APm/APl use; ``w × h`` when absent) once the image is resized for the network."""
    area = float(ann["area"]) if _finite(ann.get("area")) else float(ann["bbox"][2]) * float(ann["bbox"][3])
    if width and height:
        new_h, new_w = resized_shape(height, width, short, max_size, scale)
        area *= (new_w / width) * (new_h / height)
    return coco_size_bin(area)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
