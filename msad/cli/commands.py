"""Training, evaluation and prediction commands (thin shells over :mod:`msad.api`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table

from msad.cli.choices import Branch, DeviceOpt, EvalBackend, InputScale, PrecisionOpt, Runtime
from msad.cli.lazy import lazy_module
from msad.console import LoopProgress, format_metric, make_console, plural

if TYPE_CHECKING:
    from msad.config import Recipe

# imported by the first command that uses them (torch, pydantic), never by --help or --version
api = lazy_module("msad.api")
config = lazy_module("msad.config")

__all__ = ["register", "metrics_table", "rows_table"]

_out = make_console()
_err = make_console(stderr=True)

RecipeArg = Annotated[Path, typer.Argument(help="Recipe TOML file (see recipes/).", show_default=False)]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a recipe value: dotted.key=value (TOML value), repeatable."),
]
GpusOpt = Annotated[int, typer.Option("--gpus", min=1, help="Local ranks to launch (ignored under torchrun).")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help=(
    "Run directory (default: {run.output}/baseline, /teacher or /student: one per stage)."
))]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run saved in the output directory.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Start over in an output directory that holds a run.")]
RestartsOpt = Annotated[int, typer.Option(
    "--max-restarts", min=0,
    help="Restart the ranks up to N times after one fails; the run resumes from its last checkpoint "
         "(under torchrun, use torchrun's own --max-restarts).",
)]


def _recipe(path: Path, sets: list[str] | None) -> Recipe:
    return config.load_recipe(path, overrides=sets or [])


def metrics_table(title: str, metrics: dict[str, Any]) -> Table:
    """A rich table of COCO metrics, one row."""
    return rows_table(title, {"": metrics}, row_label=None)


def rows_table(title: str, rows: dict[str, dict[str, Any]], *, row_label: str | None = "model") -> Table:
    """A rich table with one row per entry of ``rows`` (label → column → value), side by side; a value a row
    lacks, None or NaN reads "–"."""
    columns = list(dict.fromkeys(name for values in rows.values() for name in values))
    table = Table(title=title)
    if row_label is not None:
        table.add_column(row_label)
    for name in columns:
        table.add_column(name, justify="right")
    for label, values in rows.items():
        cells = [format_metric(values.get(name)) for name in columns]
        table.add_row(*([label] if row_label is not None else []), *cells)
    return table


def _report(result: api.TrainResult) -> None:
    if result.rank != 0:  # under torchrun every rank returns; rank 0 reports
        return
    if result.metrics:
        _out.print(metrics_table(f"final evaluation — {result.output}", result.metrics))
    _out.print(f"weights: {result.weights}")


def train(recipe: RecipeArg, set_: SetOpt = None, gpus: GpusOpt = 1, output: OutputOpt = None,
          resume: ResumeOpt = False, force: ForceOpt = False, max_restarts: RestartsOpt = 0) -> None:
    """Train the single-resolution FCOS baseline ([bold]--set data.scale=0.5[/] for the low-resolution one)."""
    _report(api.train(_recipe(recipe, set_), gpus=gpus, output=output, resume=resume, force=force,
                      max_restarts=max_restarts))


def teacher(recipe: RecipeArg, set_: SetOpt = None, gpus: GpusOpt = 1, output: OutputOpt = None,
            resume: ResumeOpt = False, force: ForceOpt = False, max_restarts: RestartsOpt = 0) -> None:
    """Train the aligned multi-scale teacher with crossing feature-level fusion (MSAD stage 1)."""
    _report(api.train_teacher(_recipe(recipe, set_), gpus=gpus, output=output, resume=resume, force=force,
                              max_restarts=max_restarts))


def distill(
    recipe: RecipeArg,
    teacher: Annotated[Path, typer.Option("--teacher", "-t", help="Teacher weights (.safetensors).", show_default=False)],
    set_: SetOpt = None, gpus: GpusOpt = 1, output: OutputOpt = None, resume: ResumeOpt = False, force: ForceOpt = False,
    max_restarts: RestartsOpt = 0,
) -> None:
    """Distill the low-resolution student from a frozen teacher (MSAD stage 2)."""
    result = api.distill(_recipe(recipe, set_), teacher=teacher, gpus=gpus, output=output, resume=resume, force=force,
                         max_restarts=max_restarts)
    _report(result)


def evaluate(
    recipe: RecipeArg,
    weights: Annotated[Path, typer.Option("--weights", "-w", help="Weights to evaluate (.safetensors).", show_default=False)],
    set_: SetOpt = None,
    branch: Annotated[Optional[Branch], typer.Option(help="Teacher branch: fused (default), hr, lr, or all (side by side).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the metrics to this JSON file.")] = None,
    gpus: GpusOpt = 1,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per rank and step.")] = 4,
    precision: PrecisionOpt = "fp32",
    per_class: Annotated[bool, typer.Option("--per-class", help="Also show the AP of each class.")] = False,
    results: Annotated[Optional[Path], typer.Option("--results", help=(
        "Write the detections on the validation images as a COCO results file (COCO.loadRes reads it)."
    ))] = None,
    eval_backend: Annotated[Optional[EvalBackend], typer.Option("--eval-backend", help=(
        "COCOeval implementation: pycocotools (the reference) or faster_coco_eval (same metrics, faster; pip "
        "install 'msad[fast-eval]'). Default: the recipe's eval.backend."
    ))] = None,
) -> None:
    """COCO box AP, AP50, AP75, APs, APm, APl (0–100) on the recipe's validation set."""
    if eval_backend is not None:
        set_ = [*(set_ or []), f'eval.backend="{eval_backend}"']
    if branch == "all" and (per_class or results is not None):
        raise typer.BadParameter("--per-class and --results take one branch: fused, hr or lr")
    if branch == "all":
        _evaluate_branches(_recipe(recipe, set_), weights, gpus=gpus, batch_size=batch_size, json_out=json_out)
        return
    report = api.evaluate(_recipe(recipe, set_), weights, branch=branch, gpus=gpus, batch_size=batch_size, json_out=json_out,
                          precision=precision, per_class=per_class, results_out=results)
    what = report["role"] + (f" ({report['branch']} branch)" if report["branch"] else "")
    if report["data_scale"] != report["trained_data_scale"]:
        _err.print(
            f"note: evaluated at data.scale={report['data_scale']:g}; these weights were trained at "
            f"data.scale={report['trained_data_scale']:g} (pass --set data.scale={report['trained_data_scale']:g} to match)"
        )
    _out.print(metrics_table(f"{weights} — {what}", report["metrics"]))
    if per_class:
        rows = {name: {"AP": ap} for name, ap in report["per_class"].items()}
        _out.print(rows_table(f"AP per class (IoU 0.50:0.95) — {what}", rows, row_label="class"))
    if json_out is not None:
        _out.print(f"metrics written to {json_out}")
    if results is not None:
        _out.print(f"detections written to {results} (COCO results format)")


def _evaluate_branches(recipe: Recipe, weights: Path, *, gpus: int, batch_size: int, json_out: Path | None) -> None:
    """``msad eval --branch all``: the teacher's HR, LR and fused branches in one table."""
    report = api.evaluate_branches(recipe, weights, gpus=gpus, batch_size=batch_size, json_out=json_out)
    rows = {name.upper() if name != "fused" else "fused (HR+LR)": m for name, m in report["branches"].items()}
    _out.print(rows_table(f"{weights} — teacher, each branch", rows, row_label="branch"))
    if json_out is not None:
        _out.print(f"metrics written to {json_out}")


def predict(
    inputs: Annotated[list[str], typer.Argument(help=(
        "Image files, folders (searched recursively) or quoted glob patterns ('imgs/*.jpg', '**/*.png')."
    ), show_default=False)],
    weights: Annotated[Path, typer.Option("--weights", "-w", help=(
        "Weights (.safetensors): baseline, teacher or student; or a .onnx / .pt2 file from msad export."
    ), show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where predictions.json and the drawn PNGs go.", show_default=False)],
    score_threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help=(
        "Keep detections scoring at least this (in predictions.json and the drawings)."
    ))] = 0.3,
    draw_threshold: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help=(
        "Draw only detections scoring at least this; predictions.json keeps all (default: --score-threshold)."
    ))] = None,
    no_labels: Annotated[bool, typer.Option("--no-labels", help="Draw boxes without class names and scores.")] = False,
    device: DeviceOpt = "auto",
    no_draw: Annotated[bool, typer.Option("--no-draw", help="Write only predictions.json.")] = False,
    precision: PrecisionOpt = "fp32",
    runtime: Annotated[Runtime, typer.Option(help="auto (by the file's suffix), torch, onnx or torch.export.")] = "auto",
    annotations: Annotated[Optional[Path], typer.Option(help=(
        "COCO annotations whose image ids (by file_name) and category ids the results use, so COCO.loadRes accepts "
        "them."
    ))] = None,
    input_scale: Annotated[Optional[InputScale], typer.Option("--input-scale", help=(
        "What the images are: hr (default: resized as in msad eval; a student sees the ×1/k copy, as eval shows it)"
        " or lr (a student's LR input, as given)."
    ))] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass (each padded on its own).")] = 4,
    workers: Annotated[int, typer.Option(min=0, help="Processes decoding images.")] = 2,
    force: Annotated[bool, typer.Option("--force", help="Write into a directory holding other files (inputs are never overwritten).")] = False,
    trust_pt2: Annotated[bool, typer.Option("--trust-pt2", help=(
        "Run a .pt2 archive. RISK: a .pt2 file is not data; loading it unpickles and evaluates parts of it, so a "
        "crafted file runs any code it holds. Only for files you exported or trust (.onnx and .safetensors are "
        "data)."
    ))] = False,
) -> None:
    """Detect objects in images: predictions.json (COCO results) and a drawing per image, mirroring input paths."""
    with LoopProgress("predict") as progress:  # a live line on a terminal, plain lines otherwise
        result = api.predict(
            weights, inputs, output, score_threshold=score_threshold, device=device, draw=not no_draw,
            precision=precision, runtime=runtime, annotations=annotations, input_scale=input_scale,
            batch_size=batch_size, num_workers=workers, force=force, draw_threshold=draw_threshold, labels=not no_labels,
            trust_pt2=trust_pt2, progress=progress.update,
        )
    _out.print(f"input scale: {_SCALE_WORDS[result.input_scale]}", highlight=False)
    if result.skipped:
        _out.print(f"skipped {plural(len(result.skipped), 'file')} not an image by suffix, e.g. {result.skipped[0]}",
                   highlight=False)
    _out.print(f"{plural(result.count, 'detection')} in {plural(result.num_images, 'image')} → {result.predictions}")


#: What ``msad predict`` says each input scale means (one line).
_SCALE_WORDS = {
    "hr": "hr — images resized as in msad eval (a student sees their ×1/k copy); --input-scale lr takes them as a student's LR input",
    "lr": "lr — each image is the student's LR input, as given (boxes in its frame)",
}


def register(app: typer.Typer) -> None:
    """Add these commands to ``app``."""
    app.command("train")(train)
    app.command("teacher")(teacher)
    app.command("distill")(distill)
    app.command("eval")(evaluate)
    app.command("predict")(predict)
