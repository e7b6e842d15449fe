"""Tables a person reads: undefined metrics read "–", and a teacher's three branches side by side."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from msad import api
from msad.cli.commands import metrics_table, rows_table
from msad.cli.main import main


def render(table) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text()


def test_metrics_table_shows_a_dash_for_an_undefined_metric():
    text = render(metrics_table("val", {"AP": 1.5, "APl": math.nan, "APm": None}))
    assert "1.50" in text and "–" in text and "nan" not in text.lower() and "None" not in text


def test_rows_table_lines_rows_up_and_fills_missing_cells():
    text = render(rows_table("cmp", {"LR baseline": {"AP": 4.0}, "student": {"AP": 21.0, "images/s": 9.5}}))
    lines = [line for line in text.splitlines() if "LR baseline" in line or "student" in line]
    assert len(lines) == 2 and "–" in lines[0] and "9.50" in lines[1]


def test_eval_branch_all_shows_the_three_branches(trained_teacher: api.TrainResult, tiny_recipe_file: Path,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["eval", str(tiny_recipe_file), "-w", str(trained_teacher.weights), "--branch", "all",
              "--json", str(tmp_path / "branches.json")])
    out = capsys.readouterr().out
    assert info.value.code in (0, None)
    rows = [line for line in out.splitlines() if line.strip("│ ").startswith(("HR", "LR", "fused"))]
    assert [row.strip("│ ").split()[0] for row in rows] == ["HR", "LR", "fused"]
    assert "nan" not in out.lower()
    written = json.loads((tmp_path / "branches.json").read_text())
    assert list(written["branches"]) == ["hr", "lr", "fused"]
    assert set(api.METRICS) <= set(written["branches"]["fused"])


def test_eval_branch_all_on_a_student_is_one_line(trained_student: api.TrainResult, tiny_recipe_file: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["eval", str(tiny_recipe_file), "-w", str(trained_student.weights), "--branch", "all"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) == 1 and "teacher" in err and "Traceback" not in err
