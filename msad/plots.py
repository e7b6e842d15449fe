"""Figures drawn with matplotlib (Agg canvas, headless): a run's ``curves.png`` and the accuracy comparison.

``metrics.jsonl`` stays the source of truth; these figures are drawn from its records and can be redrawn at any
time (``plot_curves(read_metrics(run / "metrics.jsonl"), run / "curves.png")``). Nothing here touches
``matplotlib.pyplot``'s global state: each figure has its own Agg canvas.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msad.serialization import atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_curves", "curves_figure", "plot_accuracy_comparison", "accuracy_figure"]

Series = dict[str, list[tuple[float, float]]]
#: Colour per loss term (the suffix after the branch prefix); unknown terms cycle through matplotlib's palette.
_TERM_COLOURS = {"total_loss": "black", "loss_cls": "tab:blue", "loss_box": "tab:orange", "loss_ctr": "tab:green",
                 "loss_kd": "tab:purple"}
#: Line style per teacher branch prefix.
_BRANCH_STYLES = {"hr_": "-", "lr_": "--", "fused_": ":"}
#: The student's effective KD weight (``distill.kd_weight`` × ramp), under its current and its former name.
_KD_WEIGHT_KEYS = ("kd_weight_effective", "kd_weight")
#: At most this many labelled ticks on a log axis.
_MAX_LOG_LABELS = 8


def plot_curves(records: Iterable[dict[str, Any]], path: str | Path, *, title: str = "", log_scale: bool = True) -> Path:
    """Write ``curves.png`` (atomically) for one stage's ``metrics.jsonl`` records; see :func:`curves_figure`."""
    figure = curves_figure(records, title=title, log_scale=log_scale)
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))


def curves_figure(records: Iterable[dict[str, Any]], *, title: str = "", log_scale: bool = True) -> Figure:
    """The panels of one training stage against the training iteration, sharing one x range.

    - training losses: every ``*loss*`` term of the ``train`` records (teacher branches by line style: HR solid,
      LR dashed, fused dotted), on a log y axis when ``log_scale`` and all values are positive;
    - distillation (students only): the KD term before (``kd_raw``) and after (``loss_kd``) its weight, with the
      effective weight (``kd_weight_effective`` = ``distill.kd_weight`` × warm-up ramp) on a twin axis, so that
      the ramp does not read as divergence;
    - evaluation: every finite metric of the ``eval`` records (NaN, e.g. APl without large objects, is skipped).

    Args:
        records: ``metrics.jsonl`` records (see :mod:`msad.engine.metrics`).
        title: the figure's title (e.g. the run directory).
        log_scale: log y axis for the losses.
    """
    train, evals = _series(records)
    losses = {k: v for k, v in train.items() if "loss" in k}
    has_kd = "loss_kd" in train and "kd_raw" in train
    last = max((x for values in (*train.values(), *evals.values()) for x, _ in values), default=1.0)
    figure = _new_figure(3 if has_kd else 2, height=4.2)
    axes = figure.subplots(1, 3 if has_kd else 2)
    _loss_panel(axes[0], losses, log_scale=log_scale)
    if has_kd:
        _kd_panel(axes[1], train)
    _eval_panel(axes[-1], evals)
    for ax in axes:
        ax.set_xlim(0, last * 1.04)
        ax.set_xlabel("iteration")
        ax.grid(True, alpha=0.3)
    figure.suptitle(title or "training curves", fontsize=11)
    return figure


def plot_accuracy_comparison(rows: Mapping[str, Sequence[float]], path: str | Path, *, metric: str = "AP",
                             title: str = "") -> Path:
    """Write the comparison figure of ``benchmarks/accuracy.py`` (atomically); see :func:`accuracy_figure`."""
    figure = accuracy_figure(rows, metric=metric, title=title)
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))


def accuracy_figure(rows: Mapping[str, Sequence[float]], *, metric: str = "AP", title: str = "") -> Figure:
    """One horizontal bar per row (top to bottom in ``rows`` order): the mean over seeds, the seed spread
    (min to max) as an error bar and each seed as a dot, the mean written at the bar's end.

    Args:
        rows: row name → the metric of each seed (NaN entries are ignored; a row with none reads "–").
        metric: what the values are (axis label).
        title: the figure's title.
    """
    names = list(rows)
    values = [[float(v) for v in rows[name] if v is not None and math.isfinite(float(v))] for name in names]
    figure = _new_figure(1, height=0.45 * max(len(names), 2) + 1.4, width=8.0)
    ax = figure.subplots()
    means = [statistics.fmean(v) if v else 0.0 for v in values]
    low = [m - min(v) if v else 0.0 for m, v in zip(means, values, strict=True)]
    high = [max(v) - m if v else 0.0 for m, v in zip(means, values, strict=True)]
    positions = range(len(names))
    ax.barh(positions, means, color="tab:blue", alpha=0.75, xerr=[low, high], capsize=4, ecolor="black")
    for y, seeds in zip(positions, values, strict=True):
        ax.plot(seeds, [y] * len(seeds), "o", color="black", markersize=3, zorder=3)
    right = max((max(v) for v in values if v), default=1.0)
    for y, mean, seeds in zip(positions, means, values, strict=True):
        label = f"{mean:.2f}" + (f" (n={len(seeds)})" if len(seeds) > 1 else "") if seeds else "–"
        ax.text((max(seeds) if seeds else 0.0) + right * 0.02, y, label, va="center", fontsize=9)
    ax.set_yticks(list(positions), names)
    ax.invert_yaxis()
    ax.set_xlim(0, right * 1.25 or 1.0)
    ax.set_xlabel(f"{metric} (bar: mean over seeds; whisker: min–max; dots: seeds)")
    ax.grid(True, axis="x", alpha=0.3)
    figure.suptitle(title or f"{metric} per model", fontsize=11)
    return figure


def _new_figure(panels: int, *, height: float, width: float | None = None) -> Figure:
    """A figure on its own Agg canvas (no pyplot, no global backend), laid out so labels are never clipped."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width or 5.6 * panels, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _series(records: Iterable[dict[str, Any]]) -> tuple[Series, Series]:
    """``(train, eval)``: name → ``[(iteration, value), …]`` of every finite number in the records."""
    train: Series = {}
    evals: Series = {}
    for record in records:
        target = {"train": train, "eval": evals}.get(record.get("type"))
        if target is None or "iteration" not in record:
            continue
        for key, value in record.items():
            if key in ("iteration", "type") or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                target.setdefault(key, []).append((float(record["iteration"]), float(value)))
    return train, evals


def _style(name: str) -> dict[str, Any]:
    """Colour by loss term, line style by teacher branch."""
    prefix = next((p for p in _BRANCH_STYLES if name.startswith(p)), "")
    term = name[len(prefix):]
    style: dict[str, Any] = {"linestyle": _BRANCH_STYLES.get(prefix, "-")}
    if term in _TERM_COLOURS:
        style["color"] = _TERM_COLOURS[term]
    if name == "total_loss":
        style["linewidth"] = 2.2
    return style


def _marker(xs: Sequence[float]) -> str | None:
    """Dots on a series too short to read as a line (a run of a few logging periods)."""
    return "o" if len(xs) < 3 else None


def _loss_panel(ax: Axes, losses: Series, *, log_scale: bool) -> None:
    """Every loss term against the iteration."""
    ordered = sorted(losses, key=lambda k: (k != "total_loss", k))
    for name in ordered:
        xs, ys = zip(*losses[name], strict=True)
        label = f"{name} (× ramp)" if name == "loss_kd" else name
        ax.plot(xs, ys, label=label, marker=_marker(xs), **_style(name))
    if log_scale and losses and all(y > 0 for v in losses.values() for _, y in v):
        _plain_log_axis(ax)
    ax.set_title("training losses" + (" (log scale)" if ax.get_yscale() == "log" else ""), fontsize=10)
    ax.set_ylabel("loss (mean over the logging window)")
    if any(name.startswith(tuple(_BRANCH_STYLES)) for name in losses):
        _branch_legend(ax, ordered)
    else:
        _legend_or_note(ax, bool(losses), "no training records")


def _branch_legend(ax: Axes, names: Sequence[str]) -> None:
    """One legend entry per loss term (colour) and one per branch (line style), not one per line: 7 entries for a
    teacher's 13 lines, below the axes."""
    from matplotlib.lines import Line2D

    terms = dict.fromkeys(next((n[len(p):] for p in _BRANCH_STYLES if n.startswith(p)), n) for n in names)
    handles = [Line2D([], [], **(_style(term) | {"linestyle": "-"}), label=term) for term in terms]
    handles += [Line2D([], [], color="gray", linestyle=style, label=f"{prefix.rstrip('_').upper()} branch")
                for prefix, style in _BRANCH_STYLES.items() if any(n.startswith(prefix) for n in names)]
    _legend_below(ax, handles)


def _plain_log_axis(ax: Axes) -> None:
    """A log y axis labelled in plain numbers (0.2, 0.5, 1, 2, 5 …), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    def minor(value: float, _position: int) -> str:
        mantissa = round(value / 10 ** math.floor(math.log10(value))) if value > 0 else 0
        return f"{value:g}" if mantissa in (2, 5) else ""

    ax.set_yscale("log")
    ax.autoscale_view()
    low, high = ax.get_ylim()
    decades = math.log10(high / low) if low > 0 else math.inf
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=_MAX_LOG_LABELS))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _position: f"{value:g}"))
    # 2 and 5 between the powers of ten only while they stay few (3 labels a decade, up to 2.5 decades)
    ax.yaxis.set_minor_formatter(FuncFormatter(minor if decades <= 2.5 else lambda *_: ""))


def _kd_panel(ax: Axes, train: Series) -> None:
    """The distillation term raw and weighted, and its weight's ramp on a twin axis."""
    xs, raw = zip(*train["kd_raw"], strict=True)
    ax.plot(xs, raw, color="tab:purple", marker=_marker(xs), label="kd_raw (before weight)")
    xs, weighted = zip(*train["loss_kd"], strict=True)
    ax.plot(xs, weighted, color="tab:purple", linestyle="--", marker=_marker(xs), label="loss_kd (weighted, in total_loss)")
    ax.set_ylabel("distillation loss")
    ax.set_title("distillation term", fontsize=10)
    lines, _ = ax.get_legend_handles_labels()
    key = next((k for k in _KD_WEIGHT_KEYS if k in train), None)
    if key is not None:
        twin = ax.twinx()
        xs, weight = zip(*train[key], strict=True)
        twin.plot(xs, weight, color="tab:gray", linestyle=":", linewidth=2, marker=_marker(xs),
                  label="kd_weight_effective (right axis)")
        twin.set_ylim(0, max(max(weight), 1e-12) * 1.1)
        twin.set_ylabel("effective KD weight (distill.kd_weight × ramp)")
        lines += twin.get_legend_handles_labels()[0]
    _legend_below(ax, lines)


def _eval_panel(ax: Axes, evals: Series) -> None:
    """Every finite evaluation metric against the iteration it was measured at."""
    for name, points in sorted(evals.items(), key=lambda kv: (kv[0] != "AP", kv[0])):
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", markersize=4, label=name, linewidth=2.2 if name == "AP" else 1.2)
    ax.set_title("evaluation", fontsize=10)
    ax.set_ylabel("COCO metric (0–100)")
    top = ax.get_ylim()[1]
    ax.set_ylim(-0.03 * top, top)  # from zero, with room for a point at zero
    _legend_or_note(ax, bool(evals), "no evaluation records")


def _legend_or_note(ax: Axes, has_data: bool, note: str) -> None:
    """A legend below the axes (never over the data), or a centred note on an empty panel."""
    if has_data:
        _legend_below(ax, ax.get_legend_handles_labels()[0])
    else:
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", color="gray")


def _legend_below(ax: Axes, handles: Sequence[Any]) -> None:
    """A legend of ``handles`` under the axes (and their x label), in up to three columns."""
    ax.legend(handles=list(handles), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14),
              ncol=min(3, len(handles)), frameon=False)
