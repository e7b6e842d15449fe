"""A training step reads no tensor value back to the host (on a GPU each read would stall the CPU).

Counted on the CPU by patching every Python-level way a value reaches the host (``.item()``, ``.tolist()``, ``.cpu()``,
``bool(t)``, ``float(t)``, ``int(t)``, ``.numpy()``, data-dependent shapes such as ``nonzero()`` or a boolean
mask index) and every tensor made from Python data (``torch.tensor``, ``new_tensor``: a host-to-device copy on a
GPU), over :meth:`Trainer.run_step` of the baseline, the teacher and the student as ``msad`` builds them, with
gradient clipping, EMA and bf16 autocast on. The only read-back allowed is the logging flush.
"""

from __future__ import annotations

import contextlib
import itertools
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from msad import api
from msad.api.training import build_task
from msad.build import build_train_dataset, run_settings, solver_settings
from msad.config import Recipe, load_recipe
from msad.data import build_train_loader
from msad.engine import Trainer
from msad.roles import get_role
from msad.structures import Batch, Target

#: Tensor methods that hand a value (or a value-dependent shape) to the host, and ones that build a tensor from
#: host data; all of them synchronise with a CUDA device.
_TENSOR_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "nonzero", "new_tensor",
                 "masked_select", "unique")
_TORCH_READS = ("tensor", "as_tensor", "nonzero", "masked_select", "unique")


def _is_mask_index(index: object) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


@contextlib.contextmanager
def count_host_reads() -> Iterator[list[str]]:
    """Record ``name @ caller`` for every host read or host-data tensor made inside the block."""
    calls: list[str] = []

    def record(name: str) -> None:
        frame = traceback.extract_stack(limit=3)[0]
        calls.append(f"{name} @ {frame.filename}:{frame.lineno}")

    def wrap(owner: object, name: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            record(name)
            return original(*args, **kwargs)

        patches.append((owner, name, original))
        setattr(owner, name, wrapper)

    patches: list[tuple[object, str, Callable]] = []
    original_getitem = torch.Tensor.__getitem__

    def getitem(self, index):
        if _is_mask_index(index):
            record("mask index")
        return original_getitem(self, index)

    try:
        for name in _TENSOR_READS:
            wrap(torch.Tensor, name)
        for name in _TORCH_READS:
            wrap(torch, name)
        patches.append((torch.Tensor, "__getitem__", original_getitem))
        torch.Tensor.__getitem__ = getitem
        yield calls
    finally:
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)


def test_the_counter_sees_reads() -> None:
    """The instrument itself: each kind of read is counted, plain device arithmetic is not."""
    t = torch.arange(4.0)
    with count_host_reads() as calls:
        (t * 2).sum()
        t[0].item()
        bool(t[0] > 1)
        t.tolist()
        float(t[1])
        t[t > 1]
        torch.tensor([1.0])
        t.new_tensor(3.0)
    assert [c.split(" @ ")[0] for c in calls] == [
        "item", "__bool__", "tolist", "__float__", "mask index", "tensor", "new_tensor"]


ROLES = ("baseline", "teacher", "student")


@pytest.fixture(scope="module")
def step_recipe(tiny_overrides: list[str]) -> Recipe:
    """The tiny recipe with every per-step feature of the trainer on (clipping, EMA, bf16), log every 2 steps."""
    extra = ["solver.clip_grad_norm=10.0", "solver.ema_decay=0.9", "solver.amp=\"bf16\"", "run.log_period=2",
             "solver.batch_size=2", "distill.ramp_iters=10", 'data.val_annotations=""']
    return load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "tiny.toml", overrides=[*tiny_overrides, *extra])


def _trainer(recipe: Recipe, role: str, output: Path, teacher: Path | None) -> tuple[Trainer, Iterator[Batch]]:
    train_set = build_train_dataset(recipe)
    ckpt = api.read_checkpoint(teacher, role="teacher") if teacher else None
    torch.manual_seed(0)
    task = build_task(recipe, role, label_space=train_set.label_space, teacher=ckpt)
    solver = solver_settings(recipe, stage=get_role(role).stage)
    collate = get_role(role).collator(recipe, normalize_on_device=True)

    def loader(start: int, rank: int, world_size: int) -> Iterator[Batch]:
        return build_train_loader(train_set, total_batch_size=solver.batch_size, rank=rank, world_size=world_size,
                                  seed=0, start_iter=start, collate=collate)

    run = run_settings(recipe.model_copy(update={"run": recipe.run.model_copy(update={"output": str(output)})}))
    trainer = Trainer(task, solver=solver, run=run, make_train_loader=loader, echo=lambda _: None)
    trainer.setup()
    return trainer, loader(0, 0, 1)


@pytest.mark.parametrize("role", ROLES)
def test_a_training_step_reads_nothing_back(role: str, step_recipe: Recipe, trained_teacher: api.TrainResult,
                                            tmp_path: Path) -> None:
    trainer, batches = _trainer(step_recipe, role, tmp_path, trained_teacher.weights if role == "student" else None)
    pending = []
    for iteration, batch in zip(range(3), batches, strict=False):
        with count_host_reads() as calls:
            pending.append(trainer.run_step(iteration, batch))
        assert calls == [], f"{role} step {iteration} read values back: {calls}"
    # the logging flush is where the values reach the host: once for all pending steps
    with count_host_reads() as calls:
        rows = list(trainer._flush(pending))
    assert len(rows) == 3 and len(calls) == 1 and calls[0].startswith("tolist")
    assert all(isinstance(v, float) for row in rows for v in row.values())


def test_batches_are_pinned_whole_and_copied_without_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Targets travel pinned and ``non_blocking`` like the images: a pageable or blocking copy waits for the GPU."""
    pinned: set[int] = set()

    def pin(self: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = self.clone()
        pinned.add(id(out))
        return out

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    batch = Batch(images=torch.zeros(2, 3, 8, 8, dtype=torch.uint8), image_sizes=[(8, 8), (8, 6)],
                  targets=[Target(torch.ones(1, 4), torch.zeros(1, dtype=torch.int64)),
                           Target(torch.ones(0, 4), torch.zeros(0, dtype=torch.int64))],
                  pixel_mean=(1.0, 2.0, 3.0), pixel_std=(1.0, 1.0, 1.0))
    held = batch.pin_memory()
    tensors = [held.images, *itertools.chain.from_iterable((t.boxes, t.labels) for t in held.targets)]
    assert all(id(t) in pinned for t in tensors)

    blocking: list[str] = []
    original_to = torch.Tensor.to

    def to(self: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if not kwargs.get("non_blocking", False):
            blocking.append(f"{tuple(self.shape)} {self.dtype}")
        return original_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)
    moved = held.to("cpu")
    assert blocking == []
    assert torch.equal(moved.targets[0].boxes, batch.targets[0].boxes)
