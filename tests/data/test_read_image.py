"""Robust image reading: colour modes, EXIF orientation, unicode paths, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from msad.data import images
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


def _photo(height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth image with some noise: what a camera gives, so JPEG coding has work to do."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    noise = np.random.default_rng(0).normal(0, 12, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "name, save",
    [
        ("rgb.jpg", lambda img, p: img.save(p, quality=90)),
        ("444.jpg", lambda img, p: img.save(p, quality=95, subsampling=0)),
        ("progressive.jpg", lambda img, p: img.save(p, quality=80, progressive=True)),
        ("gray.jpg", lambda img, p: img.convert("L").save(p, quality=90)),
    ],
)
def test_torchvision_decodes_jpegs_to_pils_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, save) -> None:
    """JPEGs (libjpeg-turbo in both, same settings) decode bit-exactly as PIL does, and PIL is not called."""
    path = tmp_path / name
    save(Image.fromarray(_photo()), path)
    expected = images._decode_pil(path, path.read_bytes())
    assert images.torchvision_decodable(path.read_bytes())
    monkeypatch.setattr(images, "_decode_pil", lambda *a: pytest.fail("PIL decoded a torchvision-decodable file"))
    image = read_image(path)
    assert image.dtype == torch.uint8 and image.shape == (3, 48, 64)
    assert torch.equal(image, expected)


@pytest.mark.parametrize(
    "name, make",
    [
        ("cmyk.jpg", lambda p: Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(p)),
        ("rgb.png", lambda p: Image.new("RGB", (4, 4)).save(p)),  # torchvision's decode_png crashes on a bad CRC
        ("g16.png", lambda p: Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)).save(p)),
        ("palette.png", lambda p: Image.new("P", (4, 4), 3).save(p)),
        ("rgba.png", lambda p: Image.new("RGBA", (4, 4), (1, 2, 3, 4)).save(p)),
        ("la.png", lambda p: Image.new("LA", (4, 4), (1, 4)).save(p)),
        ("rgb.tiff", lambda p: Image.new("RGB", (4, 4)).save(p)),
        ("rgb.bmp", lambda p: Image.new("RGB", (4, 4)).save(p)),
        ("rgb.gif", lambda p: Image.new("RGB", (4, 4)).save(p)),
    ],
)
def test_other_files_stay_with_pil(tmp_path: Path, name: str, make) -> None:
    """CMYK JPEGs and every other format keep PIL's decoding and conversions (composite, rescale…)."""
    path = tmp_path / name
    make(path)
    assert not images.torchvision_decodable(path.read_bytes())


def test_image_over_pils_pixel_limit_stays_with_pil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.jpg"
    Image.fromarray(_photo()).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30 * 30)  # PIL warns above it and refuses above twice it
    assert not images.torchvision_decodable(path.read_bytes())
    with pytest.raises(ImageReadError, match="big.jpg.*corrupt or truncated.*decompression bomb"):
        read_image(path)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_jpeg_keeps_pils_one_line_error(tmp_path: Path, keep: float) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(_photo(96, 128)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    assert images.torchvision_decodable(path.read_bytes())  # the header is intact: torchvision tries first
    with pytest.raises(ImageReadError, match="cut.jpg.*corrupt or truncated") as info:
        read_image(path)
    assert "\n" not in str(info.value)
