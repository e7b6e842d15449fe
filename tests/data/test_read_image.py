"""Robust image reading: colour modes, EXIF orientation, unicode paths, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from msad.data.images import ImageReadError, read_image


def test_rgb_png_roundtrip_exact(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.dtype == torch.uint8 and image.shape == (3, 5, 7)
    assert torch.equal(image, torch.from_numpy(array).permute(2, 0, 1))


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    Image.new("L", (4, 3), 77).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.shape == (3, 3, 4)
    assert (image == 77).all()


def test_sixteen_bit_grayscale_is_rescaled_not_clipped(tmp_path: Path) -> None:
    array = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(array).save(tmp_path / "g16.png")
    image = read_image(tmp_path / "g16.png")
    assert image[0, 0].tolist() == [0, 128, 255]


def test_rgba_is_composited_on_black(tmp_path: Path) -> None:
    Image.new("RGBA", (2, 2), (100, 150, 200, 128)).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.shape == (3, 2, 2)
    expected = torch.tensor([50, 75, 100], dtype=torch.int32)
    assert (image[:, 0, 0].int() - expected).abs().max() <= 1


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)  # pure red
    image = read_image(tmp_path / "c.jpg")
    assert image.shape == (3, 8, 8)
    r, g, b = image[:, 4, 4].tolist()
    assert r > 230 and g < 30 and b < 30


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """Stored 20 wide x 10 tall, left half red; orientation 6 displays it rotated 90 deg clockwise."""
    array = np.zeros((10, 20, 3), dtype=np.uint8)
    array[:, :10] = (255, 0, 0)
    array[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(array).save(tmp_path / "r.jpg", quality=95, exif=exif.tobytes())
    image = read_image(tmp_path / "r.jpg")
    assert image.shape == (3, 20, 10)  # now portrait
    top, bottom = image[:, 2:8].float().mean((1, 2)), image[:, 12:18].float().mean((1, 2))
    assert top[0] > 200 and top[2] < 50  # the stored left (red) half is on top
    assert bottom[2] > 200 and bottom[0] < 50


def test_unicode_path(tmp_path: Path) -> None:
    path = tmp_path / "données_图像" / "пример é.png"
    path.parent.mkdir()
    Image.new("RGB", (3, 2), (1, 2, 3)).save(path)
    assert read_image(path)[:, 1, 2].tolist() == [1, 2, 3]


def test_missing_file_error_names_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageReadError, match="nope.png.*not found") as info:
        read_image(path)
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)


def test_garbage_file_error_names_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(b"this is not an image")
    with pytest.raises(ImageReadError, match="bad.jpg.*not a recognised image") as info:
        read_image(path)
    assert "\n" not in str(info.value)


def test_truncated_file_error_names_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageReadError, match="cut.png.*(corrupt|truncated)") as info:
        read_image(path)
    assert "\n" not in str(info.value)


def test_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)
