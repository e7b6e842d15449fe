"""What MSAD buys, side by side: accuracy, backbone capacity and measured speed of several weights files.

Each weights file is evaluated at the resolution it was trained for (an LR baseline at its ``data.scale``, a
student on the ×1/k copy it computes itself, an HR model at full size), on the validation data of its own recipe
or of ``recipe`` when given; its backbone capacity is the paper's column (backbone multiply-adds relative to
S-R50 width 1.0 at 800×1333, :func:`msad.api.capacity`); its speed is measured on this machine (detector forward,
decoding and NMS on the first validation images, after one warm-up batch).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from msad.api.evaluation import evaluate
from msad.api.flops import capacity
from msad.api.training import build_task
from msad.build import build_val_dataset
from msad.checkpoint import Checkpoint, check_compatible, load_model, read_checkpoint
from msad.config import Recipe
from msad.errors import UsageError
from msad.outputs import check_outputs
from msad.roles import get_role
from msad.serialization import atomic_write_text

__all__ = ["ComparisonRow", "compare", "describe"]


@dataclass(frozen=True)
class ComparisonRow:
    """One weights file in the comparison.

    Attributes:
        name: what it is (e.g. ``MSAD student``).
        weights: the file.
        role: ``baseline``, ``teacher`` or ``student``.
        input: what the network sees (``HR`` / ``LR`` / ``HR+LR``) and its size, e.g. ``LR 128×160``.
        metrics: COCO metrics (0–100; NaN when undefined).
        capacity: backbone multiply-adds relative to S-R50 width 1.0 on the HR image (the paper's column).
        images_per_s: measured inference throughput on this machine (batch ``batch_size``).
        device: where the throughput was measured.
    """

    name: str
    weights: str
    role: str
    input: str
    metrics: dict[str, float]
    capacity: float
    images_per_s: float
    device: str


def describe(ckpt: Checkpoint) -> str:
    """A short name for a checkpoint: ``FCOS baseline, LR`` / ``FCOS baseline, HR`` / ``MSAD teacher`` / ``MSAD student``."""
    return get_role(ckpt.role).describe(ckpt.recipe)


def compare(
    weights: Sequence[str | Path], *, recipe: Recipe | None = None, names: Sequence[str] | None = None,
    timing_images: int = 16, batch_size: int = 4, json_out: str | Path | None = None,
) -> list[ComparisonRow]:
    """Evaluate, size and time each weights file; one :class:`ComparisonRow` each, in order.

    Args:
        weights: the files (any mix of baselines, teachers and students of the same classes).
        recipe: whose validation data to use (default: each checkpoint's own recipe).
        names: row names (default: :func:`describe`).
        timing_images: validation images timed per file (after one warm-up batch).
        batch_size: images per timed batch and per evaluation step.
        json_out: also write the rows here (JSON).
    """
    if names is not None and len(names) != len(weights):
        raise UsageError(f"{len(names)} names for {len(weights)} weights files: give one name per file, or none")
    if timing_images < 1:
        raise UsageError(f"timing_images must be at least 1, got {timing_images}")
    inputs = [("weights file", path) for path in weights]
    check_outputs([("--json", json_out)], inputs=[*inputs, *(recipe.input_files() if recipe is not None else [])])
    checked = [_checked(path, recipe) for path in weights]  # every file is refused, or not, before any evaluation
    rows = []
    for index, (path, (ckpt, run_recipe)) in enumerate(zip(weights, checked, strict=True)):
        metrics = evaluate(run_recipe, path, batch_size=batch_size)["metrics"]
        speed, device, size = _throughput(ckpt, run_recipe, timing_images=timing_images, batch_size=batch_size)
        rows.append(ComparisonRow(
            name=names[index] if names is not None else describe(ckpt), weights=str(path), role=ckpt.role,
            input=_input(ckpt, size), metrics=metrics, capacity=_capacity(ckpt), images_per_s=speed, device=device,
        ))
    if json_out is not None:
        atomic_write_text(json_out, _rows_json(rows))
    return rows


def _checked(path: str | Path, recipe: Recipe | None) -> tuple[Checkpoint, Recipe]:
    """``(checkpoint, the recipe it is evaluated with)``: the file read and checked as far as it can be without
    evaluating it (format, integrity, finite values, its weights fit its architecture, the recipe's width).

    Raises:
        CheckpointError: naming the file.
    """
    ckpt = read_checkpoint(path)
    run_recipe = _recipe_for(ckpt, recipe)
    check_compatible(ckpt, run_recipe)
    load_model(ckpt)
    return ckpt, run_recipe


def _rows_json(rows: list[ComparisonRow]) -> str:
    """The rows as strict JSON (an undefined metric is ``null``)."""
    def clean(value: Any) -> Any:
        return None if isinstance(value, float) and value != value else value

    data = [asdict(r) | {"metrics": {k: clean(v) for k, v in r.metrics.items()}} for r in rows]
    return json.dumps(data, indent=1)


def _recipe_for(ckpt: Checkpoint, recipe: Recipe | None) -> Recipe:
    """The recipe a checkpoint is evaluated with: the given one at the checkpoint's trained ``data.scale``."""
    base = recipe if recipe is not None else ckpt.recipe
    data = base.data.model_copy(update={"scale": ckpt.recipe.data.scale})
    return base.model_copy(update={"data": data})


def _capacity(ckpt: Checkpoint) -> float:
    """The paper's capacity column for this checkpoint's backbone, width and input."""
    row = capacity(ckpt.recipe, num_classes=len(ckpt.label_space)).rows[0]
    return get_role(ckpt.role).capacity(row, ckpt.recipe)


def _input(ckpt: Checkpoint, hr_size: tuple[int, int]) -> str:
    """What the network sees, with its size (the first validation image)."""
    return get_role(ckpt.role).input_label(ckpt.recipe, hr_size)


@torch.no_grad()
def _throughput(ckpt: Checkpoint, recipe: Recipe, *, timing_images: int, batch_size: int) -> tuple[float, str, tuple[int, int]]:
    """``(images/s, device, (h, w) of the first image)``: inference on the first validation images."""
    device = torch.device("cuda" if recipe.run.device != "cpu" and torch.cuda.is_available() else "cpu")
    model = load_model(ckpt).to(device).eval()
    task = build_task(recipe, ckpt.role, label_space=ckpt.label_space, model=model, val_batch_size=batch_size)
    dataset = build_val_dataset(recipe, label_space=ckpt.label_space)
    if len(dataset) == 0:
        raise UsageError(f"{recipe.data.val_annotations}: no validation images to time {ckpt.path} on")
    collate = get_role(ckpt.role).collator(recipe)
    items = [dataset[i % len(dataset)] for i in range(timing_images + batch_size)]
    batches = [collate(items[i:i + batch_size]) for i in range(0, len(items), batch_size)]
    warmup, timed = batches[0], batches[1:]
    task.predict(model, warmup.images, warmup.image_sizes)
    _sync(device)
    start = time.perf_counter()
    for batch in timed:
        task.predict(model, batch.images, batch.image_sizes)
    _sync(device)
    seconds = time.perf_counter() - start
    return sum(len(b.image_sizes) for b in timed) / seconds, str(device), tuple(items[0][0].shape[-2:])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
