"""Predictions on image files: COCO-style JSON and PNGs with the detections drawn.

Baseline and teacher weights see each image resized as in evaluation (``data.test_size``, ``data.max_size``,
``data.scale`` of the checkpoint's recipe) and report boxes in the original image's frame. A student takes
each image as given, as its low-resolution input, and reports boxes in that image's frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from msad.api.weights import Checkpoint, load_model, read_checkpoint
from msad.build import build_eval_collator, build_postprocess
from msad.data import read_image, resized_shape
from msad.data.transforms import resize_image
from msad.engine.distributed import resolve_device
from msad.models.student import to_input_frame
from msad.levels import LevelPairing
from msad.serialization import atomic_write, atomic_write_text
from msad.structures import Detections, Target
from msad.tasks.evaluate import to_original_frame
from msad.visualize import draw_detections

__all__ = ["IMAGE_SUFFIXES", "PredictResult", "find_images", "Predictor", "predict"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class PredictResult:
    """What :func:`predict` wrote.

    Attributes:
        predictions: the JSON file (a list of COCO-style results with ``file_name`` and ``category_name``).
        images: one drawn PNG per input image.
        count: number of detections written.
    """

    predictions: Path
    images: list[Path]
    count: int


def find_images(inputs: list[str | Path]) -> list[Path]:
    """Image files named directly or found (sorted, non-recursively) in the directories given.

    Raises:
        FileNotFoundError: an input does not exist, or nothing to predict on was found.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif item.is_file():
            found.append(item)
        else:
            raise FileNotFoundError(f"no such image or directory: {item}")
    if not found:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return found


class Predictor:
    """Detections for one uint8 RGB image in its own frame, from any msad weights file.

    Args:
        checkpoint: a checked weights file (baseline, teacher or student).
        score_threshold: drop detections scoring below this.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    def __init__(self, checkpoint: Checkpoint, *, score_threshold: float = 0.3, device: str = "auto") -> None:
        self.checkpoint = checkpoint
        self.recipe = checkpoint.recipe
        self.device = resolve_device(device)
        self.model: nn.Module = load_model(checkpoint).to(self.device)
        self.postprocess = build_postprocess(self.recipe)
        self.score_threshold = score_threshold
        self.pairing = LevelPairing(k=self.recipe.teacher.k)
        # a student sees the image as given (its LR input): padded like a single-resolution model's batch
        self.collate = build_eval_collator(self.recipe, "baseline" if checkpoint.role == "student" else checkpoint.role)

    @torch.no_grad()
    def __call__(self, image: Tensor) -> Detections:
        """Detections of ``image`` (uint8 ``[3, H, W]``), boxes in its frame."""
        height, width = image.shape[-2:]
        role, data = self.checkpoint.role, self.recipe.data
        size = (height, width)
        if role != "student":
            size = resized_shape(height, width, data.test_size, data.max_size, data.scale)
            image = resize_image(image, *size) if size != (height, width) else image
        batch = self.collate([(image, Target(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)), {})]).to(self.device)
        if role == "teacher":
            branch = self.recipe.teacher.eval_branch
            outputs = self.model(batch.images, branches=(branch,)).branch(branch)
        else:
            outputs = self.model(batch.images)
        if role == "student":  # the student's boxes come out in the frame k× its input
            k = self.pairing.k
            det = to_input_frame(self.postprocess(outputs, self.model.strides, [(height * k, width * k)]), self.pairing)[0]
        else:
            det = to_original_frame(self.postprocess(outputs, self.model.strides, batch.image_sizes)[0], size, (height, width))
        keep = det.scores >= self.score_threshold
        return Detections(det.boxes[keep].cpu(), det.scores[keep].cpu(), det.labels[keep].cpu())


def predict(
    weights: str | Path, inputs: list[str | Path], output: str | Path, *, score_threshold: float = 0.3,
    device: str = "auto", draw: bool = True,
) -> PredictResult:
    """Run a weights file on images and write ``predictions.json`` and drawn PNGs into ``output``.

    An unreadable image stops the run with a clear error before anything is written.
    """
    files = find_images(inputs)
    predictor = Predictor(read_checkpoint(weights), score_threshold=score_threshold, device=device)
    images = [(path, read_image(path)) for path in files]  # fail on a bad image before writing anything
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    ids, names = zip(*predictor.checkpoint.label_space, strict=True)
    results, drawn, stems = [], [], set()
    for index, (path, image) in enumerate(images):
        det = predictor(image)
        for box, score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist(), strict=True):
            x1, y1, x2, y2 = box
            results.append({
                "image_id": index, "file_name": str(path), "category_id": ids[label], "category_name": names[label],
                "bbox": [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)], "score": round(score, 5),
            })
        if draw:
            stem = path.stem if path.stem not in stems else f"{path.stem}_{index}"
            stems.add(stem)
            target = out / f"{stem}.png"
            picture = draw_detections(image, det, names)
            atomic_write(target, lambda tmp, pic=picture: pic.save(tmp, format="PNG"))
            drawn.append(target)
    predictions = atomic_write_text(out / "predictions.json", json.dumps(results, indent=1))
    return PredictResult(predictions, drawn, len(results))
