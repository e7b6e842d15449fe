"""Speed benchmark: msad's FCOS against torchvision's ``fcos_resnet50_fpn``, and MSAD's teacher and student.

Everything runs in one process on the same device, input size and batch, with random weights and random
boxes; each figure is the median over ``--iters`` timed iterations after ``--warmup`` untimed ones, the
contenders interleaved (one iteration of each per round).

- train step: forward + losses + backward + SGD step.
- inference: forward + decoding + NMS (``model.eval()``, no grad).

The named baseline is torchvision's FCOS (ResNet-50, trainable BatchNorm as torchvision builds it without
pretrained weights); msad's FCOS uses slimmable ResNet-50 at width 1.0 (the plain ResNet-50 layout), BN,
nothing frozen, P3–P7, 4-conv GN head. Ratios > 1 mean msad is faster.

    python benchmarks/speed.py --device cpu --height 512 --width 672 --batch 2
    python benchmarks/speed.py --device cuda --batch 8 --amp bf16
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from msad.api.flops import paper_recipe
from msad.build import build_distill_loss, build_model
from msad.ops.losses import FCOSCriterion
from msad.ops.postprocess import FCOSPostProcess
from msad.structures import Batch, Target
from msad.tasks.detection import DetectionTask
from msad.tasks.student import StudentTask
from msad.tasks.teacher import TeacherTask

NUM_CLASSES = 80


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1216)
    parser.add_argument("--boxes", type=int, default=20, help="ground-truth boxes per image")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--amp", choices=("off", "bf16"), default="off")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format for both")
    parser.add_argument("--json", default=None, help="also write the results here")
    return parser.parse_args()


def _batch(args: argparse.Namespace, device: torch.device) -> Batch:
    g = torch.Generator().manual_seed(0)
    targets = []
    for _ in range(args.batch):
        xy = torch.rand(args.boxes, 2, generator=g) * torch.tensor([args.width * 0.8, args.height * 0.8])
        wh = 8 + torch.rand(args.boxes, 2, generator=g) * torch.tensor([args.width * 0.2, args.height * 0.2])
        targets.append(Target(torch.cat([xy, xy + wh], 1), torch.randint(NUM_CLASSES, (args.boxes,), generator=g)))
    images = torch.randn(args.batch, 3, args.height, args.width, generator=g)
    return Batch(images=images, image_sizes=[(args.height, args.width)] * args.batch, targets=targets).to(device)


def _time_all(fns: dict[str, Callable[[], None]], args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Median seconds of each function; the timed iterations are interleaved (one of each per round), so that
    drift of the machine (clock, other load) falls on every contender alike."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in fns.values():
        for _ in range(args.warmup):
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(args.iters):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _autocast(args: argparse.Namespace, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp == "bf16")


def _train_step(model: nn.Module, loss_fn: Callable[[], dict], args, device) -> Callable[[], None]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)

    def step() -> None:
        with _autocast(args, device):
            losses = loss_fn()
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()

    return step


def _torchvision(args, device, batch: Batch):
    model = torchvision.models.detection.fcos_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES, min_size=args.height, max_size=max(args.height, args.width),
    ).to(device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    images = list(batch.images)  # torchvision batches these itself (NCHW); its weights carry the format
    targets = [{"boxes": t.boxes, "labels": t.labels} for t in batch.targets]
    train = _train_step(model.train(), lambda: model.train()(images, targets), args, device)

    @torch.no_grad()
    def infer() -> None:
        with _autocast(args, device):
            model.eval()(images)
        model.train()

    return model, train, infer


def _msad(args, device, batch: Batch):
    recipe = paper_recipe()
    recipe = recipe.model_copy(update={"model": recipe.model.model_copy(update={
        "backbone": recipe.model.backbone.model_copy(update={"options": {"width": 1.0, "norm": "bn", "freeze_at": 0}}),
    })})
    crit, post = FCOSCriterion(num_classes=NUM_CLASSES), FCOSPostProcess()
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    baseline = build_model(recipe, role="baseline", num_classes=NUM_CLASSES).to(device, memory_format=fmt)
    teacher = build_model(recipe, role="teacher", num_classes=NUM_CLASSES).to(device, memory_format=fmt)
    student = build_model(recipe, role="student", num_classes=NUM_CLASSES, teacher=teacher).to(device, memory_format=fmt)
    base_task = DetectionTask(model=baseline, criterion=crit, postprocess=post)
    teacher_task = TeacherTask(model=teacher, criterion=crit, postprocess=post)
    frozen_teacher = copy.deepcopy(teacher)  # the student task freezes its teacher; keep the trained one trainable
    student_task = StudentTask(
        model=student, teacher=frozen_teacher, distill_loss=build_distill_loss(recipe), criterion=crit, postprocess=post,
        input_factor=2, ramp_iters=0,
    )
    images = batch.images.contiguous(memory_format=fmt)
    batch = Batch(images=images, image_sizes=batch.image_sizes, targets=batch.targets)
    lr_images = images[:, :, ::2, ::2].contiguous(memory_format=fmt)
    steps = {
        "msad FCOS train step": _train_step(baseline, lambda: base_task.losses(baseline.train(), batch, 0), args, device),
        "msad teacher train step": _train_step(teacher, lambda: teacher_task.losses(teacher.train(), batch, 0), args, device),
        "msad student train step": _train_step(student, lambda: student_task.losses(student.train(), batch, 0), args, device),
    }

    def infer(task: DetectionTask, model: nn.Module, x: torch.Tensor, sizes) -> Callable[[], None]:
        @torch.no_grad()
        def run() -> None:
            with _autocast(args, device):
                task.postprocess(model.eval()(x), task.strides, sizes)
        return run

    hr_sizes = batch.image_sizes
    inference = {
        "msad FCOS inference (HR)": infer(base_task, baseline, images, hr_sizes),
        "msad student inference (LR input)": infer(student_task, student, lr_images, hr_sizes),
    }
    return steps, inference


def main() -> None:
    args = _parse()
    device = torch.device(args.device)
    torch.manual_seed(0)
    batch = _batch(args, device)
    _, tv_train, tv_infer = _torchvision(args, device, batch)
    steps, inference = _msad(args, device, batch)
    fns = {"torchvision FCOS train step": tv_train, "torchvision FCOS inference": tv_infer, **steps, **inference}
    results = _time_all(fns, args, device)
    base_train, base_infer = results["torchvision FCOS train step"], results["torchvision FCOS inference"]
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), torch {torch.__version__}, "
          f"batch {args.batch} × {args.height}×{args.width}, amp {args.amp}, median of {args.iters}")
    print(f"{'':40s} {'s/iter':>9s} {'images/s':>9s} {'speed vs torchvision':>21s}")
    for name, seconds in results.items():
        ref = base_train if "train" in name else base_infer
        print(f"{name:40s} {seconds:9.4f} {args.batch / seconds:9.1f} {ref / seconds:20.2f}x")
    hr, lr = results["msad FCOS inference (HR)"], results["msad student inference (LR input)"]
    print(f"student at LR vs HR model inference: {hr / lr:.2f}x faster")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "seconds": results}, handle, indent=1)


if __name__ == "__main__":
    main()
