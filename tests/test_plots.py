"""matplotlib figures: a stage's curves.png from metrics.jsonl records, and the accuracy comparison figure."""

import json
import math

from matplotlib.container import ErrorbarContainer
from PIL import Image

from msad.engine.metrics import read_metrics
from msad.plots import accuracy_figure, curves_figure, plot_accuracy_comparison, plot_curves


def student_records(iters: int = 400, ramp: int = 500) -> list[dict]:
    """Records shaped like a student run: KD ramping up, its raw term falling; eval every 100 (APl NaN)."""
    records = []
    for it in range(20, iters + 1, 20):
        weight, raw = min(1.0, it / ramp), 0.9 * math.exp(-it / 300) + 0.25
        record = {"type": "train", "iteration": it, "lr": 0.01, "loss_cls": 1.0 + 100 / it, "loss_box": 0.6,
                  "loss_ctr": 0.66, "loss_kd": weight * raw, "kd_raw": raw, "kd_weight_effective": weight, "kd_ramp": weight,
                  "images_per_s": 9.0}
        record["total_loss"] = sum(v for k, v in record.items() if k.startswith("loss"))
        records.append(record)
        if it % 100 == 0:
            records.append({"type": "eval", "iteration": it, "AP": it / 60, "AP50": it / 30, "APl": float("nan")})
    return records


def teacher_records() -> list[dict]:
    rows = []
    for it in (10, 20, 30):
        row = {"type": "train", "iteration": it}
        for branch, factor in (("hr_", 1.0), ("lr_", 1.2), ("fused_", 0.4)):
            row |= {f"{branch}loss_cls": factor / it, f"{branch}loss_box": factor * 0.5}
        rows.append(row | {"total_loss": sum(v for k, v in row.items() if "loss" in k)})
    return rows


def labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


def test_student_curves_show_the_kd_term_raw_weighted_and_its_ramp():
    figure = curves_figure(student_records(), title="runs/student")
    losses, kd, evaluation, ramp = figure.axes  # the twin axis of the KD panel comes last
    assert losses.get_yscale() == "log"
    assert {"total_loss", "loss_cls", "loss_kd (× ramp)"} <= set(labels(losses))
    assert labels(kd) == ["kd_raw (before weight)", "loss_kd (weighted, in total_loss)"]
    assert labels(ramp) == ["kd_weight_effective (right axis)"] and "ramp" in ramp.get_ylabel()
    raw = kd.get_lines()[0].get_ydata()
    assert raw[-1] < raw[0]  # the raw term falls while the weighted one rises with the ramp
    # evaluation against the training iterations: the same x range as the losses, not a padded tick range
    assert evaluation.get_xlim() == losses.get_xlim() and 400 <= evaluation.get_xlim()[1] < 420
    assert set(labels(evaluation)) == {"AP", "AP50"}  # NaN (APl without large objects) is not drawn
    assert all(ax.get_xlabel() == "iteration" for ax in (losses, kd, evaluation))


def test_teacher_curves_draw_branches_by_line_style_and_linear_option():
    figure = curves_figure(teacher_records(), log_scale=False)
    assert len(figure.axes) == 2  # no KD panel without a KD term
    losses, evaluation = figure.axes
    assert losses.get_yscale() == "linear"
    style = {line.get_label(): line.get_linestyle() for line in losses.get_lines()}
    assert style["hr_loss_cls"] == "-" and style["lr_loss_cls"] == "--" and style["fused_loss_cls"] == ":"
    assert [t.get_text() for t in evaluation.texts] == ["no evaluation records"]


def test_old_metrics_with_kd_weight_still_draw_the_weight():
    old = [{k.replace("kd_weight_effective", "kd_weight"): v for k, v in r.items()} for r in student_records()]
    assert labels(curves_figure(old).axes[-1]) == ["kd_weight_effective (right axis)"]


def test_legends_sit_below_the_data_and_stay_short():
    """A legend never covers a curve: it sits under its axes; the teacher's 13 loss lines need only 7 entries
    (4 terms by colour, 3 branches by line style)."""
    figure = curves_figure(teacher_records() + student_records()[-3:])
    figure.canvas.draw()
    losses = figure.axes[0]
    entries = [t.get_text() for t in losses.get_legend().get_texts()]
    assert len(entries) <= 8
    assert {"HR branch", "LR branch", "FUSED branch", "total_loss", "loss_cls"} <= set(entries)
    for ax in figure.axes:
        legend = ax.get_legend()
        if legend is not None:
            assert legend.get_window_extent().y1 <= ax.get_window_extent().y0


def test_a_wide_log_axis_labels_few_ticks():
    records = [{"type": "train", "iteration": it, "total_loss": 500.0 / it**2, "loss_cls": 0.01 * it}
               for it in range(1, 200, 10)]  # from 0.01 to 500: almost five decades
    figure = curves_figure(records)
    figure.canvas.draw()
    axis = figure.axes[0].yaxis
    shown = [t.get_text() for t in axis.get_ticklabels() + axis.get_ticklabels(minor=True)
             if t.get_text() and axis.axes.get_ylim()[0] <= t.get_position()[1] <= axis.axes.get_ylim()[1]]
    assert 2 <= len(shown) <= 8


def test_plot_curves_writes_a_png_from_metrics_jsonl(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in student_records()) + '{"type": "train", "iter')
    out = plot_curves(read_metrics(path), tmp_path / "curves.png", title="run")
    assert out == tmp_path / "curves.png"
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (1680, 420)  # three panels at 100 dpi
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_accuracy_figure_bars_are_means_with_the_seed_spread():
    rows = {"LR baseline": [4.0, 5.0, 6.0], "MSAD student": [20.0, 22.0], "not run": [], "one seed": [float("nan"), 3.0]}
    figure = accuracy_figure(rows, title="synthetic")
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(rows)
    assert [round(bar.get_width(), 6) for bar in ax.patches] == [5.0, 21.0, 0.0, 3.0]
    errorbars = next(c for c in ax.containers if isinstance(c, ErrorbarContainer))
    caps = errorbars.lines[2][0].get_segments()  # whiskers: min to max of the seeds
    assert [tuple(seg[:, 0]) for seg in caps[:2]] == [(4.0, 6.0), (20.0, 22.0)]
    assert [t.get_text() for t in ax.texts] == ["5.00 (n=3)", "21.00 (n=2)", "–", "3.00"]


def test_plot_accuracy_comparison_writes_a_png(tmp_path):
    out = plot_accuracy_comparison({"a": [1.0, 2.0], "b": [3.0]}, tmp_path / "accuracy.png")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] == 800


def test_a_log_axis_of_about_one_decade_labels_two_and_five():
    records = [{"type": "train", "iteration": it, "total_loss": 8.0 - it / 10, "loss_cls": 0.25 + it / 100}
               for it in (4, 8, 12)]  # from 0.29 to 7.6: about 1.5 decades, like a short teacher run
    figure = curves_figure(records)
    figure.canvas.draw()
    ax = figure.axes[0]
    low, high = ax.get_ylim()
    shown = {t.get_text() for t in ax.yaxis.get_ticklabels() + ax.yaxis.get_ticklabels(minor=True)
             if t.get_text() and low <= t.get_position()[1] <= high}
    assert {"0.5", "1", "2", "5"} <= shown and len(shown) <= 8
