"""Utility commands: flops, plugins, data, recipe, convert (thin shells over :mod:`msad.api`)."""

from __future__ import annotations

import difflib
import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from msad.console import LoopProgress, make_console
from msad.cli.app import App
from msad.cli.choices import ConvertRole
from msad.cli.commands import RecipeArg
from msad.cli.errors import one_line
from msad.cli.lazy import lazy_module
from msad.errors import DataError, UsageError

# imported by the first command that uses them (torch, pydantic), never by --help or --version
api = lazy_module("msad.api")
config = lazy_module("msad.config")
registry = lazy_module("msad.plugins")  # metadata and options of plugins, without msad.api (torch)

__all__ = ["register"]

_out = make_console()

class SynthProfileName(str, Enum):
    """Profiles of ``msad data synth`` (see :func:`msad.data.synth.synth_profile`)."""

    small = "small"
    coco = "coco"


data_app = App(help="Datasets: generate the built-in synthetic data, check a recipe's data.", no_args_is_help=True)
recipe_app = App(help="Recipes: show the resolved recipe, or validate it.", no_args_is_help=True)
convert_app = App(help="Convert third-party checkpoints into msad safetensors files.", no_args_is_help=True)

SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a recipe value: dotted.key=value.")]


def flops(
    recipe: Annotated[Optional[Path], typer.Argument(help="Recipe (default: the paper's COCO architecture at its four widths).")] = None,
    set_: SetOpt = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the table to this JSON file.")] = None,
    widths: Annotated[Optional[str], typer.Option(help="Backbone widths to sweep, e.g. 1,0.5 (default: the recipe's width; without a recipe the paper's four).")] = None,
    height: Annotated[Optional[int], typer.Option(min=32, help="HR image height (default: the recipe's data.test_size; 800 without a recipe).")] = None,
    width: Annotated[Optional[int], typer.Option(min=32, help="HR image width (default: the recipe's data.max_size; 1333 without a recipe).")] = None,
    classes: Annotated[int, typer.Option(min=1, help="Number of classes of the head.")] = 80,
) -> None:
    """Capacity as in the paper (backbone MACs relative to width 1.0, teacher = HR + LR) and whole-detector GMACs."""
    if recipe is None and set_:
        raise typer.BadParameter("--set needs a RECIPE")
    try:
        sweep = tuple(float(w) for w in widths.split(",")) if widths else None
    except ValueError:
        raise typer.BadParameter(f"--widths {widths!r}: expected comma-separated numbers, e.g. 1,0.5") from None
    r = config.load_recipe(recipe, overrides=set_ or []) if recipe else api.paper_recipe()
    if recipe is None and sweep is None:
        sweep = api.PAPER_WIDTHS
    size = (height or (r.data.test_size if recipe else 800), width or (r.data.max_size if recipe else 1333))
    report = api.capacity(r, widths=sweep, image_size=size, num_classes=classes, json_out=json_out)
    (h, w), (ph, pw) = report.image_size, report.padded_size or report.image_size
    table = Table(title=f"capacity at {h}×{w} (HR), LR ×1/{report.k}; reference {report.reference_gmacs:.1f} GMACs; "
                  f"detector GMACs on the HR image padded to {ph}×{pw}")
    for col in ("width", "capacity T/S (paper)", "backbone GMACs HR/LR", "detector GMACs HR / teacher / student", "params M HR/T/S"):
        table.add_column(col, justify="right")
    for row in report.rows:
        table.add_row(
            report.backbone if row.width is None else f"{row.width:g}",
            f"{row.teacher_capacity:.2f}x / {row.student_capacity:.2f}x",
            f"{row.backbone_gmacs_hr:.1f} / {row.backbone_gmacs_lr:.1f}",
            f"{row.baseline_gmacs:.1f} / {row.teacher_gmacs:.1f} / {row.student_gmacs:.1f}",
            f"{row.baseline_params_m:.1f} / {row.teacher_params_m:.1f} / {row.student_params_m:.1f}",
        )
    _out.print(table)
    skipped = ", ".join(f"{op} ×{n}" for op, n in sorted(report.skipped_ops.items())) or "none"
    _out.print(f"GMACs = 10^9 multiply-adds (fvcore's conventions, counted from shapes); operators not counted: {skipped}")


def plugins(
    name: Annotated[Optional[str], typer.Argument(help="A plugin: show its recipe options (type, default); imports it.", show_default=False)] = None,
    check: Annotated[bool, typer.Option("--check", help="Import every plugin to report whether it loads (slow: torch, timm).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List backbones, necks, heads and distillation losses from every installed plugin (from metadata, nothing
    imported); [bold]msad plugins NAME[/] shows one plugin's options."""
    if name is not None:
        _plugin_detail(name, json_out=json_out)
        return
    infos = registry.list_plugins(load=check)
    if json_out:
        typer.echo(json.dumps([info.__dict__ for info in infos], indent=1, default=str))
        return
    table = Table(title="msad plugins")
    for col in ("group", "name", "distribution", "version", "status"):
        table.add_column(col)
    for info in infos:
        style = "red" if info.status.startswith("error") else ""
        table.add_row(*map(escape, (info.group, info.name, info.distribution, info.version, info.status)), style=style)
    _out.print(table)
    if not check:
        _out.print("status from metadata: --check imports each plugin to report whether it loads; "
                   "msad plugins NAME shows its options", highlight=False)


def _plugin_detail(name: str, *, json_out: bool) -> None:
    """``msad plugins NAME``: the plugin's rows (one per group holding the name) with status and typed options."""
    rows = [info for info in registry.list_plugins(load=False) if info.name == name]
    if not rows:
        known = sorted({info.name for info in registry.list_plugins(load=False)})
        hint = difflib.get_close_matches(name, known, n=1)
        raise UsageError(f"no plugin named {name!r}; installed: {', '.join(known)}"
                         + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    details = [_detail(info) for info in rows]
    if json_out:
        typer.echo(json.dumps(details, indent=1, default=str))
        return
    for detail in details:
        _out.print(escape(f"{detail['group']} {detail['name']} ({detail['distribution']} {detail['version']}): "
                          f"{detail['value']} — {detail['status']}"))
        if detail["options"]:
            table = Table(title=f"options (the recipe's table with name = \"{detail['name']}\")")
            for col in ("option", "type", "default"):
                table.add_column(col)
            for option in detail["options"]:
                table.add_row(*(escape(option[key]) for key in ("name", "type", "default")))
            _out.print(table)


def _detail(info) -> dict:
    """One plugin's row as JSON-ready data, its options read from its builder (imported now)."""
    detail = {**info.__dict__, "options": []}
    if info.status.startswith(("disabled", "error")):
        return detail
    try:
        options = registry.plugin_options(info.group, info.name)
    except Exception as err:  # noqa: BLE001 - a broken plugin is reported, never raised (PluginError names it)
        detail["status"] = f"error: {one_line(err)}"
        return detail
    detail["status"] = "ok"
    detail["options"] = [
        {"name": key, "type": _type_name(annotation), "default": "required" if default is ... else repr(default)}
        for key, (annotation, default) in options.items()
    ]
    return detail


def _type_name(annotation: object) -> str:
    """``float``, ``tuple[float, ...]``, ``Literal['a', 'b']``: an annotation as a person reads it."""
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


@data_app.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="Dataset root to write.", show_default=False)],
    train: Annotated[int, typer.Option(min=0, help="Training images.")] = 400,
    val: Annotated[int, typer.Option(min=0, help="Validation images.")] = 100,
    seed: Annotated[int, typer.Option(help="Generation seed (the bytes are a function of all options).")] = 0,
    height: Annotated[Optional[int], typer.Option(min=32, help="Image height (default: 256 small, 384 coco).")] = None,
    width: Annotated[Optional[int], typer.Option(min=32, help="Image width (default: 320 small, 512 coco).")] = None,
    profile: Annotated[SynthProfileName, typer.Option(
        help="small: mostly objects under 32² (the hard case for the ×½ image); coco: COCO's object-size histogram "
        "(41 % small, 34 % medium, 25 % large), ten textured classes.",
    )] = SynthProfileName.small,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a dataset already in OUT.")] = False,
) -> None:
    """Generate the built-in synthetic COCO-format dataset (shapes on clutter, with occlusion)."""
    if (height is None) != (width is None):
        raise typer.BadParameter("give both --height and --width, or neither (the profile's size)")
    size = None if height is None or width is None else (height, width)
    summary = api.synth_data(out, train=train, val=val, seed=seed, image_size=size, force=force, profile=profile.value)
    small, medium, large = summary.size_fractions["train" if summary.images["train"] else "val"]
    _out.print(
        f"wrote {summary.images['train']} train / {summary.images['val']} val images "
        f"({summary.annotations['train']} / {summary.annotations['val']} objects) to {out}; profile {summary.profile}, "
        f"{summary.image_size[0]}×{summary.image_size[1]}, objects small/medium/large {small:.0%}/{medium:.0%}/{large:.0%}"
    )


@data_app.command("check")
def data_check(
    recipe: RecipeArg,
    set_: SetOpt = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Threads reading image headers (default: 4 per CPU, at most 32).")] = None,
    decode: Annotated[bool, typer.Option("--decode", help="Also decode every image fully, as training does (slower; finds corrupt data inside a file).")] = False,
    limit: Annotated[int, typer.Option(min=1, help="Problems listed in the table (all are counted).")] = 50,
) -> None:
    """Preflight: read every train/val image header and box; list missing, unreadable, truncated or wrongly sized
    images and bad boxes in one table (exit 1 when there is any), and print what the run will see."""
    r = config.load_recipe(recipe, overrides=set_ or [])
    with LoopProgress("data check", unit="file") as progress:  # a live line on a terminal, plain lines otherwise
        report = api.check_data(r, workers=workers, decode=decode, progress=progress.update)
    _out.print(_data_summary_table(report))
    if not report.problems:
        what = "headers, end markers" + (", full decodes" if decode else "")
        _out.print(f"no problems found ({what}, sizes and boxes of {sum(s.images for s in report.splits)} images)")
        return
    table = Table(title=f"problems ({len(report.problems)})")
    for col in ("split", "image", "problem", "detail"):
        table.add_column(col)
    for problem in report.problems[:limit]:
        table.add_row(problem.split, problem.file_name, problem.kind, problem.detail)
    _out.print(table)
    if len(report.problems) > limit:
        _out.print(f"… and {len(report.problems) - limit} more (--limit shows more)")
    counts = report.counts
    settings = [s for kinds, s in ((("missing", "unreadable", "truncated"), 'data.on_bad_image = "skip"'),
                                   (("bad box",), 'data.on_bad_annotation = "drop"')) if any(k in counts for k in kinds)]
    fix = f"fix them{', or train without them with ' + ' and '.join(settings) if settings else ''}"
    if "wrong size" in counts:
        fix += "; a wrongly sized image misplaces its boxes: fix its file or its width/height"
    listed = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    raise DataError(f"{recipe}: the data has {len(report.problems)} problem(s) ({listed}); {fix}")


def _data_summary_table(report) -> Table:
    """What the run will see: one column per split."""
    table = Table(title="what the run will see")
    table.add_column("")
    for s in report.splits:
        table.add_column(s.split, justify="right")
    rows = {
        "images (readable)": [f"{s.images} ({s.readable})" for s in report.splits],
        "instances": [str(s.instances) for s in report.splits],
        "crowd (ignored)": [str(s.crowd) for s in report.splits],
        "clipped at an edge": [str(s.clipped) for s in report.splits],
        "classes (with instances)": [f"{s.classes} ({s.classes_used})" for s in report.splits],
        "network input": [f"short side {s.input_short}" + (f" ×{s.scale:g}" if s.scale != 1 else "") for s in report.splits],
    }
    for i, name in enumerate(("small < 32²", "medium", "large ≥ 96²")):
        rows[f"{name} at the input"] = [f"{s.sizes[i]} ({s.sizes[i] / max(1, sum(s.sizes)):.0%})" for s in report.splits]
    for name, values in rows.items():
        table.add_row(name, *values)
    return table


@recipe_app.command("show")
def recipe_show(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Print the resolved recipe (base merged, overrides applied, defaults filled) as TOML."""
    typer.echo(config.load_recipe(recipe, overrides=set_ or []).dump_toml())


@recipe_app.command("validate")
def recipe_validate(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Check a recipe; exit 0 when valid, 3 with the first problem otherwise."""
    config.load_recipe(recipe, overrides=set_ or [])
    _out.print(f"{recipe}: valid")


@convert_app.command("slimmable")
def convert_slimmable(
    source: Annotated[Path, typer.Argument(help="slimmable_networks checkpoint (.pt).", show_default=False)],
    output: Annotated[Path, typer.Argument(help="msad backbone file (.safetensors).", show_default=False)],
    width: Annotated[Optional[float], typer.Option(help="Keep one width as a plain network (default: all widths).")] = None,
) -> None:
    """Convert the public slimmable ResNet-50 ImageNet checkpoint into an msad backbone file."""
    path = api.convert_slimmable(source, output, width=width)
    _out.print(f"wrote {path}")


@convert_app.command("detectron2")
def convert_detectron2(
    source: Annotated[Path, typer.Argument(help="Original MSAD model_final.pth.", show_default=False)],
    output: Annotated[Path, typer.Argument(help="msad weights (.safetensors).", show_default=False)],
    recipe: Annotated[Path, typer.Option("--recipe", "-r", help="Recipe of the same width.", show_default=False)],
    annotations: Annotated[Optional[Path], typer.Option(help="COCO json whose categories name the classes (default: COCO 2017's 80).")] = None,
    role: Annotated[Optional[ConvertRole], typer.Option(help="teacher or student (default: detected from the keys).")] = None,
) -> None:
    """Convert an original MSAD (Detectron2) teacher or student checkpoint into msad weights."""
    path = api.convert_detectron2(source, output, recipe=config.load_recipe(recipe), annotations=annotations, role=role)
    _out.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add these commands to ``app``."""
    app.command("flops")(flops)
    app.command("plugins")(plugins)
    app.add_typer(data_app, name="data")
    app.add_typer(recipe_app, name="recipe")
    app.add_typer(convert_app, name="convert")
