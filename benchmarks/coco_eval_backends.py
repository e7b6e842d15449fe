"""COCOeval CPU time of the two ``eval.backend`` choices on a val2017-sized result set, and their metric difference.

Ground truth: 5,000 images (640×480 / 480×640), 36,781 objects (val2017's count) over COCO's 80 category ids with
COCO-like sizes, ~1 % crowd. Results: 100 detections per image (jittered ground truth, wrong classes and
background boxes, random scores), as FCOS gives after its top-100 cut. Each backend runs ``CocoEvaluator.summarize``
(loadRes + evaluate + accumulate + summarize) in this process, one after the other; CPU time by
``time.process_time``.

    python benchmarks/coco_eval_backends.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np
import torch
from pycocotools.coco import COCO

from msad.evaluation import CocoEvaluator
from msad.structures import Detections

COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def synthetic(images: int, objects: int, per_image: int, seed: int) -> tuple[COCO, dict[int, Detections]]:
    """A ground truth ``COCO`` and ``per_image`` detections for each of its images."""
    rng = np.random.default_rng(seed)
    sizes = [(640, 480) if rng.random() < 0.75 else (480, 640) for _ in range(images)]
    owners = rng.integers(0, images, objects)
    annotations = []
    for ann_id, owner in enumerate(owners.tolist(), start=1):
        width, height = sizes[owner]
        w, h = np.clip(rng.lognormal(3.6, 1.1, 2), 2, [width - 1, height - 1])
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        annotations.append({"id": ann_id, "image_id": owner + 1, "category_id": int(rng.choice(COCO_IDS)),
                            "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h),
                            "iscrowd": int(rng.random() < 0.01)})
    coco = COCO()
    coco.dataset = {"images": [{"id": i + 1, "width": w, "height": h, "file_name": f"{i + 1}.jpg"}
                               for i, (w, h) in enumerate(sizes)],
                    "annotations": annotations, "categories": [{"id": c, "name": str(c)} for c in COCO_IDS]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    detections = {}
    for image_id in range(1, images + 1):
        width, height = sizes[image_id - 1]
        truth = [a for a in coco.imgToAnns[image_id]]
        boxes = np.empty((per_image, 4))
        labels = rng.integers(0, len(COCO_IDS), per_image)
        for k in range(per_image):
            if k < 3 * len(truth):  # three guesses per object, the first usually right
                x, y, w, h = truth[k % len(truth)]["bbox"]
                jitter = rng.normal(0, 0.05 * (1 + k // len(truth)), 4) * [w, h, w, h]
                boxes[k] = [x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]]
                if k < len(truth) and rng.random() < 0.85:
                    labels[k] = COCO_IDS.index(truth[k]["category_id"])
            else:
                x, y = rng.uniform(0, width - 10), rng.uniform(0, height - 10)
                boxes[k] = [x, y, x + rng.uniform(5, width - x), y + rng.uniform(5, height - y)]
        detections[image_id] = Detections(torch.tensor(boxes, dtype=torch.float32),
                                          torch.tensor(rng.random(per_image), dtype=torch.float32),
                                          torch.tensor(labels, dtype=torch.int64))
    return coco, detections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--objects", type=int, default=36781)
    parser.add_argument("--per-image", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    coco, detections = synthetic(args.images, args.objects, args.per_image, args.seed)
    print(f"{args.images} images, {len(coco.anns)} objects, {args.per_image * args.images} detections", flush=True)
    seconds, stats = {}, {}
    for backend in ("pycocotools", "faster_coco_eval"):
        evaluator = CocoEvaluator(coco, COCO_IDS, backend=backend)
        evaluator.add(list(detections), list(detections.values()))
        start = time.process_time()
        metrics = evaluator.summarize()
        seconds[backend] = time.process_time() - start
        stats[backend] = np.asarray(evaluator.coco_eval.stats[:12])
        print(f"{backend}: {seconds[backend]:.1f} s CPU, AP {metrics['AP']:.3f} AP50 {metrics['AP50']:.3f}", flush=True)
    delta = np.abs(stats["pycocotools"] - stats["faster_coco_eval"]).max()
    print(f"faster_coco_eval / pycocotools: {seconds['pycocotools'] / seconds['faster_coco_eval']:.1f}x faster; "
          f"max |Δ| over the 12 stats: {delta:.2e}")


if __name__ == "__main__":
    main()
