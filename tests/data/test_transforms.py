"""Transforms: resize arithmetic, flip by hand, generator-only randomness."""

from __future__ import annotations

import pytest
import torch

from msad.data.transforms import (
    Compose,
    RandomHorizontalFlip,
    ResizeShortestEdge,
    build_transforms,
    resize_image,
    resized_shape,
)
from msad.structures import Target


def _target(*boxes: list[float]) -> Target:
    return Target(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.arange(len(boxes), dtype=torch.int64))


def test_resized_shape_arithmetic() -> None:
    assert resized_shape(480, 640, 800, 1333) == (800, 1067)  # 640 * 800/480 = 1066.67 -> 1067
    assert resized_shape(100, 1000, 800, 1333) == (133, 1333)  # long side capped: factor 1.333
    assert resized_shape(480, 640, 800, 1333, scale=0.5) == (400, 534)  # 1067 * 0.5 = 533.5 -> 534
    assert resized_shape(10, 10, 5, 100) == (5, 5)


def test_resize_scales_boxes_by_exact_per_axis_factors() -> None:
    image = torch.zeros(3, 480, 640, dtype=torch.uint8)
    target = _target([10.0, 20.0, 110.0, 220.0])
    out, out_target = ResizeShortestEdge([800], 1333)(image, target, None)
    assert out.shape == (3, 800, 1067) and out.dtype == torch.uint8
    fx, fy = 1067 / 640, 800 / 480
    assert torch.allclose(out_target.boxes, torch.tensor([[10 * fx, 20 * fy, 110 * fx, 220 * fy]]))
    assert torch.equal(out_target.labels, target.labels)


def test_resize_max_size_cap_and_low_resolution_scale() -> None:
    image = torch.zeros(3, 100, 1000, dtype=torch.uint8)
    out, target = ResizeShortestEdge([800], 1333, scale=0.5)(image, _target([100.0, 10.0, 500.0, 90.0]), None)
    assert out.shape == (3, 67, 667)  # (133, 1333) * 0.5 rounded
    assert torch.allclose(target.boxes, torch.tensor([[100 * 0.667, 10 * 0.67, 500 * 0.667, 90 * 0.67]]))


def test_resize_preserves_constant_image_values() -> None:
    image = torch.full((3, 40, 60), 200, dtype=torch.uint8)
    out, _ = ResizeShortestEdge([20], 1000)(image, _target(), None)
    assert out.shape == (3, 20, 30) and (out == 200).all()


def test_resize_uses_largest_size_in_eval_and_generator_in_train() -> None:
    image = torch.zeros(3, 100, 100, dtype=torch.uint8)
    resize = ResizeShortestEdge([32, 48, 64], 1000)
    assert resize(image, _target(), None)[0].shape[-1] == 64
    sizes = {resize(image, _target(), torch.Generator().manual_seed(s))[0].shape[-1] for s in range(40)}
    assert sizes == {32, 48, 64}
    draw = [resize(image, _target(), torch.Generator().manual_seed(7))[0].shape[-1] for _ in range(3)]
    assert len(set(draw)) == 1


def test_flip_boxes_by_hand() -> None:
    image = torch.arange(2 * 5, dtype=torch.uint8).reshape(1, 2, 5).expand(3, 2, 5)
    target = _target([1.0, 0.0, 3.0, 2.0], [0.0, 1.0, 5.0, 2.0])
    flipped, out = RandomHorizontalFlip(p=1.0)(image, target, torch.Generator().manual_seed(0))
    assert out.boxes.tolist() == [[2.0, 0.0, 4.0, 2.0], [0.0, 1.0, 5.0, 2.0]]
    assert flipped[0, 0].tolist() == [4, 3, 2, 1, 0]
    assert target.boxes[0].tolist() == [1.0, 0.0, 3.0, 2.0]  # input untouched


def test_flip_never_in_eval_and_probability_zero() -> None:
    image = torch.arange(5, dtype=torch.uint8).reshape(1, 1, 5).expand(3, 1, 5)
    assert torch.equal(RandomHorizontalFlip(p=1.0)(image, _target(), None)[0], image)
    assert torch.equal(RandomHorizontalFlip(p=0.0)(image, _target(), torch.Generator().manual_seed(1))[0], image)


def test_compose_is_a_pure_function_of_the_seed() -> None:
    image = torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    transforms = build_transforms(train=True, short_sizes=[30, 40, 50], max_size=200)
    assert isinstance(transforms, Compose) and len(transforms.transforms) == 2
    target = _target([5.0, 5.0, 20.0, 30.0])
    results = [transforms(image, target, torch.Generator().manual_seed(s)) for s in (3, 3, 4, 5, 6, 7)]
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1].boxes, results[1][1].boxes)
    torch.manual_seed(123)  # the global RNG plays no part
    again = transforms(image, target, torch.Generator().manual_seed(3))
    assert torch.equal(again[0], results[0][0])
    assert len({(r[0].shape, tuple(r[1].boxes[0].tolist())) for r in results}) > 1


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        ResizeShortestEdge([], 100)
    with pytest.raises(ValueError):
        ResizeShortestEdge([10], 100, scale=0)
    with pytest.raises(ValueError):
        RandomHorizontalFlip(p=1.5)


def _float_resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """msad's resize before torchvision's uint8 kernel: antialiased bilinear in float, rounded back."""
    out = torch.nn.functional.interpolate(image[None].float(), size=(height, width), mode="bilinear", antialias=True)
    return out[0].round().clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("size", [(800, 1067), (400, 534), (37, 50)])
def test_uint8_resize_within_one_level_of_float_resize(size: tuple[int, int]) -> None:
    """torchvision's uint8 kernel rounds fixed-point weights: at most one level off the float path, rarely."""
    y, x = torch.meshgrid(torch.arange(480.0), torch.arange(640.0), indexing="ij")
    noise = torch.randn(3, 480, 640, generator=torch.Generator().manual_seed(0)) * 20
    image = (torch.stack([x * 0.4, y * 0.5, (x + y) * 0.2]) + noise).clamp(0, 255).to(torch.uint8)
    out = resize_image(image, *size)
    assert out.shape == (3, *size) and out.dtype == torch.uint8
    diff = (out.int() - _float_resize(image, *size).int()).abs()
    assert int(diff.max()) <= 1 and float(diff.float().mean()) < 0.3
