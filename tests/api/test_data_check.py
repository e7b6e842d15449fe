"""``api.check_data``: a generated dataset with each kind of problem planted; all are found, clean data has none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from msad import api
from msad.data import DatasetError


def test_clean_synthetic_data_has_no_problem_and_is_counted(synth_dataset: Path, tiny_recipe_for) -> None:
    report = api.check_data(tiny_recipe_for(synth_dataset), workers=4)
    assert report.problems == [] and report.counts == {}
    train, val = report.splits
    coco = json.loads((synth_dataset / "annotations" / "train.json").read_text())
    assert (train.split, train.images, train.readable) == ("train", 16, 16) and (val.images, val.readable) == (8, 8)
    assert train.instances + train.crowd == len(coco["annotations"]) and sum(train.sizes) == train.instances
    assert train.classes == len(coco["categories"]) and train.input_short == 128


def test_each_problem_kind_is_found_once(broken_dataset: tuple[Path, dict[str, str]], tiny_recipe_for) -> None:
    root, planted = broken_dataset
    seen: list[tuple[int, int]] = []
    report = api.check_data(tiny_recipe_for(root), workers=3, progress=lambda done, total: seen.append((done, total)))
    found = {(p.kind, p.file_name) for p in report.problems}
    assert found == {(kind, name) for kind, name in planted.items()}
    assert all(p.split == "train" and p.detail and "\n" not in p.detail for p in report.problems)
    assert report.counts == dict.fromkeys(["missing", "unreadable", "truncated", "wrong size", "bad box"], 1)
    assert report.splits[0].readable == 13 and seen[-1] == (24, 24)
    wrong = next(p for p in report.problems if p.kind == "wrong size")
    assert "the annotation says 167×128, the image is 160×128" in wrong.detail


def test_full_decode_is_optional_and_agrees(broken_dataset: tuple[Path, dict[str, str]], tiny_recipe_for) -> None:
    recipe = tiny_recipe_for(broken_dataset[0])
    quick, full = api.check_data(recipe, workers=2), api.check_data(recipe, workers=2, decode=True)
    assert full.decoded and {p.file_name for p in full.problems} == {p.file_name for p in quick.problems}


def test_a_missing_annotation_file_is_one_line(tmp_path: Path, tiny_recipe_for) -> None:
    with pytest.raises(DatasetError, match="not found"):
        api.check_data(tiny_recipe_for(tmp_path / "nowhere"))
