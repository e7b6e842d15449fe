"""Session-wide fixtures: a small synthetic dataset, the tiny recipe pointing at it, and tiny trained runs.

Everything here is built lazily, once per session, and shared (read-only) by the API and CLI tests, so the
whole teacher → student pipeline trains only once (a few seconds on two CPU cores).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from msad import api
from msad.config import Recipe, load_recipe

REPO = Path(__file__).resolve().parents[1]
TINY_RECIPE = REPO / "recipes" / "tiny.toml"
SYNTH_SIZE = (128, 160)  # (h, w) of the synthetic images


def tiny_overrides_for(root: Path) -> list[str]:
    """``--set`` overrides that point ``recipes/tiny.toml`` at the dataset in ``root`` and make it tiny."""
    return [
        f'data.train_images="{root / "train"}"',
        f'data.train_annotations="{root / "annotations" / "train.json"}"',
        f'data.val_images="{root / "val"}"',
        f'data.val_annotations="{root / "annotations" / "val.json"}"',
        "data.train_sizes=[128]",
        "data.max_size=160",
        "data.test_size=128",
        "solver.iters=4",
        "solver.steps=[3]",
        "solver.warmup_iters=1",
        "solver.batch_size=4",
        "run.log_period=2",
        "teacher.size_divisibility=64",
        # a 4-iteration model scores below the default 0.05: keep every detection so predictions are not empty
        "model.postprocess.score_threshold=0.0",
    ]


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a 16 train / 8 val synthetic COCO dataset of 128×160 images (generated once)."""
    root = tmp_path_factory.mktemp("synth")
    api.synth_data(root, train=16, val=8, seed=0, image_size=SYNTH_SIZE)
    return root


@pytest.fixture(scope="session")
def tiny_overrides(synth_dataset: Path) -> list[str]:
    """The overrides of :func:`tiny_overrides_for` for the session dataset (a fresh list per use is not needed)."""
    return tiny_overrides_for(synth_dataset)


@pytest.fixture(scope="session")
def tiny_recipe(tiny_overrides: list[str]) -> Recipe:
    """``recipes/tiny.toml`` on the session dataset: 4 iterations of batch 4 at 128×160."""
    return load_recipe(TINY_RECIPE, overrides=tiny_overrides)


@pytest.fixture(scope="session")
def tiny_recipe_file(tiny_recipe: Recipe, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The resolved tiny recipe written as a TOML file, for the CLI."""
    path = tmp_path_factory.mktemp("recipe") / "tiny.toml"
    path.write_text(tiny_recipe.dump_toml(), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_teacher(tiny_recipe: Recipe, tmp_path_factory: pytest.TempPathFactory) -> api.TrainResult:
    """A 4-iteration MSAD teacher run (do not write into its directory: copy it first)."""
    return api.train_teacher(tiny_recipe, output=tmp_path_factory.mktemp("runs") / "teacher")


@pytest.fixture(scope="session")
def trained_student(tiny_recipe: Recipe, trained_teacher: api.TrainResult, tmp_path_factory: pytest.TempPathFactory) -> api.TrainResult:
    """A 4-iteration student distilled from :func:`trained_teacher`."""
    return api.distill(tiny_recipe, teacher=trained_teacher.weights, output=tmp_path_factory.mktemp("runs") / "student")


@pytest.fixture(scope="session")
def trained_baseline(tiny_recipe: Recipe, tmp_path_factory: pytest.TempPathFactory) -> api.TrainResult:
    """A 4-iteration FCOS baseline run."""
    return api.train(tiny_recipe, output=tmp_path_factory.mktemp("runs") / "baseline")
