"""Synthetic dataset: determinism, COCO structure, object sizes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from msad.data.synth import SYNTH_CATEGORIES, generate_synthetic_coco


def _digest(root: Path) -> dict[str, str]:
    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_same_seed_same_bytes_and_different_seed_differs(tmp_path: Path) -> None:
    a = generate_synthetic_coco(tmp_path / "a", train=3, val=2, seed=5)
    generate_synthetic_coco(tmp_path / "b", train=3, val=2, seed=5)
    generate_synthetic_coco(tmp_path / "c", train=3, val=2, seed=6)
    da, db, dc = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert len(da) == 3 + 2 + 2
    assert da == db
    assert da["train/000001.png"] != dc["train/000001.png"]
    assert a.images == {"train": 3, "val": 2}


def test_coco_structure_and_object_sizes(tmp_path: Path) -> None:
    summary = generate_synthetic_coco(tmp_path, train=8, val=1, seed=0, image_size=(128, 160))
    data = json.loads(summary.annotations_file("train").read_text())
    assert [(c["id"], c["name"]) for c in data["categories"]] == list(SYNTH_CATEGORIES)
    assert [c["id"] for c in data["categories"]] != list(range(1, len(SYNTH_CATEGORIES) + 1))  # non-contiguous
    assert len(data["images"]) == 8 and summary.annotations["train"] == len(data["annotations"])
    boxes = np.array([a["bbox"] for a in data["annotations"]])
    assert len(boxes) >= 8 * 5
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 0] + boxes[:, 2] <= 160).all() and (boxes[:, 1] + boxes[:, 3] <= 128).all()
    side = boxes[:, 2:].max(axis=1)
    assert (side < 24).mean() > 0.5  # mostly small
    assert (side >= 24).any()  # some medium
    assert all(a["iscrowd"] == 0 and 0 < a["area"] <= a["bbox"][2] * a["bbox"][3] + 1e-6 for a in data["annotations"])
    assert {a["category_id"] for a in data["annotations"]} == {cid for cid, _ in SYNTH_CATEGORIES}
    with Image.open(summary.images_dir("train") / data["images"][0]["file_name"]) as img:
        assert img.size == (160, 128) and img.mode == "RGB"


def test_circle_area_matches_its_box() -> None:
    """Box = full object extent: a circle's rasterised area is pi/4 of its (square) box."""
    from msad.data.synth import render_image

    circles = []
    for seed in range(6):
        _, objects = render_image(np.random.default_rng(seed), (96, 96), (3, 3))
        circles += [o for o in objects if o.category_id == 1]
    assert circles
    for obj in circles:
        x1, y1, x2, y2 = obj.box
        assert abs((x2 - x1) - (y2 - y1)) < 1e-9
        assert abs(obj.area / ((x2 - x1) * (y2 - y1)) - np.pi / 4) < 0.06
