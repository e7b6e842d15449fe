"""The compact training set: numpy storage only, the same targets as the per-annotation lists it replaced."""

from __future__ import annotations

import gc
import json
import random
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from pycocotools.coco import COCO

from msad.data.coco import CocoDetection
from msad.data.coco_table import ImageTable
from msad.data.images import ImageReadError

CATEGORIES = [{"id": 9, "name": "b"}, {"id": 2, "name": "a"}, {"id": 5, "name": "c"}]


def _generated(num_images: int, seed: int = 0) -> dict[str, Any]:
    """Shuffled image ids, interleaved annotations with crowd, polygons, out-of-image and tiny boxes, odd names."""
    rng = random.Random(seed)
    ids = rng.sample(range(1, 10 * num_images + 1), num_images)
    images = []
    for n, image_id in enumerate(ids):
        image = {"id": image_id, "file_name": f"dir/{image_id}-é{'x' * (n % 7)}.jpg", "width": rng.randint(20, 90),
                 "height": rng.randint(20, 90)}
        if n % 11 == 3:
            del image["height"]
        images.append(image)
    annotations = []
    for ann_id in range(1, 6 * num_images):
        image = rng.choice(images)
        x, y = rng.uniform(-10, 90), rng.uniform(-10, 90)
        w, h = rng.choice([rng.uniform(0, 3), rng.uniform(1, 60)]), rng.uniform(0.5, 60)
        annotations.append({
            "id": ann_id, "image_id": image["id"], "category_id": rng.choice([2, 5, 9]), "bbox": [x, y, w, h],
            "iscrowd": int(rng.random() < 0.1), "area": w * h, "segmentation": [[x, y, x + w, y, x + w, y + h]],
        })
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def _reference_targets(data: dict[str, Any], index: int, height: int, width: int) -> tuple[list, list]:
    """What the dataset returned before the compact table: per-annotation lists, crowd left out, clipped, > 1 px."""
    label_of = {cid: label for label, cid in enumerate(sorted(c["id"] for c in data["categories"]))}
    image_id = sorted(img["id"] for img in data["images"])[index]
    rows = [
        ([ann["bbox"][0], ann["bbox"][1], ann["bbox"][0] + ann["bbox"][2], ann["bbox"][1] + ann["bbox"][3]],
         label_of[ann["category_id"]])
        for ann in data["annotations"] if ann["image_id"] == image_id and not ann["iscrowd"]
    ]
    boxes = torch.tensor([b for b, _ in rows], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([lab for _, lab in rows], dtype=torch.int64)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    keep = ((boxes[:, 2] - boxes[:, 0]) > 1.0) & ((boxes[:, 3] - boxes[:, 1]) > 1.0)
    return boxes[keep].tolist(), labels[keep].tolist()


def _dataset(tmp_path: Path, data: dict[str, Any], **kwargs: Any) -> CocoDetection:
    path = tmp_path / f"ann-{len(data['images'])}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return CocoDetection(tmp_path / "img", path, check_files=False, **kwargs)


def test_targets_are_those_of_the_per_annotation_lists(tmp_path: Path) -> None:
    data = _generated(60)
    ds = _dataset(tmp_path, data, train=True)
    assert ds.image_ids == sorted(img["id"] for img in data["images"])
    assert ds.num_boxes == sum(1 for ann in data["annotations"] if not ann["iscrowd"])
    names = {img["id"]: img["file_name"] for img in data["images"]}
    for index in range(len(ds)):
        assert ds.image_path(index) == tmp_path / "img" / names[ds.image_ids[index]]
        height, width = 37, 61
        target = ds.target(index, height, width)
        boxes, labels = _reference_targets(data, index, height, width)
        assert target.boxes.dtype == torch.float32 and target.labels.dtype == torch.int64
        assert target.boxes.tolist() == boxes and target.labels.tolist() == labels
    assert ds.target(0, 37, 61).boxes.data_ptr() != ds.target(0, 37, 61).boxes.data_ptr()  # a fresh copy each time


def test_training_set_keeps_no_json_nor_pycocotools_object(tmp_path: Path) -> None:
    def reachable(ds: CocoDetection) -> tuple[int, list[type]]:
        """Objects reachable from the dataset, modules, classes and functions left out."""
        seen, stack, kinds = {id(ds)}, [ds], []
        while stack:
            for ref in gc.get_referents(stack.pop()):
                skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
                if id(ref) not in seen and not isinstance(ref, skip):
                    seen.add(id(ref))
                    stack.append(ref)
                    kinds.append(type(ref))
        return len(seen), kinds

    small, kinds = reachable(_dataset(tmp_path, _generated(10), train=True))
    large, _ = reachable(_dataset(tmp_path, _generated(300), train=True))
    assert small == large  # nothing per image or per annotation: the table's arrays hold it all
    assert COCO not in kinds
    train = _dataset(tmp_path, _generated(10), train=True)
    with pytest.raises(AttributeError, match="train=False"):
        _ = train.coco
    evaluation = _dataset(tmp_path, _generated(10), train=False)
    assert isinstance(evaluation.coco, COCO) and len(evaluation.coco.getImgIds()) == 10  # what COCOeval reads


def test_table_sizes_names_and_views() -> None:
    images = [{"id": 5, "file_name": "b\ud800.png", "width": 4}, {"id": 2, "file_name": "a.png", "width": 3, "height": 2}]
    table = ImageTable.from_coco(images, [{"image_id": 5, "category_id": 1, "bbox": [1, 2, 3, 4]}], {1: 0})
    assert table.image_ids.tolist() == [2, 5] and table.file_name(1) == "b\ud800.png"
    assert table.size(0) == (2, 3) and table.size(1) is None  # no height in the file
    boxes, labels = table.image_boxes(1)
    assert boxes.tolist() == [[1, 2, 4, 6]] and labels.tolist() == [0] and table.image_boxes(0)[0].shape == (0, 4)


def test_unchecked_files_fail_or_skip_at_first_read(tmp_path: Path) -> None:
    data = {"images": [{"id": 1, "file_name": "gone.png", "width": 8, "height": 8}], "annotations": [],
            "categories": CATEGORIES}
    strict = _dataset(tmp_path, data, train=True)  # no stat at construction
    with pytest.raises(ImageReadError, match=r"gone\.png.*file not found"):
        strict[0]
    evaluation = _dataset(tmp_path, data, train=False, on_bad_image="skip")
    assert evaluation[0] is None


def test_orientation_for_grouping_comes_from_the_file_sizes(tmp_path: Path) -> None:
    from msad.data.coco import DatasetError

    images = [{"id": 1, "file_name": "a.png", "width": 8, "height": 6}, {"id": 2, "file_name": "b.png", "width": 6,
              "height": 8}, {"id": 3, "file_name": "c.png", "width": 5, "height": 5}]
    ds = _dataset(tmp_path, {"images": images, "annotations": [], "categories": CATEGORIES}, train=True)
    assert ds.landscape().tolist() == [True, False, False]  # square goes with portrait, as detectron2
    del images[1]["height"]
    unsized = _dataset(tmp_path, {"images": images, "annotations": [], "categories": CATEGORIES}, train=True)
    with pytest.raises(DatasetError, match=r"1 of 3 images .* no 'width'/'height' \(first: 'b.png'\).*group_aspect_ratio = false"):
        unsized.landscape()
