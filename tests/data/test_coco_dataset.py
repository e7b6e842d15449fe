"""COCO dataset: label mapping, annotation cleaning, bad images, errors, category compatibility."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from msad.data import transforms as transforms_module
from msad.data.coco import CocoDetection, DatasetError, check_category_compat
from msad.data.transforms import build_transforms

CATEGORIES = [{"id": 7, "name": "triangle"}, {"id": 1, "name": "circle"}, {"id": 3, "name": "square"}]


def _write(root: Path, images: list[dict[str, Any]], annotations: list[dict[str, Any]], categories=CATEGORIES) -> Path:
    (root / "img").mkdir(parents=True, exist_ok=True)
    for img in images:
        if not (root / "img" / img["file_name"]).exists():
            Image.new("RGB", (img["width"], img["height"]), (img["id"], 0, 0)).save(root / "img" / img["file_name"])
    path = root / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def _image(image_id: int, w: int = 40, h: int = 30) -> dict[str, Any]:
    return {"id": image_id, "file_name": f"{image_id}.png", "width": w, "height": h}


def _ann(ann_id: int, image_id: int, cat: int, bbox: list[float], **extra: Any) -> dict[str, Any]:
    ann = {"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": bbox, "iscrowd": 0}
    ann["area"] = bbox[2] * bbox[3]
    return ann | extra


def test_non_contiguous_ids_map_to_sorted_contiguous_labels(tmp_path: Path) -> None:
    anns = [_ann(1, 1, 7, [1, 1, 5, 5]), _ann(2, 1, 1, [2, 2, 5, 5]), _ann(3, 1, 3, [3, 3, 5, 5])]
    ds = CocoDetection(tmp_path / "img", _write(tmp_path, [_image(1)], anns), train=False)
    assert ds.category_ids == [1, 3, 7] and ds.class_names == ["circle", "square", "triangle"]
    image, target, meta = ds[0]
    assert target.labels.tolist() == [2, 0, 1] and target.labels.dtype == torch.int64
    assert target.boxes.tolist() == [[1, 1, 6, 6], [2, 2, 7, 7], [3, 3, 8, 8]]
    assert image.shape == (3, 30, 40) and image[0, 0, 0] == 1
    assert meta == {"image_id": 1, "original_size": (30, 40), "size": (30, 40)}
    assert sorted(ds.coco.getCatIds()) == [1, 3, 7] and ds.coco.getAnnIds(imgIds=[1]) == [1, 2, 3]


def test_crowd_degenerate_and_out_of_image_boxes(tmp_path: Path) -> None:
    anns = [
        _ann(1, 1, 1, [0, 0, 10, 10], iscrowd=1),  # crowd: ignored
        _ann(2, 1, 1, [5, 5, 0.5, 8]),  # too thin: dropped
        _ann(3, 1, 1, [-5, -5, 15, 12]),  # clipped to (0, 0, 10, 7)
        _ann(4, 1, 3, [35, 25, 20, 20]),  # clipped to (35, 25, 40, 30)
        _ann(5, 1, 3, [50, 5, 10, 10]),  # outside the 40-wide image: dropped
        _ann(6, 1, 7, [39.5, 5, 10, 10]),  # 0.5 px inside after clipping: dropped
        _ann(7, 1, 7, [10, 10, -3, 4]),  # negative width: dropped (on_bad_annotation="drop", counted on stderr)
    ]
    del anns[2]["area"]  # missing area is tolerated
    path = _write(tmp_path, [_image(1)], anns)
    ds = CocoDetection(tmp_path / "img", path, train=True, on_bad_annotation="drop")
    _, target, _ = ds[0]
    assert target.boxes.tolist() == [[0, 0, 10, 7], [35, 25, 40, 30]]
    assert target.labels.tolist() == [0, 1]
    evaluation = CocoDetection(tmp_path / "img", path, train=False, on_bad_annotation="drop")
    assert evaluation.coco.anns[3]["area"] == 15 * 12  # filled for pycocotools' evaluation (a training set has no index)


def test_image_without_annotations_is_kept(tmp_path: Path) -> None:
    path = _write(tmp_path, [_image(2), _image(1)], [_ann(1, 1, 1, [1, 1, 5, 5])])
    ds = CocoDetection(tmp_path / "img", path, train=True)
    assert len(ds) == 2 and ds.image_ids == [1, 2]
    _, target, _ = ds[1]
    assert target.boxes.shape == (0, 4) and target.labels.shape == (0,)


def test_seeded_augmentation_is_a_pure_function_of_the_seed(tmp_path: Path) -> None:
    path = _write(tmp_path, [_image(1, 64, 48)], [_ann(1, 1, 1, [4, 6, 20, 10])])
    transforms = build_transforms(train=True, short_sizes=[24, 32, 40], max_size=100)
    ds = CocoDetection(tmp_path / "img", path, train=True, transforms=transforms)
    results = {s: ds[(0, s)] for s in range(12)}
    again = ds[(0, 5)]
    assert torch.equal(again[0], results[5][0]) and torch.equal(again[1].boxes, results[5][1].boxes)
    assert len({tuple(r[1].boxes[0].tolist()) for r in results.values()}) > 2
    h, w = results[5][2]["size"]
    assert results[5][0].shape[-2:] == (h, w) and results[5][2]["original_size"] == (48, 64)
    eval_transforms = build_transforms(train=False, short_sizes=[24], max_size=100)
    evaluation = CocoDetection(tmp_path / "img", path, train=False, transforms=eval_transforms)
    assert evaluation[(0, 1)][2]["size"] == evaluation[(0, 2)][2]["size"] == (24, 32)


def test_bad_images_error_or_skip(tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, [_image(1), _image(2), _image(3)], [_ann(1, 3, 1, [1, 1, 5, 5])])
    (tmp_path / "img" / "1.png").write_bytes(b"garbage")
    (tmp_path / "img" / "2.png").unlink()
    with pytest.raises(DatasetError, match=r"1 of 3 images listed in .* are missing from .*: 2.png"):
        CocoDetection(tmp_path / "img", path, train=True)  # a missing file is found when the dataset is opened
    with caplog.at_level(logging.WARNING, logger="msad.data.coco"):
        lenient = CocoDetection(tmp_path / "img", path, train=True, on_bad_image="skip")
        assert "2.png" in capsys.readouterr().err  # the missing file is counted on stderr at once
        assert [lenient[i][2]["image_id"] for i in range(3)] == [3, 3, 3]  # next readable, deterministically
    assert "1.png" in caplog.text  # the undecodable one when it is read
    evaluation = CocoDetection(tmp_path / "img", path, train=False, on_bad_image="skip")
    assert evaluation[0] is None and evaluation[1] is None and evaluation[2][2]["image_id"] == 3
    (tmp_path / "img" / "2.png").write_bytes((tmp_path / "img" / "3.png").read_bytes())
    strict = CocoDetection(tmp_path / "img", path, train=True)
    with pytest.raises(ValueError, match="1.png"):  # an undecodable file still fails when read, as on_bad_image says
        strict[0]


def test_all_images_bad_in_skip_mode(tmp_path: Path) -> None:
    path = _write(tmp_path, [_image(1)], [_ann(1, 1, 1, [1, 1, 5, 5])])
    (tmp_path / "img" / "1.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="no readable image"):
        CocoDetection(tmp_path / "img", path, train=True, on_bad_image="skip")[0]


def test_annotation_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="missing.json.*not found"):
        CocoDetection(tmp_path, tmp_path / "missing.json", train=True)
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(DatasetError, match="broken.json.*not valid JSON"):
        CocoDetection(tmp_path, broken, train=True)
    no_images = tmp_path / "noimg.json"
    no_images.write_text('{"annotations": [], "categories": []}')
    with pytest.raises(DatasetError, match="noimg.json.*'images'"):
        CocoDetection(tmp_path, no_images, train=True)
    with pytest.raises(DatasetError, match="unknown category_id 99"):
        CocoDetection(tmp_path / "img", _write(tmp_path, [_image(1)], [_ann(1, 1, 99, [1, 1, 5, 5])]), train=True)
    with pytest.raises(DatasetError, match="bbox"):
        bad_box = _ann(1, 1, 1, [1, 1, 5, 5]) | {"bbox": [1, 1, 5]}
        CocoDetection(tmp_path / "img", _write(tmp_path, [_image(1)], [bad_box]), train=True)


def test_empty_dataset_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="ann.json.*no images"):
        CocoDetection(tmp_path / "img", _write(tmp_path, [], []), train=True)


def test_val_categories_align_with_train_by_id(tmp_path: Path) -> None:
    train = CocoDetection(tmp_path / "t" / "img", _write(tmp_path / "t", [_image(1)], []), train=True)
    subset = [{"id": 3, "name": "square"}, {"id": 1, "name": "circle"}]
    val_path = _write(tmp_path / "v", [_image(1)], [_ann(1, 1, 3, [1, 1, 5, 5])], categories=subset)
    unaligned = CocoDetection(tmp_path / "v" / "img", val_path, train=False)
    assert unaligned[0][1].labels.tolist() == [1]  # its own label space: circle 0, square 1
    with pytest.raises(DatasetError, match="label_space"):
        check_category_compat(train, unaligned)
    val = CocoDetection(tmp_path / "v" / "img", val_path, train=False, label_space=train.label_space)
    check_category_compat(train, val)
    assert val.category_ids == [1, 3, 7] and val[0][1].labels.tolist() == [1]


def test_val_with_extra_or_renamed_categories_is_an_error(tmp_path: Path) -> None:
    train = CocoDetection(tmp_path / "t" / "img", _write(tmp_path / "t", [_image(1)], []), train=True)
    extra = CATEGORIES + [{"id": 9, "name": "star"}]
    val_path = _write(tmp_path / "v", [_image(1)], [], categories=extra)
    with pytest.raises(DatasetError, match=r"9 \('star'\)"):
        CocoDetection(tmp_path / "v" / "img", val_path, train=False, label_space=train.label_space)
    with pytest.raises(DatasetError, match="star"):
        check_category_compat(train, CocoDetection(tmp_path / "v" / "img", val_path, train=False))
    renamed = [{"id": 1, "name": "disc"}]
    with pytest.raises(DatasetError, match="'disc'"):
        path = _write(tmp_path / "r", [_image(1)], [], categories=renamed)
        CocoDetection(tmp_path / "r" / "img", path, train=False, label_space=train.label_space)


def test_unicode_dataset_paths(tmp_path: Path) -> None:
    root = tmp_path / "données"
    images = [{"id": 1, "file_name": "画像 1.png", "width": 8, "height": 6}]
    ds = CocoDetection(root / "img", _write(root, images, [_ann(1, 1, 1, [1, 1, 4, 4])]), train=True)
    assert ds[0][0].shape == (3, 6, 8)


def test_synthetic_dataset_through_worker_loader(tmp_path: Path) -> None:
    """End to end: synth -> dataset -> transforms -> worker DataLoader -> Batch."""
    from msad.data.collate import Collator
    from msad.data.loaders import build_train_loader
    from msad.data.synth import generate_synthetic_coco

    summary = generate_synthetic_coco(tmp_path, train=4, val=0, seed=0, image_size=(64, 96))
    transforms = build_transforms(train=True, short_sizes=[32, 48], max_size=200, scale=0.5)
    ds = CocoDetection(
        summary.images_dir("train"), summary.annotations_file("train"), train=True, transforms=transforms
    )
    assert ds.category_ids == [1, 3, 7, 8, 12]
    loader = build_train_loader(ds, total_batch_size=2, rank=0, world_size=1, seed=0, num_workers=1, collate=Collator())
    batch = next(loader)
    assert batch.images.shape[0] == 2 and batch.images.shape[-1] % 32 == 0
    assert all(t.boxes.shape[0] > 0 for t in batch.targets)
    assert all(max(s) <= 24 for s in batch.image_sizes)  # short side <= 48 * 0.5


def test_items_agree_with_the_pil_and_float_resize_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The torchvision item (decode + uint8 resize) against msad's former path (PIL decode + float resize).

    Decoding is bit-exact (both libjpeg-turbo, same settings); the uint8 antialiased resize is within one
    level of the float one. Shapes, boxes and meta are identical, so training sees the same geometry.
    """
    rng = torch.Generator().manual_seed(0)
    images = [_image(1, 64, 48) | {"file_name": "1.jpg"}, _image(2, 48, 64) | {"file_name": "2.jpg"}]
    (tmp_path / "img").mkdir()
    for img in images:
        pixels = torch.randint(0, 256, (img["height"], img["width"], 3), generator=rng, dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).resize((img["width"] // 4, img["height"] // 4)).resize(
            (img["width"], img["height"]), Image.BILINEAR).save(tmp_path / "img" / img["file_name"], quality=90)
    anns = [_ann(1, 1, 1, [3.5, 4.25, 20, 10]), _ann(2, 2, 3, [10, 1, 30.5, 50])]
    transforms = build_transforms(train=True, short_sizes=[32, 40, 80], max_size=100, scale=0.5)
    ds = CocoDetection(tmp_path / "img", _write(tmp_path, images, anns), transforms=transforms, train=True)
    items = {(index, seed): ds[(index, seed)] for index in range(2) for seed in range(4)}
    monkeypatch.setattr(transforms_module, "resize_image", _float_resize)
    for (index, seed), (image, target, meta) in items.items():
        reference = _former_item(ds, index, seed, transforms)
        assert image.shape == reference[0].shape and meta["size"] == tuple(reference[0].shape[-2:])
        assert int((image.int() - reference[0].int()).abs().max()) <= 1
        assert torch.equal(target.boxes, reference[1].boxes) and torch.equal(target.labels, reference[1].labels)


def _former_item(ds: CocoDetection, index: int, seed: int, transforms) -> tuple[torch.Tensor, Any]:
    """Item ``(index, seed)`` as msad computed it before torchvision's kernels: PIL decode (then float resize)."""
    image = torch.from_numpy(np.array(Image.open(ds.image_path(index)).convert("RGB"))).permute(2, 0, 1)
    target = ds.target(index, *image.shape[-2:])
    return transforms(image, target, torch.Generator().manual_seed(seed))


def _float_resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """msad's resize before torchvision's uint8 kernel: antialiased bilinear in float, rounded back."""
    out = torch.nn.functional.interpolate(image[None].float(), size=(height, width), mode="bilinear", antialias=True)
    return out[0].round().clamp(0, 255).to(torch.uint8)
