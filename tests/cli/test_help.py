"""``--help`` of every command: flags without a type, choices listed, defaults not swallowed by rich markup."""

from __future__ import annotations

from typing import get_args

import pytest
import typer
from typer.testing import CliRunner

from msad.cli import choices
from msad.cli.main import app


def _paths(command, prefix=()) -> list[tuple[str, ...]]:
    """Every command path of the click tree under ``command``."""
    subcommands = getattr(command, "commands", {})
    return [prefix] + [path for name, sub in subcommands.items() for path in _paths(sub, (*prefix, name))]


def _help(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "220", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    return result.output


ALL = _paths(typer.main.get_command(app))


def test_every_command_is_reached() -> None:
    assert {("predict",), ("data", "synth"), ("recipe", "show"), ("convert", "detectron2"), ()} <= set(ALL)


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "msad")
def test_flags_show_no_type(path: tuple[str, ...]) -> None:
    text = _help(*path)
    assert "--help" in text and "<bool>" not in text


def test_defaults_in_brackets_are_not_swallowed_by_rich_markup() -> None:
    text = _help("data", "synth")
    assert "Image height (default: 256 small, 384 coco)" in text
    assert "Image width (default: 320 small, 512 coco)" in text


@pytest.mark.parametrize(("path", "listed"), [
    (("eval",), ["<fused|hr|lr|all>", "<fp32|bf16>", "<pycocotools|faster_coco_eval>"]),
    (("predict",), ["<auto|cpu|cuda>", "<fp32|bf16>", "<auto|torch|onnx|torch.export>", "<hr|lr>"]),
    (("export",), ["<hr|lr>"]),  # Optional[Literal]: Typer lists the choices sorted
    (("convert", "detectron2"), ["<teacher|student>"]),
])
def test_options_with_a_closed_set_list_it(path: tuple[str, ...], listed: list[str]) -> None:
    text = _help(*path)
    for choice in listed:
        assert choice in text
    assert "<str>" not in text


@pytest.mark.parametrize("path", [("recipe", "show"), ("recipe", "validate")])
def test_recipe_arguments_have_help(path: tuple[str, ...]) -> None:
    assert "Recipe TOML file" in _help(*path)


def test_distill_is_spelled_as_the_command() -> None:
    text = _help()
    assert "Distil " not in text and "distil," not in text and "Distill the low-resolution student" in text


def test_choices_are_the_api_constants() -> None:
    from msad.api.evaluation import TEACHER_BRANCHES
    from msad.api.prediction import INPUT_SCALES, RUNTIME_CHOICES
    from msad.engine.inference import PRECISIONS
    from msad.evaluation import EVAL_BACKENDS
    from msad.export.deploy import INPUT_FRAMES

    assert get_args(choices.Precision) == PRECISIONS
    assert get_args(choices.Runtime) == RUNTIME_CHOICES
    assert get_args(choices.EvalBackend) == EVAL_BACKENDS
    assert sorted(get_args(choices.InputScale)) == sorted(INPUT_SCALES)
    assert sorted(get_args(choices.ExportInput)) == sorted(INPUT_FRAMES)
    assert sorted(get_args(choices.Branch)) == sorted((*TEACHER_BRANCHES, "all"))


def test_a_value_outside_the_choices_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["predict", "x.png", "-w", "w.safetensors", "-o", "out", "--precision", "fp16"])
    assert result.exit_code == 2 and "fp16" in result.output
