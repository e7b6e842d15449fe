"""Padded pixels per GPU batch with and without aspect-ratio grouping, against detectron2's grouping scheme.

Simulated (no images): a train2017-sized set (118,287 images) whose sizes follow ``coco_scale.SIZE_MIX``
(long side 640; ~70 % landscape, ~25 % portrait, ~5 % square), each item resized as in training (short side drawn
from ``data.train_sizes`` = 640…800 step 32, long side ≤ 1333), each rank's batch padded to its largest height and
width rounded up to the role's ``size_divisibility``. The padded-pixel ratio is padding / all pixels of the batch
tensors, over ``--iters`` global iterations on 8 ranks.

- ``mixed``: msad without grouping (``TrainBatchSampler``: rank r takes a contiguous slice of each global batch).
- ``msad``: ``AspectRatioGroupedBatchSampler`` (detectron2's buckets over the global stream, groups dealt to ranks).
- ``detectron2``: detectron2's scheme: rank r takes every 8th element of the shuffled stream (``TrainingSampler``)
  and buckets its own stream (``AspectRatioGroupedDataset``).

    python benchmarks/padding.py --iters 3000
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coco_scale import TRAIN2017_IMAGES, image_shapes  # noqa: E402

from msad.data.samplers import AspectRatioGroupedBatchSampler, TrainBatchSampler, aug_seed  # noqa: E402

TRAIN_SIZES = [640, 672, 704, 736, 768, 800]
MAX_SIZE = 1333
RANKS = 8
#: ``(role, global batch, size_divisibility)`` of the paper recipes (per-GPU batch = global / 8).
SETTINGS = [
    ("baseline 1x", 16, 32),
    ("teacher w0.25", 16, 256),
    ("student w0.25/0.5/0.75", 32, 256),
    ("student w1.0", 16, 256),
]


def resized(width: int, height: int, short: int) -> tuple[int, int]:
    """``(h, w)`` after resizing the short side to ``short`` with the long side capped at ``MAX_SIZE``."""
    scale = min(short / min(width, height), MAX_SIZE / max(width, height))
    return round(height * scale), round(width * scale)


def padded_ratio(batches: list[list[tuple[int, int]]], shapes: np.ndarray, divisibility: int) -> float:
    """Padding / batch-tensor pixels over ``batches`` of ``(index, aug_seed)``; the short side is drawn per item."""
    padded = real = 0
    for batch in batches:
        sizes = [resized(*shapes[i], TRAIN_SIZES[seed % len(TRAIN_SIZES)]) for i, seed in batch]
        h = -(-max(s[0] for s in sizes) // divisibility) * divisibility
        w = -(-max(s[1] for s in sizes) // divisibility) * divisibility
        area = sum(s[0] * s[1] for s in sizes)
        padded += h * w * len(sizes) - area
        real += h * w * len(sizes)
    return padded / real


def detectron2_batches(landscape: np.ndarray, per_gpu: int, iters: int, seed: int) -> list[list[tuple[int, int]]]:
    """Each rank's first ``iters`` batches under detectron2's sharding and per-rank bucketing."""
    stream = TrainBatchSampler(len(landscape), total_batch_size=1, rank=0, world_size=1, seed=seed)
    out = []
    for rank in range(RANKS):
        buckets: dict[bool, list[tuple[int, int]]] = {True: [], False: []}
        positions = itertools.count(rank, RANKS)
        made = 0
        while made < iters:
            position = next(positions)
            index = stream._element(position)[0]
            bucket = buckets[bool(landscape[index])]
            bucket.append((index, aug_seed(seed, position)))
            if len(bucket) == per_gpu:
                out.append(bucket[:])
                bucket.clear()
                made += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3000, help="global iterations simulated per setting")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shapes = np.array(image_shapes(TRAIN2017_IMAGES, random.Random(args.seed)))  # (width, height)
    landscape = shapes[:, 0] > shapes[:, 1]
    print(f"{len(shapes)} images: {landscape.mean():.1%} landscape, {(shapes[:, 0] < shapes[:, 1]).mean():.1%} "
          f"portrait, {(shapes[:, 0] == shapes[:, 1]).mean():.1%} square; {RANKS} ranks, {args.iters} iterations")
    print("| role (global batch, per GPU, padded to) | mixed | msad grouping | detectron2 grouping | msad / detectron2 |")
    print("|---|---|---|---|---|")
    for role, batch, divisibility in SETTINGS:
        per_gpu = batch // RANKS
        kwargs = {"total_batch_size": batch, "world_size": RANKS, "seed": args.seed}
        plain = [TrainBatchSampler(len(shapes), rank=r, **kwargs) for r in range(RANKS)]
        grouped = [AspectRatioGroupedBatchSampler(len(shapes), landscape=landscape, rank=r, **kwargs) for r in range(RANKS)]
        mixed = [s.batch(i) for s in plain for i in range(args.iters)]
        msad = [s.batch(i) for s in grouped for i in range(args.iters)]
        d2 = detectron2_batches(landscape, per_gpu, args.iters, args.seed)
        ratios = [padded_ratio(b, shapes, divisibility) for b in (mixed, msad, d2)]
        print(f"| {role} ({batch}, {per_gpu}, {divisibility}) | {ratios[0]:.2%} | {ratios[1]:.2%} | {ratios[2]:.2%} | "
              f"{(1 - ratios[1]) / (1 - ratios[2]):.4f} (real pixels per batch pixel) |", flush=True)


if __name__ == "__main__":
    main()
