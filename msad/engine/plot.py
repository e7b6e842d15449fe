"""``curves.png``: training losses and evaluation metrics against iterations, drawn with PIL (no matplotlib)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from msad.serialization import atomic_write

__all__ = ["plot_curves", "nice_ticks"]

Series = dict[str, list[tuple[float, float]]]
_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
_PANEL_W, _PANEL_H, _MARGIN = 640, 420, (70, 40, 20, 55)  # left, top, right, bottom
_MAX_SERIES = 8


def plot_curves(records: Iterable[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Draw the loss panel (``train`` records) and the metric panel (``eval`` records) side by side.

    Args:
        records: ``metrics.jsonl`` records (see :mod:`msad.engine.metrics`).
        path: the PNG to write (atomically).
        title: text above the panels.
    """
    losses: Series = {}
    evals: Series = {}
    for record in records:
        target = losses if record.get("type") == "train" else evals if record.get("type") == "eval" else None
        if target is None:
            continue
        for key, value in record.items():
            if _is_curve_value(key, value, record.get("type")):
                target.setdefault(key, []).append((float(record["iteration"]), float(value)))
    losses = dict(sorted(losses.items(), key=lambda kv: kv[0] != "total_loss"))
    font = _font(13)
    image = Image.new("RGB", (2 * _PANEL_W, _PANEL_H + 30), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), title or "training curves", fill="black", font=font)
    _draw_panel(image, (0, 30), losses, ylabel="loss", title="training losses", font=font)
    _draw_panel(image, (_PANEL_W, 30), evals, ylabel="metric", title="evaluation", font=font)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering ``[low, high]`` (steps of 1, 2 or 5 × 10^k)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


def _is_curve_value(key: str, value: Any, kind: str | None) -> bool:
    """Which record fields become curves: losses for train records, every number for eval records."""
    if key in ("iteration", "type") or isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if not math.isfinite(value):
        return False
    return "loss" in key if kind == "train" else True


def _draw_panel(
    image: Image.Image, origin: tuple[int, int], series: Series, *, ylabel: str, title: str, font: ImageFont.ImageFont
) -> None:
    """One framed plot with ticks, grid, axis labels and a legend."""
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = _MARGIN
    x0, y0 = origin[0] + left, origin[1] + top
    x1, y1 = origin[0] + _PANEL_W - right, origin[1] + _PANEL_H - bottom
    draw.text((x0, origin[1] + 12), title, fill="black", font=font)
    series = dict(list(series.items())[:_MAX_SERIES])
    points = [p for values in series.values() for p in values]
    if not points:
        draw.rectangle((x0, y0, x1, y1), outline="#888888")
        draw.text(((x0 + x1) // 2 - 30, (y0 + y1) // 2), "no data", fill="#888888", font=font)
        return
    xticks = nice_ticks(min(p[0] for p in points), max(p[0] for p in points))
    yticks = nice_ticks(min(p[1] for p in points), max(p[1] for p in points))
    (xa, xb), (ya, yb) = (xticks[0], xticks[-1]), (yticks[0], yticks[-1])

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        return x0 + (x - xa) / ((xb - xa) or 1) * (x1 - x0), y1 - (y - ya) / ((yb - ya) or 1) * (y1 - y0)

    for tick in xticks:
        px, _ = to_pixel(tick, ya)
        draw.line((px, y0, px, y1), fill="#e6e6e6")
        draw.text((px - 12, y1 + 6), _tick_label(tick), fill="black", font=font)
    for tick in yticks:
        _, py = to_pixel(xa, tick)
        draw.line((x0, py, x1, py), fill="#e6e6e6")
        draw.text((origin[0] + 6, py - 7), _tick_label(tick), fill="black", font=font)
    draw.rectangle((x0, y0, x1, y1), outline="black")
    draw.text(((x0 + x1) // 2 - 25, y1 + 26), "iteration", fill="black", font=font)
    _vertical_text(image, (origin[0] + 2, (y0 + y1) // 2 + 40), ylabel, font)
    for index, (name, values) in enumerate(series.items()):
        color = _COLORS[index % len(_COLORS)]
        pixels = [to_pixel(x, y) for x, y in sorted(values)]
        if len(pixels) > 1:
            draw.line(pixels, fill=color, width=2)
        for px, py in pixels if len(pixels) <= 50 else pixels[-1:]:
            draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=color)
        ly = y0 + 8 + 16 * index
        draw.line((x1 - 150, ly + 7, x1 - 130, ly + 7), fill=color, width=3)
        draw.text((x1 - 125, ly), name[:18], fill="black", font=font)


def _vertical_text(image: Image.Image, anchor: tuple[int, int], text: str, font: ImageFont.ImageFont) -> None:
    """Paste ``text`` rotated by 90° with its bottom-left corner at ``anchor``."""
    label = Image.new("RGB", (8 * len(text) + 8, 18), "white")
    ImageDraw.Draw(label).text((2, 1), text, fill="black", font=font)
    rotated = label.rotate(90, expand=True)
    image.paste(rotated, (anchor[0], anchor[1] - rotated.height))


def _tick_label(value: float) -> str:
    """A compact tick label."""
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


def _font(size: int) -> ImageFont.ImageFont:
    """PIL's built-in font at ``size`` when FreeType is available, else its bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()
