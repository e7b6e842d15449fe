"""The one output rule: no output on an input, on another output, out of its folder, or where it cannot be written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from msad.errors import UsageError
from msad.outputs import check_outputs, same_file


def test_an_output_equal_to_an_input_is_refused_naming_both(tmp_path: Path) -> None:
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"w")
    with pytest.raises(UsageError, match=r"--json .*w\.safetensors would overwrite the input --weights .*choose another --json"):
        check_outputs([("--json", weights)], inputs=[("--weights", weights)])
    assert weights.read_bytes() == b"w"


def test_the_same_file_by_another_name_is_the_same_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    data = tmp_path / "val.json"
    data.write_text("{}")
    with pytest.raises(UsageError, match="overwrite the input"):  # a relative spelling with ..
        check_outputs([("--results", tmp_path / "d" / ".." / "val.json")], inputs=[("annotations", data)])
    os.symlink(data, tmp_path / "link.json")
    with pytest.raises(UsageError, match="overwrite the input"):  # through a link
        check_outputs([("--results", tmp_path / "link.json")], inputs=[("annotations", data)])
    os.link(data, tmp_path / "hard.json")
    with pytest.raises(UsageError, match="overwrite the input"):  # a hard link is the same inode
        check_outputs([("--results", tmp_path / "hard.json")], inputs=[("annotations", data)])
    assert same_file(data, tmp_path / "hard.json") and not same_file(data, tmp_path / "new.json")


def test_two_outputs_on_one_file_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    with pytest.raises(UsageError, match="--results .*m.json and --json .*m.json are the same file"):
        check_outputs([("--json", out), ("--results", out)])


def test_an_output_through_a_link_out_of_its_folder_is_refused(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "d1")
    with pytest.raises(UsageError, match=r"d1/a\.png resolves to .*elsewhere/a\.png, outside the output folder"):
        check_outputs([("--output", out / "d1" / "a.png")], within=out)
    inside = out / "d2"
    inside.mkdir()
    os.symlink(inside, out / "d3")  # a link that stays inside is fine
    assert check_outputs([("--output", out / "d3" / "a.png")], within=out) == [inside.resolve() / "a.png"]


def test_an_output_folder_that_is_itself_a_link_is_the_users_choice(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(target, tmp_path / "out")
    assert check_outputs([("--output", tmp_path / "out" / "a.png")], within=tmp_path / "out") == [target.resolve() / "a.png"]


def test_unwritable_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        check_outputs([("--json", tmp_path)])
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UsageError, match="a_file is a file, not a folder"):
        check_outputs([("--json", tmp_path / "a_file" / "sub" / "m.json")])


def test_new_files_and_none_pass(tmp_path: Path) -> None:
    inputs = [("--weights", tmp_path / "w.safetensors"), ("--annotations", None)]
    assert check_outputs([("--json", tmp_path / "new" / "m.json"), ("--results", None)], inputs=inputs) == [
        Path(os.path.realpath(tmp_path)) / "new" / "m.json"
    ]
