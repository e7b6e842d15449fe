"""Preflight checks of one image file and one box: each problem kind, and clean files pass."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from msad.data.preflight import box_clipped, box_problem, inspect_image


def _save(path: Path, size: tuple[int, int] = (40, 30), **kwargs) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, **kwargs)
    return path


@pytest.mark.parametrize("name", ["a.jpg", "a.png", "a.bmp"])
def test_clean_files_give_their_display_size(tmp_path: Path, name: str) -> None:
    check = inspect_image(_save(tmp_path / name), decode=True)
    assert check.kind is None and check.size == (30, 40) and check.detail == ""


def test_exif_rotation_swaps_the_size_training_sees(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    check = inspect_image(_save(tmp_path / "r.jpg", exif=exif.tobytes()))
    assert check.size == (40, 30) and check.orientation == 6


def test_missing_and_directory(tmp_path: Path) -> None:
    assert inspect_image(tmp_path / "nope.jpg").kind == "missing"
    assert inspect_image(tmp_path).kind == "missing"


def test_garbage_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "g.jpg"
    path.write_bytes(b"not an image at all")
    check = inspect_image(path)
    assert check.kind == "unreadable" and "not a recognised image" in check.detail


@pytest.mark.parametrize("name, marker", [("cut.jpg", "FFD9"), ("cut.png", "IEND")])
def test_cut_files_are_truncated_by_their_missing_end_marker(tmp_path: Path, name: str, marker: str) -> None:
    path = _save(tmp_path / name, (200, 150))
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    check = inspect_image(path)
    assert check.kind == "truncated" and marker in check.detail and check.size == (150, 200)


def test_padding_after_the_end_marker_is_fine(tmp_path: Path) -> None:
    path = _save(tmp_path / "pad.jpg")
    path.write_bytes(path.read_bytes() + b"\0" * 100)
    assert inspect_image(path).kind is None


def test_decode_finds_a_bad_file_whose_header_and_end_look_fine(tmp_path: Path) -> None:
    path = _save(tmp_path / "mid.png", (200, 150))
    data = bytearray(path.read_bytes())
    data[200:260] = bytes(60)  # inside the image data: its CRC no longer matches
    path.write_bytes(bytes(data))
    assert inspect_image(path).kind is None  # header and IEND intact
    assert inspect_image(path, decode=True).kind in ("unreadable", "truncated")


@pytest.mark.parametrize(
    "bbox, fragment",
    [
        ([1, 2, math.nan, 4], "NaN or infinite"),
        ([1, 2, math.inf, 4], "NaN or infinite"),
        ([1, 2, -3, 4], "negative width"),
        ([1, 2, 3, -4], "negative height"),
        ([50, 2, 3, 4], "entirely outside the 40×30 image"),
        ([-9, 2, 5, 4], "entirely outside"),
        (["a", 2, 3, 4], "not four numbers"),
    ],
)
def test_bad_boxes(bbox: list, fragment: str) -> None:
    assert fragment in box_problem(bbox, 40, 30)


def test_good_and_edge_reaching_boxes() -> None:
    assert box_problem([0, 0, 40, 30], 40, 30) == "" and not box_clipped([0, 0, 40.5, 30], 40, 30)
    assert box_problem([30, 20, 20, 20], 40, 30) == "" and box_clipped([30, 20, 20, 20], 40, 30)  # training clips it
    assert box_problem([500, 2, 3, 4], None, None) == ""  # size unknown: only the values are checked
