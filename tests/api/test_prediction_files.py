"""What ``msad predict`` reads and writes: drawing names, output checks and COCO id mapping (pure functions)."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pytest

from msad.api.prediction_files import (
    check_output_dir,
    coco_ids,
    drawing_names,
    find_images,
    relative_names,
    search_images,
)
from msad.errors import DataError, RunStateError, UsageError


def _touch(root: Path, *names: str) -> list[Path]:
    paths = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        paths.append(path)
    return paths


def test_drawings_mirror_paths_and_keep_a_suffix_only_to_tell_names_apart(tmp_path: Path) -> None:
    files = _touch(tmp_path, "d1/a.png", "d1/a_2.png", "d2/a.png", "d2/b.jpg", "d2/b.png", "d2/c.jpeg")
    names = [str(n) for n in drawing_names(relative_names(files))]
    assert names == ["d1/a.png", "d1/a_2.png", "d2/a.png", "d2/b.jpg.png", "d2/b.png.png", "d2/c.png"]
    assert [str(n) for n in drawing_names(relative_names(files[:2]))] == ["a.png", "a_2.png"]  # one folder: flat
    assert drawing_names(relative_names(list(reversed(files))))[::-1] == drawing_names(relative_names(files))


def test_an_image_given_twice_is_predicted_once(tmp_path: Path) -> None:
    (a,) = _touch(tmp_path, "d/a.png")
    assert find_images([a, tmp_path / "d", tmp_path / "d" / "." / "a.png"]) == [a]


def test_output_checks(tmp_path: Path) -> None:
    files = _touch(tmp_path, "in/a.png", "in/b.jpg")
    writes = [PurePosixPath("predictions.json"), *drawing_names(relative_names(files))]
    with pytest.raises(UsageError, match="overwrite the input image .*a.png"):
        check_output_dir(tmp_path / "in", files, writes, force=True)
    check_output_dir(tmp_path / "new", files, writes, force=False)  # absent: fine
    out = tmp_path / "out"
    _touch(out, "a.png", "predictions.json", ".msad-predict-1234/a.png")
    check_output_dir(out, files, writes, force=False)  # only what it writes (and a stale staging folder)
    _touch(out, "sub/notes.txt")
    with pytest.raises(RunStateError, match="1 file.*sub/notes.txt.*--force"):
        check_output_dir(out, files, writes, force=False)
    check_output_dir(out, files, writes, force=True)
    with pytest.raises(RunStateError, match="is a file"):
        check_output_dir(files[0], files, writes, force=True)


def test_coco_ids_by_relative_path_then_unique_base_name(tmp_path: Path) -> None:
    annotations = tmp_path / "ann.json"
    annotations.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "val/x.png"}, {"id": 9, "file_name": "y.png"},
                   {"id": 11, "file_name": "a/z.png"}, {"id": 12, "file_name": "b/z.png"}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 1, "name": "dog"}],
    }))
    rel = [PurePosixPath("val/x.png"), PurePosixPath("other/y.png"), PurePosixPath("b/z.png")]
    assert coco_ids(annotations, rel, ["dog", "cat"]) == ([7, 9, 12], [1, 3])
    with pytest.raises(DataError, match="1 of 1 images are not in .*z.png"):
        coco_ids(annotations, [PurePosixPath("c/z.png")], ["dog"])  # two images named z.png: ambiguous
    with pytest.raises(DataError, match="'bird'"):
        coco_ids(annotations, rel[:1], ["bird"])
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(DataError, match="not a readable COCO annotation file"):
        coco_ids(tmp_path / "bad.json", rel, ["dog"])


def test_folders_are_searched_recursively_and_other_files_are_counted(tmp_path: Path) -> None:
    a, b, c = _touch(tmp_path, "in/a.png", "in/sub/b.jpg", "in/sub/deeper/c.PNG")
    (notes,) = _touch(tmp_path, "in/sub/notes.txt")
    _touch(tmp_path, "in/out/a.png")  # the output folder inside the input folder: not searched
    found = search_images([tmp_path / "in"], exclude=tmp_path / "in" / "out")
    assert found.images == [a, b, c] and found.skipped == [notes]
    assert [str(n) for n in drawing_names(relative_names(found.images))] == ["a.png", "sub/b.png", "sub/deeper/c.png"]
    with pytest.raises(FileNotFoundError, match="no images .*1 other file.*notes.txt"):
        search_images([tmp_path / "in" / "sub" / "*.txt"])


def test_quoted_glob_patterns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, c = _touch(tmp_path, "imgs/a.jpg", "imgs/b.png", "imgs/sub/c.png")
    _touch(tmp_path, "imgs/readme.md")
    monkeypatch.chdir(tmp_path)
    assert find_images(["imgs/*.jpg"]) == [Path("imgs/a.jpg")]
    assert find_images(["**/*.png"]) == [Path("imgs/b.png"), Path("imgs/sub/c.png")]
    found = search_images(["imgs/*"])  # a matched folder is searched; a matched non-image counted, not read
    assert found.images == [Path("imgs/a.jpg"), Path("imgs/b.png"), Path("imgs/sub/c.png")]
    assert found.skipped == [Path("imgs/readme.md")]
    with pytest.raises(FileNotFoundError, match="no file matches the pattern 'imgs/\\*.gif'"):
        find_images(["imgs/*.gif"])
