"""Session-wide fixtures: a small synthetic dataset, the tiny recipe pointing at it, and tiny trained runs.

Everything here is built lazily, once per session, and shared (read-only) by the API and CLI tests, so the
whole teacher → student pipeline trains only once (a few seconds on two CPU cores).

Two families: ``trained_*`` are 4-iteration runs on the cluttered synthetic set (they test plumbing; their AP is
0), ``learned_*`` are 40-iteration runs on :func:`write_easy_coco`'s few large high-contrast objects, where AP is
clearly above zero, so tests can compare real numbers and see the method (branch, frame, padding…).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from msad import api
from msad.config import Recipe, load_recipe

REPO = Path(__file__).resolve().parents[1]
TINY_RECIPE = REPO / "recipes" / "tiny.toml"
SYNTH_SIZE = (128, 160)  # (h, w) of the synthetic images


def data_overrides_for(root: Path) -> list[str]:
    """``--set`` overrides that point a recipe at the COCO-layout dataset in ``root``."""
    return [
        f'data.train_images="{root / "train"}"',
        f'data.train_annotations="{root / "annotations" / "train.json"}"',
        f'data.val_images="{root / "val"}"',
        f'data.val_annotations="{root / "annotations" / "val.json"}"',
    ]


def tiny_overrides_for(root: Path) -> list[str]:
    """``--set`` overrides that point ``recipes/tiny.toml`` at the dataset in ``root`` and make it tiny."""
    return [
        *data_overrides_for(root),
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


EASY_CATEGORIES = ((1, "square"), (3, "disc"))
EASY_SIZE = 64  # short side of every easy image; the validation set alternates 64×64 and 64×96
LEARNED_ITERS = 40


def write_easy_coco(root: Path, *, train: int = 16, val: int = 8, seed: int = 0) -> Path:
    """A COCO dataset a tiny detector learns in a few dozen CPU iterations; returns ``root``.

    One or two large (19–29 px) objects per image, white squares and orange discs on black, one per image half so
    they never overlap. Validation images alternate 64×64 and 64×96 so that batches mix sizes (padding tests).
    """
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, count, code in (("train", train, 0), ("val", val, 1)):
        (root / split).mkdir(exist_ok=True)
        coco: dict = {"images": [], "annotations": [], "categories": [{"id": c, "name": n} for c, n in EASY_CATEGORIES]}
        for index in range(count):
            rng = np.random.default_rng([seed, code, index])
            height, width = EASY_SIZE, EASY_SIZE + (32 if split == "val" and index % 2 else 0)
            image = Image.new("RGB", (width, height))
            draw = ImageDraw.Draw(image)
            for half in rng.permutation(2)[: int(rng.integers(1, 3))]:
                category = EASY_CATEGORIES[int(rng.integers(0, 2))][0]
                side = int(rng.integers(19, 30))
                x = int(half * width // 2 + rng.integers(0, width // 2 - side + 1))
                y = int(rng.integers(0, height - side + 1))
                shape = draw.rectangle if category == 1 else draw.ellipse
                shape([x, y, x + side - 1, y + side - 1], fill=(255, 255, 255) if category == 1 else (255, 96, 0))
                coco["annotations"].append({
                    "id": len(coco["annotations"]) + 1, "image_id": index + 1, "category_id": category,
                    "bbox": [x, y, side, side], "area": side * side, "iscrowd": 0,
                })
            name = f"{index + 1:06d}.png"
            image.save(root / split / name)
            coco["images"].append({"id": index + 1, "file_name": name, "height": height, "width": width})
        (root / "annotations" / f"{split}.json").write_text(json.dumps(coco), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def easy_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of the :func:`write_easy_coco` dataset (16 train / 8 val images, generated once)."""
    return write_easy_coco(tmp_path_factory.mktemp("easy"))


@pytest.fixture(scope="session")
def easy_recipe(easy_dataset: Path) -> Recipe:
    """``recipes/tiny.toml`` on the easy dataset: 40 iterations of batch 4 at 64 px, KD ramped over 10."""
    return load_recipe(TINY_RECIPE, overrides=[
        *data_overrides_for(easy_dataset),
        f"data.train_sizes=[{EASY_SIZE}]",
        "data.max_size=96",
        f"data.test_size={EASY_SIZE}",
        f"solver.iters={LEARNED_ITERS}",
        "solver.steps=[]",
        "solver.warmup_iters=5",
        "solver.batch_size=4",
        "run.log_period=20",
        "teacher.size_divisibility=64",
        "distill.ramp_iters=10",
    ])


@pytest.fixture(scope="session")
def learned_teacher(easy_recipe: Recipe, tmp_path_factory: pytest.TempPathFactory) -> api.TrainResult:
    """A teacher trained to a clearly non-zero AP on the easy dataset (read-only)."""
    return api.train_teacher(easy_recipe, output=tmp_path_factory.mktemp("learned") / "teacher")


@pytest.fixture(scope="session")
def learned_student(easy_recipe: Recipe, learned_teacher: api.TrainResult, tmp_path_factory: pytest.TempPathFactory) -> api.TrainResult:
    """A student distilled from :func:`learned_teacher` on the easy dataset (read-only)."""
    return api.distill(easy_recipe, teacher=learned_teacher.weights, output=tmp_path_factory.mktemp("learned") / "student")


@pytest.fixture(scope="session")
def learned_baseline(easy_recipe: Recipe, tmp_path_factory: pytest.TempPathFactory) -> api.TrainResult:
    """An HR FCOS baseline trained on the easy dataset (read-only)."""
    return api.train(easy_recipe, output=tmp_path_factory.mktemp("learned") / "baseline")


@pytest.fixture
def interrupt_training_at(monkeypatch: pytest.MonkeyPatch):
    """``interrupt_training_at(i)``: Ctrl-C arrives as iteration ``i`` starts (``Trainer.run_step`` is patched)."""
    from msad.engine.trainer import Trainer

    step = Trainer.run_step

    def arm(at: int) -> None:
        def run_step(self, iteration, batch):
            if iteration == at:
                raise KeyboardInterrupt
            return step(self, iteration, batch)

        monkeypatch.setattr(Trainer, "run_step", run_step)

    return arm


@pytest.fixture
def broken_dataset(synth_dataset: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the session dataset with one problem of each kind ``msad data check`` finds, all in ``train``.

    Returns ``(root, {kind: file_name})``: a missing file, a garbage file (unreadable), a PNG cut in half
    (truncated), an annotation width 7 px too large (wrong size) and a NaN box (bad box).
    """
    import math
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(synth_dataset, root)
    train = json.loads((root / "annotations" / "train.json").read_text())
    names = [img["file_name"] for img in train["images"]]
    (root / "train" / names[0]).unlink()
    (root / "train" / names[1]).write_bytes(b"garbage, not an image")
    cut = root / "train" / names[2]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    train["images"][3]["width"] += 7
    next(ann for ann in train["annotations"] if ann["image_id"] == train["images"][4]["id"])["bbox"][2] = math.nan
    (root / "annotations" / "train.json").write_text(json.dumps(train))
    return root, {"missing": names[0], "unreadable": names[1], "truncated": names[2], "wrong size": names[3], "bad box": names[4]}


@pytest.fixture(scope="session")
def tiny_recipe_for():
    """``tiny_recipe_for(root)``: ``recipes/tiny.toml`` made tiny and pointed at the COCO-layout dataset in ``root``."""
    return lambda root: load_recipe(TINY_RECIPE, overrides=tiny_overrides_for(root))


_RENAMED_PLUGIN = '''
"""A backbone whose initialisation-file and freezing options have names of their own (msad's tests)."""
from pathlib import Path
from torch import nn
from msad.plugin_declarations import declare_options
from msad.structures import FeatureInfo

OPENED: list[str] = []  # every init file the builder was asked to open


class Net(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Conv2d(3 if i == 0 else channels, channels, 3, stride=4 if i == 0 else 2, padding=1) for i in range(4)
        )
        self.feature_info = [FeatureInfo(f"res{i + 2}", channels, 4 * 2**i) for i in range(4)]

    def forward(self, x):
        out = {}
        for info, stage in zip(self.feature_info, self.stages):
            x = out[info.name] = stage(x)
        return out


@declare_options(init_files=("init_file",), freeze="frozen_stages", training=("stats",), width="scale")
def build(*, channels: int = 8, scale: float = 1.0, init_file: str | None = None, frozen_stages: int = 0,
          stats: str = "batch") -> Net:
    if init_file is not None:
        OPENED.append(init_file)
        Path(init_file).read_bytes()
    return Net(round(channels * scale))
'''


@pytest.fixture
def with_plugins(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """Add fake entry points next to the real ones, each with its importable module:
    ``with_plugins(module, source, entry_point)`` writes ``source`` as ``module`` in a fresh folder on ``sys.path``."""
    import sys

    from msad.plugins import registry

    real = registry.entry_points
    added: list = []
    where = tmp_path_factory.mktemp("plugins")
    monkeypatch.setattr(registry, "entry_points", lambda *, group: [*real(group=group), *(e for e in added if e.group == group)])
    monkeypatch.syspath_prepend(str(where))
    monkeypatch.delenv("MSAD_PLUGINS", raising=False)

    def add(module: str, source: str, ep) -> None:
        (where / f"{module}.py").write_text(source, encoding="utf-8")
        sys.modules.pop(module, None)
        added.append(ep)

    return add


@pytest.fixture
def renamed_options_plugin(with_plugins):
    """Backbone ``renamed`` (a third-party plugin): init file option ``init_file``, freezing ``frozen_stages``,
    training-only ``stats``, width ``scale``. Returns its module (``OPENED`` lists the init files it opened)."""
    import importlib
    from importlib.metadata import EntryPoint
    from types import SimpleNamespace

    ep = EntryPoint("renamed", "msad_test_renamed:build", "msad.backbones")
    with_plugins("msad_test_renamed", _RENAMED_PLUGIN, ep._for(SimpleNamespace(name="renamed-dist", version="0.1")))
    return importlib.import_module("msad_test_renamed")
