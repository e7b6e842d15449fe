"""Predictions on image files: a COCO results file and PNGs with the detections drawn.

Images are streamed through a data loader in batches (each image padded on its own, as in evaluation, so the
detections never depend on batch mates). ``input_scale`` says what an image file is:

- ``hr`` (the default, and always for baseline and teacher weights): resized as in evaluation (``data.test_size``,
  ``data.max_size``, ``data.scale`` of the checkpoint's recipe); a student then sees the nearest ×1/k copy, as
  ``msad eval`` shows it the validation images — so every kind of weights answers on the same photo alike.
- ``lr`` (students only): the image is the student's low-resolution input, used as given.

``score_threshold`` decides which detections are kept (in ``predictions.json`` and drawn); ``draw_threshold``
(default: the same) only hides the lower-scoring ones from the drawings, and ``labels=False`` draws boxes
without their class name and score.

Boxes are reported in each image file's frame. ``predictions.json`` is a COCO results list (``image_id``,
``category_id``, ``bbox`` as x, y, w, h, ``score``, plus ``file_name`` and ``category_name``); with
``annotations`` the ids are the dataset's, so ``COCO.loadRes`` accepts it.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from msad import file_formats
from msad.api.prediction_files import (
    IMAGE_SUFFIXES,
    PREDICTIONS,
    STAGING_PREFIX,
    check_output_dir,
    coco_ids,
    drawing_names,
    find_images,
    relative_names,
    search_images,
)
from msad.build import build_postprocess
from msad.checkpoint import Checkpoint, load_model, read_checkpoint
from msad.data import read_image, resized_shape
from msad.data.transforms import resize_image
from msad.engine.distributed import resolve_device
from msad.engine.inference import inference_autocast, inference_model
from msad.errors import MsadError, UsageError
from msad.roles import get_role
from msad.serialization import atomic_write_text
from msad.structures import Detections, Target
from msad.tasks.evaluation_loop import to_original_frame, unpadded_groups
from msad.visualize import draw_detections

__all__ = ["IMAGE_SUFFIXES", "INPUT_SCALES", "PredictResult", "find_images", "Predictor", "predict"]

#: What an image file is to :class:`Predictor`: an HR image (resized as in evaluation) or a student's LR input.
INPUT_SCALES = ("hr", "lr")


@dataclass
class PredictResult:
    """What :func:`predict` wrote.

    Attributes:
        predictions: the COCO results file (with ``file_name`` and ``category_name`` besides the COCO keys).
        images: the drawn PNG of each input image (empty with ``draw=False``).
        count: number of detections written.
        num_images: number of images predicted on.
        input_scale: what the images were to the model: ``hr`` (resized as in evaluation) or ``lr`` (a
            student's LR input, as given).
        skipped: files found in the input folders or patterns that are not images (not read).
    """

    predictions: Path
    images: list[Path]
    count: int
    num_images: int = 0
    input_scale: str = "hr"
    skipped: list[Path] = field(default_factory=list)


class Predictor:
    """Detections of uint8 RGB images in their own frames, from any msad weights file.

    Args:
        checkpoint: a checked weights file (baseline, teacher or student).
        score_threshold: drop detections scoring below this.
        device: ``auto``, ``cpu`` or ``cuda``.
        precision: ``fp32``, or ``bf16`` (autocast, batch norm folded into the convolutions).
        input_scale: ``hr`` (default) or ``lr`` (see the module docstring).

    Raises:
        UsageError: ``input_scale`` is unknown, or ``lr`` for weights other than a student's.
    """

    def __init__(
        self, checkpoint: Checkpoint, *, score_threshold: float = 0.3, device: str = "auto", precision: str = "fp32",
        input_scale: str | None = None,
    ) -> None:
        role = get_role(checkpoint.role)
        input_scale = input_scale or "hr"
        if input_scale not in INPUT_SCALES:
            raise UsageError(f"--input-scale must be hr or lr, got {input_scale!r}")
        if input_scale not in role.frames:
            raise UsageError(f"--input-scale {input_scale} applies to student weights; {checkpoint.path} holds a {role} "
                             f"(it takes {' or '.join(f.upper() for f in role.frames)} images)")
        self.checkpoint = checkpoint
        self.role = role
        self.recipe = checkpoint.recipe
        self.input_scale = input_scale
        self.device = resolve_device(device)
        self.precision = precision
        network = role.inference_network(load_model(checkpoint), role.branch(self.recipe))
        self.model: nn.Module = inference_model(network, precision).to(self.device)
        self.postprocess = build_postprocess(self.recipe)
        self.score_threshold = score_threshold
        self.collate = role.collator(self.recipe, input_scale)  # padded as the role's evaluation pads this frame

    @property
    def label_space(self) -> list[tuple[int, str]]:
        """``[(coco_id, name), …]`` in label order."""
        return self.checkpoint.label_space

    def __call__(self, image: Tensor) -> Detections:
        """Detections of ``image`` (uint8 ``[3, H, W]``), boxes in its frame."""
        return self.batch([image])[0]

    @torch.no_grad()
    def batch(self, images: list[Tensor]) -> list[Detections]:
        """Detections of each image (uint8 ``[3, H, W]``), boxes in its frame; each image is padded on its own."""
        data = self.recipe.data
        originals = [tuple(image.shape[-2:]) for image in images]
        if self.input_scale == "hr":
            sizes = [resized_shape(h, w, data.test_size, data.max_size, data.scale) for h, w in originals]
            images = [resize_image(im, *size) if size != orig else im for im, size, orig in zip(images, sizes, originals, strict=True)]
        empty = Target(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
        batch = self.collate([(image, empty, {}) for image in images])
        found: list[Detections | None] = [None] * len(images)
        for indices, group in unpadded_groups(batch.images, batch.image_sizes, self.collate.size_divisibility):
            sizes = [batch.image_sizes[i] for i in indices]
            for i, det in zip(indices, self._detect(group.to(self.device), sizes), strict=True):
                found[i] = det
        out = []
        for det, size, original in zip(found, batch.image_sizes, originals, strict=True):
            det = to_original_frame(det, size, original)
            keep = det.scores >= self.score_threshold
            out.append(Detections(det.boxes[keep].cpu(), det.scores[keep].cpu(), det.labels[keep].cpu()))
        return out

    def _detect(self, images: Tensor, sizes: list[tuple[int, int]]) -> list[Detections]:
        """Detections of a padded batch, boxes in the frame of ``images``."""
        role, frame = self.role, self.input_scale
        with inference_autocast(self.device, self.precision):
            outputs = self.model(role.network_input(images, self.recipe, frame))
        f = role.output_factor(self.recipe, frame)  # boxes come out in the frame f× the images'
        found = self.postprocess(outputs, self.model.strides, [(h * f, w * f) for h, w in sizes])
        return found if f == 1 else [d.scaled(1 / f, 1 / f) for d in found]


class _ImageFiles(Dataset):
    """Decoded image files; a file that cannot be read gives its error (picklable) instead of an image."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, Tensor | None, Exception | None]:
        try:
            return index, read_image(self.files[index]), None
        except (MsadError, OSError) as err:  # raised by the main process, not wrapped by a worker's traceback
            return index, None, err


def predict(
    weights: str | Path, inputs: list[str | Path], output: str | Path, *, score_threshold: float = 0.3,
    device: str = "auto", draw: bool = True, precision: str = "fp32", runtime: str = "auto",
    annotations: str | Path | None = None, input_scale: str | None = None, batch_size: int = 1,
    num_workers: int = 0, force: bool = False, progress: Callable[[int, int], None] | None = None,
    draw_threshold: float | None = None, labels: bool = True, trust_pt2: bool = False,
) -> PredictResult:
    """Run weights on images; write ``predictions.json`` (COCO results) and drawn PNGs into ``output``.

    ``runtime``: ``torch`` (msad weights), ``onnx`` or ``torch.export`` (a file from ``msad export``), or ``auto``
    (by the file's content; by its suffix when the content is not one msad knows). ``inputs`` are files, folders
    (searched recursively, ``output`` excepted) or glob patterns. Drawings mirror each image's path relative to the
    folder that holds all inputs.

    Args:
        annotations: a COCO annotation file whose image ids (matched by ``file_name``) and category ids
            (matched by name) the results use; without it ``image_id`` is the image's position in the inputs.
        input_scale: ``hr`` (default) or ``lr``, see the module docstring.
        batch_size: images per forward pass (each still padded on its own).
        num_workers: processes decoding images.
        force: write into a directory that holds other files (inputs are never overwritten).
        progress: called with ``(images done, total)`` after each batch.
        draw_threshold: detections scoring below it are kept in ``predictions.json`` but not drawn (default:
            ``score_threshold``).
        labels: draw each box's class name and score.
        trust_pt2: run a ``.pt2`` archive although loading one can run code it holds (refused without it;
            ``.onnx`` files and safetensors weights are data).

    Nothing is left in ``output`` when the run fails (an unreadable image included): drawings are staged
    and moved into place, with ``predictions.json``, only at the end.

    Raises:
        UsageError: the output would overwrite an input, or options conflict.
        RunStateError: ``output`` holds files this command would not write (without ``force``).
        DataError: an image cannot be read, or an image/class is not in ``annotations``.
    """
    out = Path(output)
    found = search_images(inputs, exclude=out)
    files = found.images
    relative = relative_names(files)
    ours = drawing_names(relative)  # an earlier run's drawings of these images are not foreign, drawn or not now
    drawings = ours if draw else []
    check_output_dir(
        out, files, [PurePosixPath(PREDICTIONS), *ours], force=force,
        inputs=[("--weights", weights), ("--annotations", annotations)],
    )
    predictor = _predictor(
        weights, runtime, score_threshold=score_threshold, device=device, precision=precision, input_scale=input_scale,
        trust_pt2=trust_pt2,
    )
    label_ids, names = (list(x) for x in zip(*predictor.label_space, strict=True))
    image_ids = list(range(len(files)))
    if annotations is not None:
        image_ids, label_ids = coco_ids(annotations, relative, names)
    created = not out.exists()
    staging = out / f"{STAGING_PREFIX}{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir(parents=True)
        look = _Drawing(names, score_threshold if draw_threshold is None else draw_threshold, labels)
        results = _run(predictor, files, drawings, staging, image_ids, label_ids, names, look,
                       batch_size=batch_size, num_workers=num_workers, progress=progress)
        drawn = []
        for name in drawings:
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            (staging / name).replace(target)
            drawn.append(target)
        predictions = atomic_write_text(out / PREDICTIONS, json.dumps(results, indent=1))
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    scale = getattr(predictor, "input_scale", None) or predictor.spec.input_frame
    return PredictResult(predictions, drawn, len(results), len(files), scale, found.skipped)


@dataclass
class _Drawing:
    """How detections are drawn: class names, the score below which a box is not drawn, whether labels are."""

    names: list[str]
    threshold: float
    labels: bool

    def draw(self, image: Tensor, det: Detections):
        """``image`` with the detections scoring at least ``threshold`` drawn (a PIL image)."""
        keep = det.scores >= self.threshold
        shown = Detections(det.boxes[keep], det.scores[keep], det.labels[keep])
        return draw_detections(image, shown, self.names, labels=self.labels)


def _run(
    predictor: Callable[[Tensor], Detections], files: list[Path], drawings: list[PurePosixPath], staging: Path,
    image_ids: list[int], label_ids: list[int], names: list[str], look: _Drawing, *, batch_size: int, num_workers: int,
    progress: Callable[[int, int], None] | None,
) -> list[dict]:
    """Detect on every file, batch by batch; draw into ``staging``; return the COCO results."""
    loader = DataLoader(_ImageFiles(files), batch_size=batch_size, num_workers=num_workers, collate_fn=list)
    detect = getattr(predictor, "batch", None) or (lambda images: [predictor(image) for image in images])
    results: list[dict] = []
    done = 0
    if progress is not None:
        progress(0, len(files))  # the loop starts now (the model is loaded): the rate counts from here
    for items in loader:
        for _, _, error in items:
            if error is not None:
                raise error
        detections = detect([image for _, image, _ in items])
        for (index, image, _), det in zip(items, detections, strict=True):
            for box, score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist(), strict=True):
                x1, y1, x2, y2 = box
                results.append({
                    "image_id": image_ids[index], "category_id": label_ids[label],
                    "bbox": [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)], "score": round(score, 5),
                    "file_name": str(files[index]), "category_name": names[label],
                })
            if drawings:
                target = staging / drawings[index]
                target.parent.mkdir(parents=True, exist_ok=True)
                look.draw(image, det).save(target, format="PNG")
        done += len(items)
        if progress is not None:
            progress(done, len(files))
    return results

#: ``--runtime`` choices of :func:`predict`.
RUNTIME_CHOICES = ("auto", "torch", "onnx", "torch.export")


def _predictor(
    weights: str | Path, runtime: str, *, score_threshold: float, device: str, precision: str,
    input_scale: str | None = None, trust_pt2: bool = False,
):
    """A :class:`Predictor` for msad weights, or an :class:`~msad.export.ExportedDetector` for an exported file."""
    if runtime not in RUNTIME_CHOICES:
        raise UsageError(f"--runtime must be one of {', '.join(RUNTIME_CHOICES)}, got {runtime!r}")
    exported = _exported_runtime(weights)
    if runtime == "auto":
        runtime = exported or "torch"
    if runtime == "torch":
        return Predictor(
            read_checkpoint(weights), score_threshold=score_threshold, device=device, precision=precision, input_scale=input_scale
        )
    if input_scale is not None:
        raise UsageError("--input-scale applies to msad weights; an exported file runs as it was exported")
    if exported != runtime:
        raise UsageError(f"--runtime {runtime} runs a {'.onnx' if runtime == 'onnx' else '.pt2'} file from `msad export`, got {weights}")
    if precision != "fp32":
        raise UsageError(f"--precision {precision} applies to msad weights; an exported file runs as it was exported (fp32)")
    from msad.export import ExportedDetector

    return ExportedDetector(weights, score_threshold=score_threshold, device=device, trust_pt2=trust_pt2)


def _exported_runtime(weights: str | Path) -> str | None:
    """The runtime of an exported file (``onnx`` / ``torch.export``) told by its content, or by its suffix when the
    content is not one msad knows; ``None`` for msad weights."""
    kind = file_formats.sniff(weights)
    if kind is not None:
        return {file_formats.ONNX: "onnx", file_formats.PT2: "torch.export"}.get(kind)
    return {".onnx": "onnx", ".pt2": "torch.export"}.get(Path(weights).suffix)
