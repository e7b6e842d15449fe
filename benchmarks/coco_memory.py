"""Host memory of the training set: RSS and build CPU time, and data workers' private memory, old vs new.

``--impl old`` is ``CocoDetection`` as of git revision ``--old-rev`` (default ``7fbbf30``: the JSON, a pycocotools
``COCO`` and a tensor pair per image kept by every rank), loaded from git into this process; ``--impl new`` is this
tree's compact :class:`~msad.data.coco_table.ImageTable`. Each run is one fresh process (run them one after the
other). Both skip the per-file stat (no images exist: the file comes from ``benchmarks/coco_scale.py``).

    python benchmarks/coco_memory.py /tmp/coco_tenth.json --impl old
    python benchmarks/coco_memory.py /tmp/coco_tenth.json --impl new --workers

``--workers``: one forked DataLoader worker reads 1,000 items' non-image part (file path and target: the image
decode is not this benchmark's business) and reports its Private_Clean + Private_Dirty from
``/proc/<pid>/smaps_rollup`` after the first item and after the 1,000th followed by a ``gc.collect()`` (what
Python's collector does in a worker on its own schedule), with and without ``gc.freeze()`` before the fork.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch


def rss_mib() -> float:
    """This process's resident set size in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def private_mib(pid: int) -> float:
    """Private (not shared with the parent) memory of process ``pid`` in MiB."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total / 1024


def old_class(rev: str) -> Any:
    """``CocoDetection`` of git revision ``rev``, its per-file stat disabled."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(["git", "-C", str(root), "show", f"{rev}:msad/data/coco.py"], check=True,
                            capture_output=True, text=True).stdout
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"msad_old_coco_{os.getpid()}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("msad_old_coco", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path.unlink()
    module.CocoDetection._missing_images = lambda self, on_bad: set()
    return module.CocoDetection


class _TargetOnly(torch.utils.data.Dataset):
    """The non-image part of a training item: image path and clipped target (sizes from the file)."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor, int]:
        self.ds.image_path(index)
        target = self.ds.target(index, 480, 640)
        if index == -1:  # the last item of the run: let the collector run, as it would in a long-lived worker
            gc.collect()
        return str(os.getpid()), target.boxes, len(target.labels)


def worker_private(ds: Any, *, freeze: bool, items: int = 1000) -> tuple[float, float]:
    """Private MiB of one forked worker after its first item and after ``items`` items and a collection."""
    if freeze:
        gc.collect()
        gc.freeze()
    order = [0] + list(range(1, items - 1)) + [-1]
    loader = torch.utils.data.DataLoader(_TargetOnly(ds), batch_size=None, sampler=order, num_workers=1,
                                         prefetch_factor=1)
    it = iter(loader)
    pid, _, _ = next(it)
    time.sleep(0.2)
    first = private_mib(int(pid))
    for _ in range(items - 1):
        next(it)
    time.sleep(0.2)
    last = private_mib(int(pid))
    del it, loader
    if freeze:
        gc.unfreeze()
    return first, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotations", type=Path)
    parser.add_argument("--impl", choices=("old", "new"), required=True)
    parser.add_argument("--old-rev", default="7fbbf30")
    parser.add_argument("--workers", action="store_true", help="also measure a forked worker's private memory")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.impl == "old":
        cls, kwargs = old_class(args.old_rev), {}
    else:
        from msad.data.coco import CocoDetection as cls
        kwargs = {"check_files": False}
    gc.collect()
    before, cpu = rss_mib(), time.process_time()
    ds = cls("/nonexistent", args.annotations, train=True, **kwargs)
    gc.collect()
    build, after = time.process_time() - cpu, rss_mib()
    print(f"{args.impl}: {len(ds)} images, {ds.num_boxes} boxes: build {build:.2f} s CPU, "
          f"training set RSS {after - before:.1f} MiB (process {after:.0f} MiB)", flush=True)
    if args.workers:
        for freeze in (False, True):
            first, last = worker_private(ds, freeze=freeze)
            print(f"{args.impl}: worker private memory, gc.freeze() {'on ' if freeze else 'off'}: {first:.1f} MiB "
                  f"after 1 item -> {last:.1f} MiB after 1,000 items + gc.collect()", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
