"""``api.predict`` / ``Predictor`` on every kind of weights and on awkward image files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from msad import api
from msad.data import read_image
from msad.data.images import ImageReadError

ROLES = ("baseline", "teacher", "student")


@pytest.fixture(scope="module")
def image_dir(synth_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three synthetic images, a grayscale PNG, an RGBA PNG and a JPEG with a unicode name, of various sizes."""
    root = tmp_path_factory.mktemp("images")
    for src in sorted((synth_dataset / "val").iterdir())[:3]:
        shutil.copy(src, root / src.name)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (90, 120), dtype=np.uint8), mode="L").save(root / "gray.png")
    Image.fromarray(rng.integers(0, 256, (100, 140, 4), dtype=np.uint8), mode="RGBA").save(root / "alpha.png")
    Image.fromarray(rng.integers(0, 256, (77, 133, 3), dtype=np.uint8), mode="RGB").save(root / "ñandú 画像.jpg", quality=90)
    (root / "notes.txt").write_text("not an image, ignored by suffix")
    return root


@pytest.mark.parametrize("role", ROLES)
def test_predict_writes_json_and_pngs(role: str, request: pytest.FixtureRequest, image_dir: Path, tmp_path: Path) -> None:
    weights = request.getfixturevalue(f"trained_{role}").weights
    out = tmp_path / "out"
    result = api.predict(weights, [image_dir], out, score_threshold=0.0, device="cpu")
    files = sorted(p for p in image_dir.iterdir() if p.suffix != ".txt")
    assert result.predictions == out / "predictions.json"
    preds = json.loads(result.predictions.read_text(encoding="utf-8"))
    assert isinstance(preds, list) and len(preds) == result.count > 0
    ckpt = api.read_checkpoint(weights)
    ids = {cid for cid, _ in ckpt.label_space}
    sizes = {str(p): Image.open(p).size for p in files}  # (w, h)
    for pred in preds:
        assert {"bbox", "score", "category_id", "file_name"} <= set(pred)
        assert pred["category_id"] in ids
        assert 0.0 <= pred["score"] <= 1.0
        w, h = sizes[pred["file_name"]]
        x, y, bw, bh = pred["bbox"]
        assert bw >= 0 and bh >= 0
        assert -0.01 <= x and -0.01 <= y and x + bw <= w + 0.01 and y + bh <= h + 0.01
    assert {pred["file_name"] for pred in preds} <= set(sizes)
    assert sorted(p.name for p in result.images) == sorted(f"{p.stem}.png" for p in files)
    for png in result.images:
        with Image.open(png) as drawn:
            assert drawn.format == "PNG"
            assert drawn.size == sizes[str(next(p for p in files if p.stem == png.stem))]


@pytest.mark.parametrize("role", ROLES)
def test_boxes_come_back_in_the_input_frame(role: str, request: pytest.FixtureRequest) -> None:
    """A student takes the image as its LR input and answers in that image's frame; the others in the original's."""
    ckpt = api.read_checkpoint(request.getfixturevalue(f"trained_{role}").weights)
    predictor = api.Predictor(ckpt, score_threshold=0.0, device="cpu")
    height, width = 75, 101
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    det = predictor(image)
    assert len(det.boxes) > 0
    boxes = det.boxes
    assert boxes[:, 0].min() >= 0 and boxes[:, 1].min() >= 0
    assert boxes[:, 2].max() <= width + 1e-3 and boxes[:, 3].max() <= height + 1e-3
    # the detections span the image (a frame off by k would squeeze them into a half or quarter of it)
    assert boxes[:, 2].max() > 0.6 * width and boxes[:, 3].max() > 0.6 * height


def test_a_bad_image_stops_before_anything_is_written(trained_student: api.TrainResult, image_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "in"
    shutil.copytree(image_dir, bad)
    (bad / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    out = tmp_path / "out"
    with pytest.raises(ImageReadError, match="zz_broken.png"):
        api.predict(trained_student.weights, [bad], out, device="cpu")
    assert not (out / "predictions.json").exists()
    assert not out.exists() or not any(out.iterdir())


def test_missing_input_and_empty_directory(trained_student: api.TrainResult, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such image or directory"):
        api.predict(trained_student.weights, [tmp_path / "nope.png"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        api.predict(trained_student.weights, [tmp_path / "empty"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_student_takes_each_image_as_eval_does_unless_told_lr(trained_student: api.TrainResult, synth_dataset: Path, tmp_path: Path) -> None:
    """By default a student sees an image as ``msad eval`` shows it (resized, then its ×1/k copy); ``lr`` keeps the
    old reading (the image is its LR input); the result says which."""
    ckpt = api.read_checkpoint(trained_student.weights)
    image = read_image(sorted((synth_dataset / "val").iterdir())[0])
    default, hr, lr = (api.Predictor(ckpt, score_threshold=0.0, device="cpu", input_scale=s) for s in (None, "hr", "lr"))
    assert default.input_scale == "hr"
    got, want, other = default(image), hr(image), lr(image)
    assert torch.equal(got.boxes, want.boxes) and torch.equal(got.scores, want.scores)
    assert got.boxes.shape != other.boxes.shape or not torch.allclose(got.boxes, other.boxes)
    images = [str(p) for p in sorted((synth_dataset / "val").iterdir())[:2]]
    assert api.predict(trained_student.weights, images, tmp_path / "a", device="cpu", draw=False).input_scale == "hr"
    told = api.predict(trained_student.weights, images, tmp_path / "b", device="cpu", draw=False, input_scale="lr")
    assert told.input_scale == "lr"


def test_draw_threshold_hides_boxes_from_the_drawings_only(trained_baseline: api.TrainResult, image_dir: Path, tmp_path: Path) -> None:
    result = api.predict(trained_baseline.weights, [image_dir], tmp_path / "hidden", score_threshold=0.0, device="cpu",
                         draw_threshold=1.0)  # no detection scores 1: nothing drawn, all kept in the JSON
    assert result.count > 0 and len(json.loads(result.predictions.read_text())) == result.count
    assert result.skipped == [image_dir / "notes.txt"]  # counted, not silently dropped
    shown = api.predict(trained_baseline.weights, [image_dir], tmp_path / "shown", score_threshold=0.0, device="cpu")
    by_stem = {p.stem: p for p in image_dir.iterdir() if p.suffix != ".txt"}
    for hidden, _ in zip(sorted(result.images), sorted(shown.images), strict=True):
        original = read_image(by_stem[hidden.stem]).permute(1, 2, 0).numpy()
        assert np.array_equal(np.asarray(Image.open(hidden).convert("RGB")), original)
    assert any(not np.array_equal(np.asarray(Image.open(p).convert("RGB")), read_image(by_stem[p.stem]).permute(1, 2, 0).numpy())
               for p in shown.images)


def test_the_runtime_is_chosen_by_content_not_name(trained_baseline: api.TrainResult, image_dir: Path, tmp_path: Path) -> None:
    misnamed = tmp_path / "weights.onnx"  # msad weights whatever the name says (#23)
    shutil.copy(trained_baseline.weights, misnamed)
    result = api.predict(misnamed, [image_dir], tmp_path / "out", score_threshold=0.0, device="cpu", draw=False)
    assert result.count > 0
