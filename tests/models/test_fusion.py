"""C-FF: the method's fusion arithmetic, pinned by hand."""

import pytest
import torch

from msad.models.fusion import CrossFeatureFusion


def test_structure_matches_paper():
    fusion = CrossFeatureFusion(channels=256, hidden=32)
    first, _, second = fusion.fc
    assert first.weight.shape == (32, 512) and first.bias is None
    assert second.weight.shape == (2, 32) and second.bias is None


def test_fused_is_softmax_weighted_sum_per_image():
    torch.manual_seed(0)
    fusion = CrossFeatureFusion(channels=4, hidden=3)
    hr, lr = torch.randn(2, 4, 5, 6), torch.randn(2, 4, 5, 6)
    fused = fusion(hr, lr)
    for i in range(2):
        pooled = torch.cat([hr[i], lr[i]]).mean(dim=(1, 2))
        logits = fusion.fc[2].weight @ torch.relu(fusion.fc[0].weight @ pooled)
        a, b = torch.softmax(logits, dim=0)
        torch.testing.assert_close(fused[i], a * hr[i] + b * lr[i])


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
