"""Speed benchmark: msad's FCOS against torchvision's ``fcos_resnet50_fpn``, and MSAD's teacher and student.

Everything runs in one process on the same device, input size and batch, with random weights and random
boxes; each figure is the median over ``--iters`` timed iterations after ``--warmup`` untimed ones, the
contenders interleaved (one iteration of each per round).

- train step (``--mode train``): forward + losses + backward + SGD step.
- inference (``--mode infer``): forward + decoding + NMS (``model.eval()``, no grad), for each of ``--variants``:
  ``fp32`` eager, ``bf16`` autocast (msad: batch norm folded, as ``msad eval --precision bf16``; torchvision under
  the same autocast), ``fold`` (msad fp32 with BN folded), ``channels_last``, ``compile`` (``torch.compile``) and
  ``onnx`` (msad's exported graph in ONNX Runtime, decoded by msad).

Every inference row also gives its achieved GFLOP/s (2 × the multiply-adds counted by :func:`msad.macs.count_macs`,
i.e. ``msad flops``' count, per second) as a fraction of one large 3×3 convolution's GFLOP/s measured in the
same run, precision and layout: the practical limit of the device.

The named baseline is torchvision's FCOS (ResNet-50, trainable BatchNorm as torchvision builds it without
pretrained weights); msad's FCOS uses slimmable ResNet-50 at width 1.0 (the plain ResNet-50 layout), BN,
nothing frozen, P3–P7, 4-conv GN head. Ratios > 1 mean msad is faster.

    python benchmarks/speed.py --device cpu --height 512 --width 672 --batch 2
    python benchmarks/speed.py --device cpu --mode infer --variants fp32,bf16,fold,channels_last,onnx
    python benchmarks/speed.py --device cuda --batch 8 --amp bf16
    python benchmarks/speed.py --mode data --iters 200    # the data path (benchmarks/data_speed.py)
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
from msad.build import build_distill_loss
from msad.engine.inference import inference_model
from msad.macs import count_macs
from msad.ops.losses import FCOSCriterion
from msad.ops.postprocess import FCOSPostProcess
from msad.roles import build_model
from msad.structures import Batch, Target
from msad.tasks.detection import DetectionTask
from msad.tasks.student import StudentTask
from msad.tasks.teacher import TeacherTask

VARIANTS = ("fp32", "bf16", "fold", "channels_last", "compile", "onnx")
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
    parser.add_argument("--mode", choices=("all", "train", "infer", "loss", "data"), default="all",
                        help="loss: the teacher's three branch losses alone (targets once vs per branch), forward only; "
                             "data: msad's training item vs torchvision's decode + resize, and loader images/s (CPU)")
    parser.add_argument("--images", type=int, default=64, help="data mode: generated 640×480 JPEGs")
    parser.add_argument("--workers", default="0,1,2,4", help="data mode: DataLoader worker counts, comma-separated")
    parser.add_argument("--only", default="", help="train mode: comma-separated substrings of the rows to run (e.g. teacher,student)")
    parser.add_argument("--variants", default="fp32", help=f"inference variants, comma-separated among {','.join(VARIANTS)}")
    parser.add_argument("--amp", choices=("off", "bf16"), default="off", help="train steps: autocast")
    parser.add_argument("--channels-last", action="store_true", help="train steps: channels_last memory format for both")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {VARIANTS}")
    return args


def _batch(args: argparse.Namespace, device: torch.device) -> Batch:
    g = torch.Generator().manual_seed(0)
    targets = []
    for _ in range(args.batch):
        xy = torch.rand(args.boxes, 2, generator=g) * torch.tensor([args.width * 0.8, args.height * 0.8])
        wh = 8 + torch.rand(args.boxes, 2, generator=g) * torch.tensor([args.width * 0.2, args.height * 0.2])
        targets.append(Target(torch.cat([xy, xy + wh], 1), torch.randint(NUM_CLASSES, (args.boxes,), generator=g)))
    images = torch.randn(args.batch, 3, args.height, args.width, generator=g)
    return Batch(images=images, image_sizes=[(args.height, args.width)] * args.batch, targets=targets).to(device)


def _time_all(
    fns: dict[str, Callable[[], None]], args: argparse.Namespace, device: torch.device, stat=statistics.median
) -> dict[str, float]:
    """Median (or ``stat``) seconds of each function; the timed iterations are interleaved (one of each per round), so that
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
    return {name: stat(values) for name, values in times.items()}


def _autocast(enabled: bool, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def _train_step(model: nn.Module, loss_fn: Callable[[], dict], args, device) -> Callable[[], None]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)

    def step() -> None:
        with _autocast(args.amp == "bf16", device):
            losses = loss_fn()
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()

    return step


def _format(args) -> torch.memory_format:
    return torch.channels_last if args.channels_last else torch.contiguous_format


def _torchvision_model(args, device) -> nn.Module:
    return torchvision.models.detection.fcos_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES, min_size=args.height, max_size=max(args.height, args.width),
    ).to(device)


def _torchvision_train(args, device, batch: Batch) -> Callable[[], None]:
    model = _torchvision_model(args, device).to(memory_format=_format(args))
    images = list(batch.images)  # torchvision batches these itself (NCHW); its weights carry the format
    targets = [{"boxes": t.boxes, "labels": t.labels} for t in batch.targets]
    return _train_step(model.train(), lambda: model.train()(images, targets), args, device)


def _msad_recipe():
    recipe = paper_recipe()
    return recipe.model_copy(update={"model": recipe.model.model_copy(update={
        "backbone": recipe.model.backbone.model_copy(update={"options": {"width": 1.0, "norm": "bn", "freeze_at": 0}}),
    })})


class _PerBranchTargets(TeacherTask):
    """The teacher's losses as before issue #12: FCOS targets assigned again for each of the three branches."""

    def losses(self, model: nn.Module, batch: Batch, iteration: int) -> dict:
        out = model(batch.images)
        return {name: weight * value for branch, weight in self.branch_weights.items()
                for name, value in self.detection_losses(out.branch(branch), batch, f"{branch}_").items()}


def _msad_train(args, device, batch: Batch) -> dict[str, Callable[[], None]]:
    recipe = _msad_recipe()
    crit, post = FCOSCriterion(num_classes=NUM_CLASSES), FCOSPostProcess()
    fmt = _format(args)
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
    batch = Batch(images=batch.images.contiguous(memory_format=fmt), image_sizes=batch.image_sizes, targets=batch.targets)
    per_branch = _PerBranchTargets(model=teacher, criterion=crit, postprocess=post)
    return {
        "msad FCOS train step": _train_step(baseline, lambda: base_task.losses(baseline.train(), batch, 0), args, device),
        "msad teacher train step": _train_step(teacher, lambda: teacher_task.losses(teacher.train(), batch, 0), args, device),
        "msad teacher train step, targets per branch": _train_step(
            teacher, lambda: per_branch.losses(teacher.train(), batch, 0), args, device
        ),
        "msad student train step": _train_step(student, lambda: student_task.losses(student.train(), batch, 0), args, device),
    }


# ---------------------------------------------------------------------------------------------- inference
def _layout(variant: str) -> torch.memory_format:
    return torch.channels_last if variant == "channels_last" else torch.contiguous_format


def _torchvision_infer(args, device, images: torch.Tensor, variant: str) -> Callable[[], None] | None:
    if variant in ("fold", "onnx"):
        return None  # torchvision has no folded path here; its detection model is not exported to ONNX here
    model = _torchvision_model(args, device).eval().to(memory_format=_layout(variant))
    if variant == "compile":
        model.backbone = torch.compile(model.backbone)
        model.head = torch.compile(model.head)
    batch = list(images)

    @torch.no_grad()
    def run() -> None:
        with _autocast(variant == "bf16", device):
            model(batch)

    return run


def _msad_infer(args, device, model: nn.Module, x: torch.Tensor, strides, sizes, variant: str, spec=None) -> Callable[[], None]:
    post = FCOSPostProcess()
    if variant == "onnx":
        return _onnx_infer(model, spec, x, sizes)
    net = inference_model(model, "bf16" if variant in ("bf16", "fold") else "fp32").to(device, memory_format=_layout(variant))
    x = x.contiguous(memory_format=_layout(variant))
    if variant == "compile":
        net = torch.compile(net)

    @torch.no_grad()
    def run() -> None:
        with _autocast(variant == "bf16", device):
            post(net(x), strides, sizes)

    return run


def _onnx_infer(model: nn.Module, spec, x: torch.Tensor, sizes) -> Callable[[], None]:
    """msad's exported graph in ONNX Runtime + decoding; the input is taken back to 0–255 pixels."""
    import tempfile
    from pathlib import Path

    from msad.export.decode import decode_detections
    from msad.export.deploy import DeployModel, split_outputs
    from msad.export.onnx import OnnxBackend, export_onnx
    from msad.export.program import trace
    from msad.models.fold import fold_batchnorm

    path = Path(tempfile.mkdtemp()) / "model.onnx"
    export_onnx(trace(DeployModel(fold_batchnorm(model.cpu()), spec), spec), spec, path)
    backend = OnnxBackend(path, threads=torch.get_num_threads())
    pixels = (x.cpu() * torch.tensor(spec.pixel_std).view(1, 3, 1, 1) + torch.tensor(spec.pixel_mean).view(1, 3, 1, 1)).contiguous()
    input_sizes = [(round(h * spec.box_scale), round(w * spec.box_scale)) for h, w in sizes]

    def run() -> None:
        decode_detections(split_outputs(backend(pixels), spec.levels), spec, input_sizes)

    return run


def _deploy_spec(role: str, recipe, input_frame: str):
    from msad.checkpoint import Checkpoint
    from msad.export.deploy import deploy_spec

    labels = [(i, str(i)) for i in range(NUM_CLASSES)]
    return deploy_spec(Checkpoint(None, {}, role, recipe, labels, {}), input_frame=input_frame)  # type: ignore[arg-type]


def _inference_rows(args, device, batch: Batch) -> tuple[dict[str, Callable[[], None]], dict[str, float]]:
    """Inference callables per row name, and multiply-adds per row name (one forward of the batch)."""
    recipe = _msad_recipe()
    torch.manual_seed(0)
    baseline = build_model(recipe, role="baseline", num_classes=NUM_CLASSES).to(device).eval()
    teacher = build_model(recipe, role="teacher", num_classes=NUM_CLASSES)
    student = build_model(recipe, role="student", num_classes=NUM_CLASSES, teacher=teacher).to(device).eval()
    hr, lr = batch.images, batch.images[:, :, ::2, ::2].contiguous()
    sizes = batch.image_sizes
    macs = {
        "torchvision FCOS": _macs(_torchvision_model(args, "cpu").eval(), hr, torchvision_head=True),
        "msad FCOS (HR)": _macs(baseline, hr),
        "msad student (LR input)": _macs(student, lr),
    }
    rows: dict[str, Callable[[], None]] = {}
    row_macs: dict[str, float] = {}
    for variant in args.variants:
        candidates = {
            "torchvision FCOS": _torchvision_infer(args, device, hr, variant),
            "msad FCOS (HR)": _msad_infer(args, device, baseline, hr, baseline.strides, sizes, variant,
                                          _deploy_spec("baseline", recipe, "hr") if variant == "onnx" else None),
            "msad student (LR input)": _msad_infer(args, device, student, lr, student.strides, sizes, variant,
                                                   _deploy_spec("student", recipe, "lr") if variant == "onnx" else None),
        }
        for name, fn in candidates.items():
            if fn is not None:
                rows[f"{name} inference [{variant}]"] = fn
                row_macs[f"{name} inference [{variant}]"] = macs[name]
    return rows, row_macs


def _macs(model: nn.Module, images: torch.Tensor, *, torchvision_head: bool = False) -> float:
    """Multiply-adds of one forward (backbone, neck and head; batch norm folded), counted on the meta device."""
    meta = copy.deepcopy(model).to("meta").eval()
    x = torch.empty(images.shape, device="meta")
    if torchvision_head:
        return count_macs(lambda t: meta.head(list(meta.backbone(t).values())), x, fold_bn=True).total
    return count_macs(meta, x, fold_bn=True).total


def _conv_reference(args, device, variant: str) -> float:
    """GFLOP/s of one large 3×3 convolution (256 → 256 channels at stride 4 of the input) in ``variant``'s precision."""
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).to(device).eval()
    x = torch.randn(args.batch, 256, args.height // 4, args.width // 4, device=device)
    fmt = _layout(variant)
    conv, x = conv.to(memory_format=fmt), x.contiguous(memory_format=fmt)
    flops = 2 * 256 * 256 * 9 * x.shape[0] * x.shape[2] * x.shape[3]

    @torch.no_grad()
    def run() -> None:
        with _autocast(variant == "bf16", device):
            conv(x)

    seconds = _time_all({"conv": run}, args, device)["conv"]
    return flops / seconds / 1e9


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    args = _parse()
    device = torch.device(args.device)
    torch.manual_seed(0)
    batch = _batch(args, device)
    header = (f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, batch {args.batch} × {args.height}×{args.width}, median of {args.iters}")
    print(header)
    report: dict = {"args": vars(args)}
    if args.mode in ("all", "train"):
        report["train"] = _run_train(args, device, batch)
    if args.mode in ("all", "infer"):
        report["inference"] = _run_infer(args, device, batch)
    if args.mode == "loss":
        report["loss"] = _run_loss(args, device, batch)
    if args.mode == "data":
        from data_speed import run  # beside this script

        report["data"] = run(args.images, args.iters, [int(w) for w in args.workers.split(",")], batches=args.iters // 4)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)


def _run_train(args, device, batch: Batch) -> dict[str, float]:
    only = [s for s in args.only.split(",") if s]
    fns = {"torchvision FCOS train step": _torchvision_train(args, device, batch), **_msad_train(args, device, batch)}
    fns = {k: v for k, v in fns.items() if not only or any(s in k for s in only)}
    results = _time_all(fns, args, device)
    base = results.get("torchvision FCOS train step")
    print(f"\ntrain steps (amp {args.amp}{', channels_last' if args.channels_last else ''})")
    print(f"{'':40s} {'s/iter':>9s} {'images/s':>9s} {'vs torchvision':>15s}")
    for name, seconds in results.items():
        ratio = f"{base / seconds:14.2f}x" if base else f"{'–':>15s}"
        print(f"{name:40s} {seconds:9.4f} {args.batch / seconds:9.2f} {ratio}")
    return results


def _run_infer(args, device, batch: Batch) -> dict[str, dict[str, float]]:
    fns, macs = _inference_rows(args, device, batch)
    results = _time_all(fns, args, device)
    reference = {v: _conv_reference(args, device, v) for v in args.variants if v not in ("compile", "onnx")}
    reference.update({v: reference.get("fp32") or _conv_reference(args, device, "fp32") for v in args.variants if v in ("compile", "onnx")})
    tv_fp32 = results.get("torchvision FCOS inference [fp32]")
    print("\ninference (forward + decoding + NMS); GFLOP/s = 2 × msad.macs multiply-adds / s; "
          "'of conv' = that over one large 3×3 conv's GFLOP/s in the same precision and layout")
    for variant, gflops in reference.items():
        print(f"  3×3 conv reference [{variant}]: {gflops:.1f} GFLOP/s")
    print(f"{'':48s} {'s/iter':>8s} {'img/s':>7s} {'vs tv fp32':>10s} {'vs tv same':>10s} {'GFLOP/s':>8s} {'of conv':>8s}")
    out = {}
    for name, seconds in results.items():
        variant = name[name.index("[") + 1:-1]
        tv_same = results.get(f"torchvision FCOS inference [{variant}]")
        gflops = 2 * macs[name] / seconds / 1e9
        fraction = gflops / reference[variant]
        vs_fp32 = f"{tv_fp32 / seconds:9.2f}x" if tv_fp32 else f"{'–':>10s}"
        vs_same = f"{tv_same / seconds:9.2f}x" if tv_same else f"{'–':>10s}"
        print(f"{name:48s} {seconds:8.4f} {args.batch / seconds:7.2f} {vs_fp32} {vs_same} {gflops:8.1f} {fraction:8.2f}")
        out[name] = {"seconds": seconds, "gflops": gflops, "fraction_of_conv": fraction}
    out["conv_reference_gflops"] = reference
    return out


def _run_loss(args, device, batch: Batch) -> dict[str, float]:
    """The teacher's three branch losses on fixed head outputs: targets assigned once vs once per branch."""
    recipe = _msad_recipe()
    crit, post = FCOSCriterion(num_classes=NUM_CLASSES), FCOSPostProcess()
    teacher = build_model(recipe, role="teacher", num_classes=NUM_CLASSES).to(device)
    with torch.no_grad():
        out = teacher(batch.images)
    once = TeacherTask(model=teacher, criterion=crit, postprocess=post)
    per_branch = _PerBranchTargets(model=teacher, criterion=crit, postprocess=post)
    frozen = lambda *a, **k: out  # noqa: E731 - the network is not what is timed here
    fns = {
        "teacher losses, targets once": lambda: once.losses(frozen, batch, 0),
        "teacher losses, targets per branch": lambda: per_branch.losses(frozen, batch, 0),
    }
    results = _time_all(fns, args, device, stat=min)  # milliseconds on a shared machine: the least disturbed run
    print(f"\nteacher branch losses on fixed outputs ({args.boxes} boxes per image), fastest of {args.iters}")
    for name, seconds in results.items():
        print(f"{name:40s} {seconds * 1000:9.2f} ms")
    return results


if __name__ == "__main__":
    main()
