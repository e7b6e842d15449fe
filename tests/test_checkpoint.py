"""Detector weights files (``msad.checkpoint``) with a plugin whose options msad knows only by its declaration."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from msad.build import model_width
from msad.checkpoint import check_compatible, detector_metadata, load_model, read_checkpoint, without_init_files
from msad.config import Recipe, recipe_from_dict
from msad.errors import CheckpointError
from msad.roles import build_model
from msad.serialization import save_weights

DATA = {"train_images": "t", "train_annotations": "t.json", "val_images": "v", "val_annotations": "v.json"}
LABELS = [(1, "a"), (3, "b")]


def _recipe(**backbone) -> Recipe:
    """A recipe over the ``renamed`` backbone plugin with ``backbone`` options, a small neck and head."""
    return recipe_from_dict({
        "data": DATA, "solver": {"batch_size": 2, "lr": 0.02, "iters": 100},
        "model": {
            "backbone": {"name": "renamed", **backbone}, "neck": {"name": "fpn", "out_channels": 8},
            "head": {"name": "fcos", "num_convs": 1},
        },
    })


def _checkpoint(recipe: Recipe, path: Path, *, role: str = "teacher") -> Path:
    """A weights file as training writes it from ``recipe`` (its init file was read then: the model is built here
    without it, the metadata keeps it)."""
    model = build_model(without_init_files(recipe), role=role, num_classes=len(LABELS))
    return save_weights(path, model.state_dict(), detector_metadata(recipe, role=role, label_space=LABELS))


def test_a_declared_init_file_is_never_opened_when_weights_are_loaded(
    renamed_options_plugin: ModuleType, tmp_path: Path
) -> None:
    init = tmp_path / "imagenet.safetensors"  # not there: opening it would fail
    recipe = _recipe(init_file=str(init), frozen_stages=1)
    assert without_init_files(recipe).model.backbone.options == {"frozen_stages": 1}
    ckpt = read_checkpoint(_checkpoint(recipe, tmp_path / "teacher.safetensors"))
    assert ckpt.recipe.model.backbone.options["init_file"] == str(init)  # the metadata keeps what training read
    model = load_model(ckpt)
    assert renamed_options_plugin.OPENED == []
    assert model.detector.backbone.stages[0].out_channels == 8


def test_a_different_init_file_freezing_or_training_option_is_not_an_architecture_difference(
    renamed_options_plugin: ModuleType, tmp_path: Path
) -> None:
    ckpt = read_checkpoint(_checkpoint(_recipe(init_file="a.safetensors", channels=8), tmp_path / "w.safetensors"))
    check_compatible(ckpt, _recipe(init_file="b.safetensors", channels=8, frozen_stages=2, stats="frozen"))
    with pytest.raises(CheckpointError, match=r"model\.backbone\.channels is 8, the recipe asks for 16$"):
        check_compatible(ckpt, _recipe(init_file="a.safetensors", channels=16))


def test_the_declared_width_is_the_checkpoints_width(renamed_options_plugin: ModuleType, tmp_path: Path) -> None:
    recipe = _recipe(scale=0.5)
    path = _checkpoint(recipe, tmp_path / "w.safetensors")
    ckpt = read_checkpoint(path)
    assert model_width(recipe) == ckpt.width == json.loads(ckpt.metadata["width"]) == 0.5
    with pytest.raises(CheckpointError, match=r"width 0\.5 does not match the recipe's width 1\.0"):
        check_compatible(ckpt, _recipe(scale=1.0))
