"""The interrupt hint gives a command that works, also after ``--force``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from msad.api.run_errors import last_checkpoint, resume_hint


def test_the_hint_replaces_force_with_resume() -> None:
    argv = ["/venv/bin/msad", "teacher", "recipes/tiny.toml", "--output", "runs/my run", "--force", "--set", "solver.iters=9"]
    assert resume_hint(argv) == (
        "continue with: msad teacher recipes/tiny.toml --output 'runs/my run' --set solver.iters=9 --resume")
    already = ["/x/msad/__main__.py", "train", "r.toml", "--resume"]
    assert resume_hint(already) == "continue with: msad train r.toml --resume"


def test_outside_the_msad_command_the_hint_is_in_words() -> None:
    assert resume_hint(["/usr/bin/pytest", "-x"]) == "continue with the same command and --resume (without --force)"


def test_last_checkpoint_names_the_file_and_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"iteration": 40}))
    monkeypatch.setattr("sys.argv", ["msad", "distill", "r.toml", "--force", "-t", "t.safetensors"])
    assert last_checkpoint(tmp_path) == (f"the last checkpoint is {tmp_path / 'last.safetensors'} (iteration 40); "
                                         "continue with: msad distill r.toml -t t.safetensors --resume")
