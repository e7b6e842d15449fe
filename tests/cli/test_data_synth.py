"""``msad data synth --profile``: the COCO-shaped profile from the command line, and its usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from msad.cli.main import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as excinfo:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return (excinfo.value.code or 0), out, err


def test_coco_profile_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "coco"
    code, out, err = _run(["data", "synth", root, "--profile", "coco", "--train", "2", "--val", "1",
                           "--height", "192", "--width", "256"], capsys)
    assert code == 0, err
    assert "profile coco" in " ".join(out.split()) and "192×256" in out
    data = json.loads((root / "annotations" / "train.json").read_text())
    assert len(data["categories"]) == 10 and data["images"][0]["height"] == 192


@pytest.mark.parametrize("argv", [["--profile", "lvis"], ["--height", "64"]])
def test_bad_profile_or_half_a_size_is_a_usage_error(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["data", "synth", tmp_path / "x", "--train", "1", "--val", "0", *argv], capsys)
    assert code == 2 and "Traceback" not in out + err
    assert not (tmp_path / "x").exists()  # nothing written
