"""``curves.png`` from a ``metrics.jsonl`` with train and eval records (PIL only)."""

import json

import pytest
from PIL import Image

from msad.engine.metrics import read_metrics
from msad.engine.plot import nice_ticks, plot_curves


def non_white_pixels(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    region = image.convert("RGB").crop(box)
    return sum(count for count, color in region.getcolors(maxcolors=1 << 20) if color != (255, 255, 255))


def test_curves_png_from_metrics_jsonl(tmp_path):
    lines = []
    for it in range(20, 201, 20):
        lines.append({"type": "train", "iteration": it, "lr": 0.01, "loss_cls": 1.0 / it, "loss_box": 0.5 + 1 / it,
                      "total_loss": 1.5 / it + 0.5, "images_per_s": 12.0, "time": 0.1})
        if it % 100 == 0:
            lines.append({"type": "eval", "iteration": it, "AP": it / 10, "AP50": it / 5, "APs": float("nan")})
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"type": "train", "iter')  # unfinished line
    out = plot_curves(read_metrics(path), tmp_path / "curves.png", title="run")
    assert out == tmp_path / "curves.png" and out.stat().st_size > 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as image:
        image.verify()
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (1280, 450)
        left, right = non_white_pixels(image, (0, 30, 640, 450)), non_white_pixels(image, (640, 30, 1280, 450))
        assert left > 500 and right > 500  # both panels hold a plot
        colors = {c for _, c in image.convert("RGB").getcolors(maxcolors=1 << 20)}
        assert (0x1F, 0x77, 0xB4) in colors and (0xD6, 0x27, 0x28) in colors  # at least two curve colours
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_curves_without_eval_records_say_no_data(tmp_path):
    out = plot_curves([{"type": "train", "iteration": 1, "total_loss": 2.0}], tmp_path / "c.png")
    with Image.open(out) as image:
        assert image.size == (1280, 450) and non_white_pixels(image, (640, 30, 1280, 450)) > 0


@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (3.2, 3.2), (-5.0, 120.0), (1e-4, 3e-4)])
def test_nice_ticks_cover_the_range(low, high):
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high and 2 <= len(ticks) <= 12
    assert ticks == sorted(ticks)
