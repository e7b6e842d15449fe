"""timm adapter: level naming from reductions, strict local weights, the missing-extra error."""

import sys

import pytest
import torch

from msad.errors import MissingDependencyError
from msad.models.backbones.slimmable_checkpoint import CheckpointFormatError
from msad.models.backbones.timm_backbone import build_timm_backbone


def test_missing_timm_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'msad\[timm\]'"):
        build_timm_backbone(model_name="resnet18")


def test_resnet18_levels_strides_and_channels():
    pytest.importorskip("timm")
    backbone = build_timm_backbone(model_name="resnet18").eval()
    info = backbone.feature_info
    assert [(f.name, f.channels, f.stride) for f in info] == [
        ("res2", 64, 4), ("res3", 128, 8), ("res4", 256, 16), ("res5", 512, 32)
    ]
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 96))
    assert list(out) == ["res2", "res3", "res4", "res5"]
    for f in info:
        assert out[f.name].shape == (1, f.channels, 64 // f.stride, 96 // f.stride)


def test_bad_model_and_missing_stride_32():
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match="stride-32"):
        build_timm_backbone(model_name="resnet18", out_indices=(1, 2, 3))
    with pytest.raises(ValueError, match="unknown timm model"):
        build_timm_backbone(model_name="no_such_net_xyz")
    subset = build_timm_backbone(model_name="resnet18", out_indices=(3, 4))
    assert [f.name for f in subset.feature_info] == ["res4", "res5"]


def test_local_weights_strict(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    full = timm.create_model("resnet18", pretrained=False).eval()
    classifier_ckpt = tmp_path / "resnet18.pt"
    torch.save({"state_dict": full.state_dict()}, classifier_ckpt)  # includes fc.*, which is ignored
    backbone = build_timm_backbone(model_name="resnet18", weights=str(classifier_ckpt)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = full.layer4(full.layer3(full.layer2(full.layer1(full.maxpool(full.act1(full.bn1(full.conv1(x))))))))
        torch.testing.assert_close(backbone(x)["res5"], expected)

    state = {k: v.contiguous() for k, v in backbone.model.state_dict().items()}
    good = tmp_path / "good.safetensors"
    save_file(state, str(good))
    again = build_timm_backbone(model_name="resnet18", weights=str(good)).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x)["res5"], expected)

    missing = tmp_path / "missing.safetensors"
    save_file({k: v for k, v in state.items() if k != "layer2.0.conv1.weight"}, str(missing))
    with pytest.raises(CheckpointFormatError, match=r"1 missing tensors \(e\.g\. layer2\.0\.conv1\.weight\)"):
        build_timm_backbone(model_name="resnet18", weights=str(missing))
    extra = tmp_path / "extra.safetensors"
    save_file(dict(state, bogus=torch.zeros(1)), str(extra))
    with pytest.raises(CheckpointFormatError, match="bogus"):
        build_timm_backbone(model_name="resnet18", weights=str(extra))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointFormatError, match="not a readable"):
        build_timm_backbone(model_name="resnet18", weights=str(junk))
