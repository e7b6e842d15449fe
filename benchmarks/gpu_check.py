"""One-GPU check (issue #22): msad's training and inference speed against torchvision's FCOS, in one run.

Prints, each msad figure with its ratio to torchvision's ``fcos_resnet50_fpn(weights=None, weights_backbone=None)``
measured in the same process on the same device (ratio = msad ÷ torchvision: < 1 means msad is faster or smaller):

1. train step time and peak memory at the recipes' per-GPU shapes (baseline 2×800×1088, teacher 1×1024×1280 padded
   to 256, student 4×1024×1280 HR batches), fp32 and bf16; msad's step is :meth:`Trainer.run_step` itself (the lr,
   the batch copy, autocast, losses, backward, clipping, SGD, EMA), steps queued back to back and synchronised once;
2. host synchronisations per step: ``torch.cuda.set_sync_debug_mode`` over one baseline, teacher and student step
   (``warn`` counts them, ``error`` must pass); skipped on the CPU with a note;
3. end-to-end trainer images/s (``msad.api.train`` on generated 640×480 JPEGs, 2 and 4 data workers) against the
   bare step rate on batches of the same loader, and the DataLoader's images/s alone;
4. batch-1 inference latency, fp32 and bf16 (BN folded, as ``msad eval --precision bf16``), for the baseline, the
   teacher (fused branch: both passes) and the student.

Random weights throughout (nothing is downloaded); with them few scores pass the thresholds, so NMS is nearly free
for both detectors.

    bash benchmarks/gpu_check.sh            # one GPU, about 5–10 minutes
    bash benchmarks/gpu_check.sh --smoke    # CPU, tiny sizes, well under a minute
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

from msad import api
from msad.build import build_train_dataset, run_settings, solver_settings
from msad.config import Recipe, load_recipe
from msad.data import build_train_loader
from msad.engine import Trainer
from msad.engine.inference import inference_autocast, inference_model
from msad.engine.metrics import read_metrics
from msad.roles import build_model, get_role
from msad.structures import Batch, Target
from msad.tasks.detection import DetectionTask

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 80
ROLES = ("baseline", "teacher", "student")
#: role → (images per GPU, height, width) of a training batch (the HR batch for the teacher and the student)
TRAIN_SHAPES = {"baseline": (2, 800, 1088), "teacher": (1, 1024, 1280), "student": (4, 1024, 1280)}
SMOKE_TRAIN_SHAPES = {"baseline": (2, 64, 96), "teacher": (1, 128, 128), "student": (2, 128, 128)}
#: role → (height, width) of a batch-1 inference input (800 short side, padded to 32, or to 256 for the two-pass roles)
INFER_SHAPES = {"baseline": (800, 1088), "teacher": (1024, 1280), "student": (1024, 1280)}
SMOKE_INFER_SHAPES = {"baseline": (64, 96), "teacher": (128, 128), "student": (128, 128)}
SMOKE_OVERRIDES = ["model.backbone.width=0.25", "model.neck.out_channels=64", "model.head.num_convs=2"]


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU-sized run of every section (tiny shapes, few steps)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available; cpu with --smoke)")
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "w100.toml"),
                        help="the paper recipe whose model and solver are timed (default w100: the width of torchvision's ResNet-50)")
    parser.add_argument("--iters", type=int, default=None, help="timed steps per row (default 10; 1 with --smoke)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per row first (default 3; 0 with --smoke)")
    parser.add_argument("--images", type=int, default=None, help="generated JPEGs for the end-to-end rows (default 500)")
    parser.add_argument("--e2e-iters", type=int, default=None, help="trainer iterations per end-to-end run (default 250: one pass over 500 images at batch 2)")
    parser.add_argument("--workers", default="2,4", help="data workers of the end-to-end and DataLoader rows")
    parser.add_argument("--out", default=None, help="working folder (default: a temporary one, removed at the end)")
    parser.add_argument("--json", default=None, help="also write every figure here")
    args = parser.parse_args()
    small = args.smoke
    args.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not small else "cpu"))
    args.iters = args.iters or (1 if small else 10)
    args.warmup = args.warmup if args.warmup is not None else (0 if small else 3)
    args.images = args.images or (24 if small else 500)
    args.e2e_iters = args.e2e_iters or (6 if small else 250)
    args.workers = [int(w) for w in args.workers.split(",") if w]
    return args


# ------------------------------------------------------------------------------------------------ measuring
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float:
    """Peak allocated device memory since the last reset, GiB (NaN on the CPU: not tracked)."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan


def _step_time(step: Callable[[int], object], args: argparse.Namespace) -> tuple[float, float]:
    """(seconds per step, peak GiB): ``warmup`` steps, then ``iters`` queued back to back and synchronised once."""
    for i in range(args.warmup):
        step(i)
    _sync(args.device)
    _reset_peak(args.device)
    start = time.perf_counter()
    for i in range(args.iters):
        step(args.warmup + i)
    _sync(args.device)
    return (time.perf_counter() - start) / args.iters, _peak_gib(args.device)


def _latency(run: Callable[[], object], args: argparse.Namespace) -> float:
    """Median seconds of one synchronised call, after ``warmup`` calls."""
    for _ in range(args.warmup):
        run()
    times = []
    for _ in range(max(args.iters, 3)):
        _sync(args.device)
        start = time.perf_counter()
        run()
        _sync(args.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _ratio(a: float, b: float) -> str:
    return "–" if not (math.isfinite(a) and math.isfinite(b)) or b == 0 else f"{a / b:.2f}"


def _gib(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.2f}"


# ------------------------------------------------------------------------------------------------ models
def _recipe(args: argparse.Namespace, *extra: str) -> Recipe:
    overrides = [*(SMOKE_OVERRIDES if args.smoke else []), f'run.device="{args.device.type}"', *extra]
    return load_recipe(args.recipe, overrides=overrides)


def _task(recipe: Recipe, role: str) -> DetectionTask:
    """A role's task with random weights (the student's frozen teacher too), without evaluation."""
    recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"val_annotations": ""})})
    teacher = build_model(recipe, role="teacher", num_classes=NUM_CLASSES)  # read by the student only
    labels = [(i + 1, f"class{i + 1}") for i in range(NUM_CLASSES)]
    return get_role(role).build_task(recipe, label_space=labels, metadata={}, teacher=teacher)


def _trainer(recipe: Recipe, role: str, amp: str, output: Path) -> Trainer:
    """The engine, set up on ``output`` for ``role`` with the recipe's solver at ``amp``."""
    recipe = recipe.model_copy(update={"run": recipe.run.model_copy(update={"output": str(output)})})
    solver = replace(solver_settings(recipe, stage=get_role(role).stage), amp=amp)
    trainer = Trainer(_task(recipe, role), solver=solver, run=run_settings(recipe, stage=get_role(role).stage),
                      make_train_loader=lambda *_: iter(()), echo=lambda _: None)
    trainer.setup()
    return trainer


def _batch(shape: tuple[int, int, int], device: torch.device, boxes: int = 20) -> Batch:
    """Random uint8 images and boxes, as the training loader hands them over (pinned when the device is CUDA)."""
    n, height, width = shape
    g = torch.Generator().manual_seed(0)
    targets = []
    for _ in range(n):
        xy = torch.rand(boxes, 2, generator=g) * torch.tensor([width * 0.8, height * 0.8])
        wh = 8 + torch.rand(boxes, 2, generator=g) * torch.tensor([width * 0.2, height * 0.2])
        targets.append(Target(torch.cat([xy, xy + wh], 1), torch.randint(NUM_CLASSES, (boxes,), generator=g)))
    images = torch.randint(0, 256, (n, 3, height, width), generator=g, dtype=torch.uint8)
    batch = Batch(images=images, image_sizes=[(height, width)] * n, targets=targets,
                  pixel_mean=(123.675, 116.28, 103.53), pixel_std=(58.395, 57.12, 57.375))
    return batch.pin_memory() if device.type == "cuda" else batch


def _torchvision(height: int, width: int, device: torch.device) -> nn.Module:
    model = torchvision.models.detection.fcos_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES, min_size=height, max_size=max(height, width))
    return model.to(device)


def _torchvision_step(model: nn.Module, batch: Batch, amp: str, device: torch.device) -> Callable[[int], None]:
    """torchvision's own training step (its transform normalises; the images are given as floats 0–1)."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

    def step(_: int) -> None:
        images = [img.to(device, non_blocking=True).float().div_(255) for img in batch.images]
        targets = [{"boxes": t.boxes.to(device, non_blocking=True), "labels": t.labels.to(device, non_blocking=True)}
                   for t in batch.targets]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            losses = model.train()(images, targets)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()

    return step


def write_jpeg_coco(root: Path, *, count: int, size: tuple[int, int], seed: int = 0) -> Path:
    """``count`` JPEGs of ``size`` (h, w) in ``root/images`` with 1–4 coloured boxes each, and ``root/train.json``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    height, width = size
    coco: dict = {"images": [], "annotations": [], "categories": [{"id": c, "name": f"class{c}"} for c in (1, 2, 3)]}
    rng = np.random.default_rng(seed)
    for index in range(count):
        # smooth noise (a coarse grid upsampled) so that the JPEGs decode like photographs, not flat colour
        coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        pixels = np.kron(coarse, np.ones((16, 16, 1), dtype=np.uint8))[:height, :width].copy()
        for _ in range(int(rng.integers(1, 5))):
            w, h = (int(v) for v in rng.integers(16, (width // 3, height // 3)))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            pixels[y:y + h, x:x + w] = rng.integers(0, 256, 3, dtype=np.uint8)
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": index + 1, "iscrowd": 0,
                                        "category_id": int(rng.integers(1, 4)), "bbox": [x, y, w, h], "area": w * h})
        name = f"{index:06d}.jpg"
        Image.fromarray(pixels).save(root / "images" / name, format="JPEG", quality=90)
        coco["images"].append({"id": index + 1, "file_name": name, "height": height, "width": width})
    (root / "train.json").write_text(json.dumps(coco), encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------------------ sections
def train_section(args: argparse.Namespace, work: Path, results: dict) -> None:
    shapes = SMOKE_TRAIN_SHAPES if args.smoke else TRAIN_SHAPES
    print("\n## 1. Train step (ratio = msad ÷ torchvision FCOS at the same batch shape and precision)")
    print(f"{'row':<28}{'msad s/step':>12}{'tv s/step':>11}{'msad/tv':>8}{'msad GiB':>10}{'tv GiB':>8}{'msad/tv':>8}")
    recipe = _recipe(args)
    for role in ROLES:
        n, h, w = shapes[role]
        batch = _batch(shapes[role], args.device)
        tv = _torchvision(h, w, args.device)
        for amp in ("off", "bf16"):
            trainer = _trainer(recipe, role, amp, work / f"step_{role}_{amp}")
            msad_s, msad_gib = _guarded(lambda t=trainer, b=batch: _step_time(lambda i: t.run_step(i, b), args))
            if amp == "off":
                results["syncs"][role] = _guarded(lambda t=trainer, b=batch: _host_syncs(args, t, b), default=None)
            del trainer
            tv_s, tv_gib = _guarded(lambda m=tv, b=batch, a=amp: _step_time(_torchvision_step(m, b, a, args.device), args))
            name = f"{role} {n}×{h}×{w} {'bf16' if amp == 'bf16' else 'fp32'}"
            print(f"{name:<28}{msad_s:>12.4f}{tv_s:>11.4f}{_ratio(msad_s, tv_s):>8}"
                  f"{_gib(msad_gib):>10}{_gib(tv_gib):>8}{_ratio(msad_gib, tv_gib):>8}")
            results["train"][name] = {"msad_s": msad_s, "torchvision_s": tv_s, "msad_gib": msad_gib, "torchvision_gib": tv_gib}
        del tv
    print("\n## 2. Host syncs in one fp32 training step (torch.cuda.set_sync_debug_mode)")
    if args.device.type != "cuda":
        print("skipped: set_sync_debug_mode needs CUDA (on the CPU, tests/engine/test_step_syncs.py counts host reads)")
    for role, found in results["syncs"].items():
        if found is not None:
            print(f"{role:<10} {found['count']} syncs counted ('warn'); 'error' mode: {found['error_mode']}")


def _guarded(measure: Callable[[], object], default: object = (math.nan, math.nan)) -> object:
    """``measure()``, or ``default`` when the device ran out of memory (the row is printed as such, the run goes on)."""
    try:
        return measure()
    except torch.cuda.OutOfMemoryError:
        print("   (out of device memory: row left out)")
        torch.cuda.empty_cache()
        return default


def _host_syncs(args: argparse.Namespace, trainer: Trainer, batch: Batch) -> dict | None:
    """Host syncs of one step: counted under ``set_sync_debug_mode("warn")``, then ``"error"`` must let a step pass."""
    if args.device.type != "cuda":
        return None
    _sync(args.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.run_step(10_000, batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    count = sum("synchroniz" in str(w.message) for w in caught)
    outcome = "pass"
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.run_step(10_001, batch)
    except RuntimeError as err:
        outcome = f"FAIL ({str(err).splitlines()[0]})"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    _sync(args.device)
    return {"count": count, "error_mode": outcome}


def e2e_section(args: argparse.Namespace, work: Path, results: dict) -> None:
    print("\n## 3. End-to-end trainer images/s against the bare step, and the DataLoader alone (baseline, fp32)")
    size = (120, 160) if args.smoke else (480, 640)
    data = write_jpeg_coco(work / "jpegs", count=args.images, size=size)
    paths = [f'data.train_images="{data / "images"}"', f'data.train_annotations="{data / "train.json"}"',
             'data.val_annotations=""', "solver.batch_size=2", "solver.warmup_iters=1", "solver.steps=[]",
             f"solver.iters={args.e2e_iters}", f"run.log_period={max(2, args.e2e_iters // 6)}", "run.checkpoint_period=0"]
    if args.smoke:
        paths += ["data.train_sizes=[128]", "data.max_size=160"]
    recipe = _recipe(args, *paths)
    bare = _bare_rate(recipe, args, work)
    print(f"{'bare step (batches preloaded)':<34}{bare:>9.1f} images/s")
    results["e2e"]["bare_images_per_s"] = bare
    for workers in args.workers:
        with_workers = recipe.model_copy(update={"data": recipe.data.model_copy(update={"num_workers": workers})})
        loader = _loader_rate(with_workers, args)
        trained = _trainer_rate(with_workers, work / f"e2e_{workers}")
        print(f"{f'trainer, {workers} workers':<34}{trained:>9.1f} images/s  ({_ratio(trained, bare)} of the bare step)")
        print(f"{f'DataLoader alone, {workers} workers':<34}{loader:>9.1f} images/s")
        results["e2e"][f"workers_{workers}"] = {"trainer_images_per_s": trained, "loader_images_per_s": loader}


def _bare_rate(recipe: Recipe, args: argparse.Namespace, work: Path) -> float:
    """Images/s of ``run_step`` alone, cycling over a few batches of the real loader held in (pinned) memory."""
    loader = _loader(recipe, workers=0)
    batches = [next(loader) for _ in range(4)]
    trainer = _trainer(recipe, "baseline", "off", work / "e2e_bare")
    seconds, _ = _step_time(lambda i: trainer.run_step(i, batches[i % len(batches)]), args)
    return recipe.solver.batch_size / seconds


def _loader(recipe: Recipe, workers: int):
    collate = get_role("baseline").collator(recipe, normalize_on_device=True)
    return build_train_loader(build_train_dataset(recipe), total_batch_size=recipe.solver.batch_size, rank=0,
                              world_size=1, seed=0, num_workers=workers, collate=collate,
                              pin_memory=recipe.run.device == "cuda")


def _loader_rate(recipe: Recipe, args: argparse.Namespace) -> float:
    """Images/s of the training DataLoader alone, after its first batch (worker start-up excluded)."""
    loader = _loader(recipe, recipe.data.num_workers)
    next(loader)
    count = max(8, args.e2e_iters // 2)
    start = time.perf_counter()
    for _ in range(count):
        next(loader)
    return count * recipe.solver.batch_size / (time.perf_counter() - start)


def _trainer_rate(recipe: Recipe, output: Path) -> float:
    """Median logged images/s of ``msad.api.train`` over its log windows after the first (start-up excluded)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        api.train(recipe, output=output)
    rates = [r["images_per_s"] for r in read_metrics(output / "metrics.jsonl") if r["type"] == "train"]
    return statistics.median(rates[1:] or rates)


def infer_section(args: argparse.Namespace, work: Path, results: dict) -> None:
    shapes = SMOKE_INFER_SHAPES if args.smoke else INFER_SHAPES
    print("\n## 4. Batch-1 inference latency (ratio = msad ÷ torchvision FCOS at the baseline's shape, same precision)")
    print(f"{'row':<32}{'fp32 ms':>9}{'msad/tv':>8}{'bf16 ms':>9}{'msad/tv':>8}")
    recipe = _recipe(args)
    h, w = shapes["baseline"]
    tv = _torchvision(h, w, args.device).eval()
    image = [torch.rand(3, h, w, device=args.device)]
    reference = {}
    for precision in ("fp32", "bf16"):
        with torch.no_grad(), inference_autocast(args.device, precision):
            reference[precision] = _latency(lambda m=tv: m(image), args)
    del tv
    print(f"{f'torchvision FCOS {h}×{w}':<32}{reference['fp32'] * 1e3:>9.1f}{'1.00':>8}{reference['bf16'] * 1e3:>9.1f}{'1.00':>8}")
    results["infer"]["torchvision"] = reference
    for role in ROLES:
        task = _task(recipe, role)
        h, w = shapes[role]
        images = torch.randn(1, 3, h, w, device=args.device)
        row = {}
        for precision in ("fp32", "bf16"):
            net = inference_model(task.model.eval(), precision).to(args.device)
            with torch.no_grad(), inference_autocast(args.device, precision):
                row[precision] = _latency(lambda t=task, m=net, x=images, s=(h, w): t.predict(m, x, [s]), args)
        name = f"msad {role}{' (fused)' if role == 'teacher' else ''} {h}×{w}"
        print(f"{name:<32}{row['fp32'] * 1e3:>9.1f}{_ratio(row['fp32'], reference['fp32']):>8}"
              f"{row['bf16'] * 1e3:>9.1f}{_ratio(row['bf16'], reference['bf16']):>8}")
        results["infer"][role] = row


def main() -> None:
    args = _parse()
    sys.stdout.reconfigure(line_buffering=True)  # each row as soon as it is measured, also into a pipe or a log
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # 4 workers on a small CPU: the point
    started = time.perf_counter()
    name = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "CPU"
    print(f"# msad gpu_check{' --smoke' if args.smoke else ''}: {name}, torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, recipe {Path(args.recipe).name}")
    results: dict = {"device": name, "smoke": args.smoke, "train": {}, "syncs": {}, "e2e": {}, "infer": {}}
    with contextlib.ExitStack() as stack:
        work = Path(args.out) if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="msad-gpu-check-")))
        work.mkdir(parents=True, exist_ok=True)
        for section in (train_section, e2e_section, infer_section):
            begun = time.perf_counter()
            section(args, work, results)
            print(f"({time.perf_counter() - begun:.0f} s)")
    results["seconds"] = time.perf_counter() - started
    print(f"\ndone in {results['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
