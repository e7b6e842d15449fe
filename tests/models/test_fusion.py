"""C-FF: the method's fusion arithmetic, pinned by hand."""

import math

import pytest
import torch

from msad.models.fusion import CrossFeatureFusion


def test_structure_matches_paper():
    fusion = CrossFeatureFusion(channels=256, hidden=32)
    first, _, second = fusion.fc
    assert first.weight.shape == (32, 512) and first.bias is None
    assert second.weight.shape == (2, 32) and second.bias is None


def test_fused_is_softmax_weighted_sum_per_image():
    # One channel, one hidden unit: hidden = relu(mean HR), logits = (hidden, 0). With weights set by hand,
    # image 0 (HR ≡ ln 3) gets softmax(ln 3, 0) = (3/4, 1/4); image 1 (HR ≡ 0) gets (1/2, 1/2).
    fusion = CrossFeatureFusion(channels=1, hidden=1)
    with torch.no_grad():
        fusion.fc[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        fusion.fc[2].weight.copy_(torch.tensor([[1.0], [0.0]]))
    hr = torch.stack([torch.full((1, 2, 3), math.log(3.0)), torch.zeros(1, 2, 3)])
    lr = torch.stack([torch.full((1, 2, 3), 5.0), torch.full((1, 2, 3), -2.0)])
    torch.testing.assert_close(fusion.weights(hr, lr), torch.tensor([[0.75, 0.25], [0.5, 0.5]]))
    fused = fusion(hr, lr)
    torch.testing.assert_close(fused[0], torch.full((1, 2, 3), 0.75 * math.log(3.0) + 0.25 * 5.0))
    torch.testing.assert_close(fused[1], torch.full((1, 2, 3), -1.0))


def test_zero_weights_give_the_mean_and_shape_mismatch_fails():
    fusion = CrossFeatureFusion(channels=2, hidden=2)
    torch.nn.init.zeros_(fusion.fc[2].weight)
    hr, lr = torch.ones(1, 2, 3, 3), 3 * torch.ones(1, 2, 3, 3)
    torch.testing.assert_close(fusion(hr, lr), 2 * torch.ones(1, 2, 3, 3))
    with pytest.raises(ValueError, match="equal shape"):
        fusion(hr, torch.ones(1, 2, 2, 3))


@pytest.mark.parametrize("layer", [0, 2])
def test_linear_layers_start_as_c2_xavier_fill(layer):
    # c2_xavier_fill = kaiming_uniform_(a=1): U(±sqrt(3/fan_in)), std 1/sqrt(fan_in); PyTorch's default is
    # U(±1/sqrt(fan_in)), std 1/sqrt(3·fan_in).
    torch.manual_seed(0)
    weight = CrossFeatureFusion(channels=256, hidden=32).fc[layer].weight.detach()
    fan_in = weight.shape[1]
    bound = (3 / fan_in) ** 0.5
    assert weight.abs().max() <= bound
    assert weight.std().item() == pytest.approx(fan_in**-0.5, rel=0.1 if layer == 0 else 0.35)
    assert weight.abs().max() > 1.3 * fan_in**-0.5  # beyond PyTorch's default bound
