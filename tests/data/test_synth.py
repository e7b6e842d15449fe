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


def test_coco_profile_follows_cocos_object_size_histogram() -> None:
    """Areas at the HR size: ~41 % small (< 32²), 34 % medium, 25 % large, as COCO (tolerance 5 points)."""
    from msad.data.synth import size_fractions, synth_profile
    from msad.data.synth_coco import COCO_CATEGORIES, render_coco_image

    profile = synth_profile("coco")
    assert profile.image_size == (384, 512) and len(profile.categories) == len(COCO_CATEGORIES) == 10
    objects = []
    for index in range(50):
        image, drawn = render_coco_image(np.random.default_rng([0, 0, index]), profile.image_size)
        objects += drawn
    assert image.size == (512, 384) and len(objects) >= 300
    small, medium, large = size_fractions([o.area for o in objects])
    assert abs(small - 0.41) < 0.05 and abs(medium - 0.34) < 0.05 and abs(large - 0.25) < 0.05
    assert {o.category_id for o in objects} == {cid for cid, _ in COCO_CATEGORIES}


def test_coco_profile_objects_are_textured() -> None:
    """Most object fills have two shades (stripes, checks, speckle); a quarter are solid."""
    from msad.data.synth_coco import _texture

    spreads = [np.asarray(_texture(np.random.default_rng(i), (24, 24))).reshape(-1, 3).std(axis=0).max() for i in range(40)]
    textured = sum(spread > 10 for spread in spreads)
    assert 20 <= textured < 40 and min(spreads) == 0.0


def test_size_fractions_uses_cocos_bounds() -> None:
    from msad.data.synth import size_fractions

    assert size_fractions([10.0, 1023.9, 1024.0, 9215.0, 9216.0]) == (0.4, 0.4, 0.2)
    assert size_fractions([]) == (0.0, 0.0, 0.0)


def test_coco_profile_dataset_and_unknown_profile(tmp_path: Path) -> None:
    import pytest

    summary = generate_synthetic_coco(tmp_path, train=2, val=1, seed=0, profile="coco", image_size=(192, 256))
    data = json.loads(summary.annotations_file("train").read_text())
    assert len(data["categories"]) == 10 and data["info"]["profile"] == "coco" and summary.profile == "coco"
    assert summary.size_fractions["train"] == pytest.approx(
        (summary.small_fraction["train"], *summary.size_fractions["train"][1:])
    )
    with pytest.raises(ValueError, match="unknown synthetic profile 'lvis'"):
        generate_synthetic_coco(tmp_path, train=1, val=0, seed=0, profile="lvis")
