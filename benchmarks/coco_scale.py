"""Write a COCO train2017-like annotation file (JSON only, no images) at a chosen scale.

Full scale is train2017's shape: 118,287 images, ~860k instances (7.27 per image) with polygon segmentations,
80 categories with COCO's non-contiguous ids, ~1 % crowd (RLE), and COCO's image fields. Image sizes follow the
orientation and size mix of :data:`SIZE_MIX` (also what ``benchmarks/padding.py`` simulates).

    python benchmarks/coco_scale.py /tmp/coco_full.json                 # 118k images, ~0.5 GB
    python benchmarks/coco_scale.py /tmp/coco_tenth.json --scale 0.1    # 11.8k images, ~46 MB
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

TRAIN2017_IMAGES = 118_287
INSTANCES_PER_IMAGE = 860_001 / TRAIN2017_IMAGES
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]  # the 80 ids

#: ``(weight, width, height)`` of COCO-like image shapes: long side 640 (as train2017), ~70 % landscape, ~25 %
#: portrait, ~5 % square or near-square. An approximation of train2017's mix (its 640×480, 640×427, 480×640 and
#: 427×640 dominate), not a census.
SIZE_MIX: list[tuple[float, int, int]] = [
    (0.31, 640, 480), (0.22, 640, 427), (0.06, 640, 360), (0.05, 640, 512), (0.06, 500, 375),
    (0.10, 480, 640), (0.07, 427, 640), (0.03, 375, 500), (0.04, 360, 640),
    (0.04, 640, 640), (0.02, 612, 612),
]


def image_shapes(count: int, rng: random.Random) -> list[tuple[int, int]]:
    """``count`` ``(width, height)`` pairs drawn from :data:`SIZE_MIX`."""
    weights = [w for w, _, _ in SIZE_MIX]
    return [(w, h) for _, w, h in rng.choices(SIZE_MIX, weights=weights, k=count)]


def _polygon(x: float, y: float, w: float, h: float, rng: random.Random) -> list[float]:
    points = rng.randint(8, 40)
    return [round(v, 2) for _ in range(points) for v in (x + rng.random() * w, y + rng.random() * h)]


def generate(scale: float, seed: int = 0) -> dict:
    """The annotation dict of a train2017-like file with ``scale`` × its images and instances."""
    rng = random.Random(seed)
    num_images = round(TRAIN2017_IMAGES * scale)
    ids = rng.sample(range(1, 600_000), num_images)
    images, annotations = [], []
    for image_id, (width, height) in zip(ids, image_shapes(num_images, rng), strict=True):
        name = f"{image_id:012d}.jpg"
        images.append({
            "license": rng.randint(1, 8), "file_name": name, "coco_url": f"http://images.cocodataset.org/train2017/{name}",
            "height": height, "width": width, "date_captured": "2013-11-14 11:18:45",
            "flickr_url": f"http://farm{rng.randint(1, 9)}.staticflickr.com/{rng.randint(1000, 9999)}/{image_id}_z.jpg",
            "id": image_id,
        })
    total = round(INSTANCES_PER_IMAGE * num_images)
    for ann_id in range(1, total + 1):
        image = images[rng.randrange(num_images)]
        w = round(min(image["width"] - 1, rng.lognormvariate(3.6, 1.1)), 2) + 1
        h = round(min(image["height"] - 1, w * rng.uniform(0.4, 2.2)), 2) + 0.5
        x, y = round(rng.uniform(0, image["width"] - w), 2), round(rng.uniform(0, max(0.0, image["height"] - h)), 2)
        crowd = rng.random() < 0.009
        segmentation = (
            {"counts": [rng.randint(0, 300) for _ in range(60)], "size": [image["height"], image["width"]]}
            if crowd else [_polygon(x, y, w, h, rng) for _ in range(1 if rng.random() < 0.9 else 2)]
        )
        annotations.append({
            "segmentation": segmentation, "area": round(w * h * 0.6, 4), "iscrowd": int(crowd),
            "image_id": image["id"], "bbox": [x, y, w, h], "category_id": rng.choice(COCO_IDS), "id": ann_id,
        })
    categories = [{"supercategory": "thing", "id": i, "name": f"class{i}"} for i in COCO_IDS]
    return {"info": {"description": "train2017-like (generated)"}, "licenses": [], "images": images,
            "annotations": annotations, "categories": categories}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = generate(args.scale, args.seed)
    args.out.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    size = args.out.stat().st_size / 2**20
    print(f"{args.out}: {len(data['images'])} images, {len(data['annotations'])} instances, {size:.0f} MiB")


if __name__ == "__main__":
    main()
