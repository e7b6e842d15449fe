"""The public slimmable_networks checkpoint: an independent reference of the original ``s_resnet`` code, conversion,
numerical equality at every width, clear errors for bad files, and msad backbone files."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from msad.models.backbones.slimmable_checkpoint import (
    CheckpointFormatError,
    convert_slimmable_state_dict,
    load_slimmable_checkpoint,
    public_backbone_state,
    save_backbone,
)
from msad.models.backbones.slimmable_resnet import SlimmableResNet, build_slimmable_resnet
from msad.serialization import load_weights

WIDTH_MULT_LIST = [0.25, 0.5, 0.75, 1.0]


# --- reference: mirrors slimmable_networks/models/slimmable_ops.py and models/s_resnet.py --------------------------
class RefSlimmableConv2d(nn.Conv2d):
    def __init__(self, in_channels_list, out_channels_list, kernel_size, stride=1, padding=0, bias=True):
        super().__init__(max(in_channels_list), max(out_channels_list), kernel_size, stride=stride,
                         padding=padding, bias=bias)
        self.in_channels_list = in_channels_list
        self.out_channels_list = out_channels_list
        self.width_mult = max(WIDTH_MULT_LIST)

    def forward(self, input):
        idx = WIDTH_MULT_LIST.index(self.width_mult)
        weight = self.weight[: self.out_channels_list[idx], : self.in_channels_list[idx], :, :]
        bias = self.bias[: self.out_channels_list[idx]] if self.bias is not None else None
        return F.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, 1)


class RefSwitchableBatchNorm2d(nn.Module):
    def __init__(self, num_features_list):
        super().__init__()
        self.num_features_list = num_features_list
        self.bn = nn.ModuleList([nn.BatchNorm2d(i) for i in num_features_list])
        self.width_mult = max(WIDTH_MULT_LIST)

    def forward(self, input):
        return self.bn[WIDTH_MULT_LIST.index(self.width_mult)](input)


class RefBlock(nn.Module):
    def __init__(self, inp, outp, stride):
        super().__init__()
        midp = [i // 4 for i in outp]
        self.body = nn.Sequential(
            RefSlimmableConv2d(inp, midp, 1, 1, 0, bias=False), RefSwitchableBatchNorm2d(midp), nn.ReLU(inplace=True),
            RefSlimmableConv2d(midp, midp, 3, stride, 1, bias=False), RefSwitchableBatchNorm2d(midp),
            nn.ReLU(inplace=True),
            RefSlimmableConv2d(midp, outp, 1, 1, 0, bias=False), RefSwitchableBatchNorm2d(outp),
        )
        self.residual_connection = stride == 1 and inp == outp
        if not self.residual_connection:
            self.shortcut = nn.Sequential(
                RefSlimmableConv2d(inp, outp, 1, stride=stride, bias=False), RefSwitchableBatchNorm2d(outp)
            )
        self.post_relu = nn.ReLU(inplace=True)

    def forward(self, x):
        res = self.body(x)
        res = res + (x if self.residual_connection else self.shortcut(x))
        return self.post_relu(res)


class RefModel(nn.Module):
    def __init__(self, depth=50, num_classes=1000):
        super().__init__()
        block_setting = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}[depth]
        feats = [64, 128, 256, 512]
        channels = [int(64 * w) for w in WIDTH_MULT_LIST]
        features = [nn.Sequential(
            RefSlimmableConv2d([3 for _ in channels], channels, 7, 2, 3, bias=False),
            RefSwitchableBatchNorm2d(channels), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
        )]
        for stage_id, n in enumerate(block_setting):
            outp = [int(feats[stage_id] * w * 4) for w in WIDTH_MULT_LIST]
            for i in range(n):
                features.append(RefBlock(channels, outp, 2 if i == 0 and stage_id != 0 else 1))
                channels = outp
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Linear(channels[-1], num_classes))
        self.stage_ends = [sum(block_setting[: i + 1]) for i in range(4)]  # index of each stage's last block

    def stages(self, x):
        """res2..res5 = outputs of features[3], [7], [13], [16] for R-50 (AvgPool/classifier not needed)."""
        x = self.features[0](x)
        outs = []
        for i in range(1, len(self.features)):
            x = self.features[i](x)
            if i in self.stage_ends:
                outs.append(x)
        return outs


def _set_ref_width(model, w):
    model.apply(lambda m: setattr(m, "width_mult", w))


# --------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch.manual_seed(0)
    ref = RefModel(depth=50)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.25)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.num_batches_tracked.fill_(7)
    ref.eval()
    state = {"module." + k: v for k, v in ref.state_dict().items()}
    path = tmp_path_factory.mktemp("ckpt") / "s_resnet50_0.25_0.5_0.75_1.0.pt"
    torch.save({"model": state}, path)
    return ref, state, path


def test_reference_layout_has_1115_tensors(reference):
    _, state, path = reference
    loaded = load_slimmable_checkpoint(path)
    assert len(state) == len(loaded) == 1115
    assert "module.features.0.0.weight" in loaded and "module.features.0.1.bn.3.num_batches_tracked" in loaded
    assert {k.split(".")[2] for k in loaded if ".shortcut.0.weight" in k} == {"1", "4", "8", "14"}
    converted = convert_slimmable_state_dict(loaded)
    assert len(converted) == 1113  # classifier weight + bias dropped


def test_msad_matches_reference_at_every_width(reference):
    ref, _, path = reference
    model = build_slimmable_resnet(depth=50, widths=tuple(WIDTH_MULT_LIST), weights=str(path)).eval()
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(5))
    for w in WIDTH_MULT_LIST:
        _set_ref_width(ref, w)
        model.set_width(w)
        with torch.no_grad():
            expected = ref.stages(x)
            got = model(x)
        assert list(got) == ["res2", "res3", "res4", "res5"]
        for name, exp in zip(got, expected, strict=True):
            assert got[name].shape == exp.shape
            assert exp.abs().mean() > 0.05  # activations are not vanishing, so atol 1e-5 is a real check
            torch.testing.assert_close(got[name], exp, atol=1e-5, rtol=1e-5)
    _set_ref_width(ref, 1.0)


def test_single_width_backbone_is_narrowed_from_the_public_checkpoint(reference):
    ref, _, path = reference
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    for w in (0.5, 1.0):
        model = build_slimmable_resnet(width=w, weights=str(path)).eval()  # default widths = (w,)
        assert model.widths == (w,)
        assert model.stem.conv.weight.shape[0] == int(64 * w)  # only this width is stored
        _set_ref_width(ref, w)
        with torch.no_grad():
            expected = ref.stages(x)
            got = model(x)
        for name, exp in zip(got, expected, strict=True):
            torch.testing.assert_close(got[name], exp, atol=1e-5, rtol=1e-5)
    _set_ref_width(ref, 1.0)


def test_depth_101_layout_converts_to_model_keys():
    with torch.device("meta"):
        ref = RefModel(depth=101)
        model = SlimmableResNet(depth=101)
    state = {"module." + k: v for k, v in ref.state_dict().items()}
    converted = convert_slimmable_state_dict(state, depth=101)
    expected = model.state_dict()
    assert set(converted) == set(expected)
    assert all(converted[k].shape == v.shape for k, v in expected.items())
    with pytest.raises(ValueError, match="unexpected"):  # an R-101 checkpoint is not an R-50 one
        convert_slimmable_state_dict(state, depth=50)


def test_convert_names_missing_unexpected_and_wrong_shapes(reference):
    _, state, _ = reference
    missing = {k: v for k, v in state.items() if k != "module.features.5.body.3.weight"}
    with pytest.raises(ValueError, match=r"missing 1 key\(s\) \['features\.5\.body\.3\.weight'\]"):
        convert_slimmable_state_dict(missing)
    extra = dict(state, **{"module.features.17.body.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected .*features\.17\.body\.0\.weight"):
        convert_slimmable_state_dict(extra)
    wrong = dict(state, **{"module.features.2.body.4.bn.1.weight": torch.zeros(33)})
    with pytest.raises(ValueError, match=r"shape mismatch.*features\.2\.body\.4\.bn\.1\.weight \(33,\)"):
        convert_slimmable_state_dict(wrong)
    with pytest.raises(ValueError, match="depth"):
        convert_slimmable_state_dict(state, depth=34)


def test_bad_files_give_one_clear_error(tmp_path, reference):
    _, state, _ = reference
    small = tmp_path / "small.pt"
    torch.save({"model": {"module.features.0.0.weight": torch.zeros(64, 3, 7, 7)}}, small)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(small.read_bytes()[: small.stat().st_size // 2])
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    cases = [(tmp_path / "absent.pt", "not found"), (truncated, "truncated or corrupt"),
             (text, "not a readable PyTorch checkpoint")]
    for path, match in cases:
        with pytest.raises(CheckpointFormatError, match=match) as info:
            load_slimmable_checkpoint(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)
    nothing = tmp_path / "list.pt"
    torch.save([1, 2], nothing)
    with pytest.raises(CheckpointFormatError, match="state_dict"):
        load_slimmable_checkpoint(nothing)
    # through the builder: a checkpoint missing a key and a truncated file are ValueErrors naming the file
    with pytest.raises(ValueError, match=r"small\.pt.*missing"):
        build_slimmable_resnet(weights=str(small))
    with pytest.raises(ValueError, match="truncated"):
        build_slimmable_resnet(weights=str(truncated))
    with pytest.raises(ValueError, match="not found"):
        build_slimmable_resnet(weights=str(tmp_path / "absent.safetensors"))


def test_a_width_the_public_checkpoint_lacks_is_a_checkpoint_error_naming_it(reference):
    _, _, path = reference
    with pytest.raises(CheckpointFormatError, match=r"s_resnet50_0\.25_0\.5_0\.75_1\.0\.pt: widths \[0\.3\] are not in"):
        public_backbone_state(path, SlimmableResNet(widths=(0.3,)))
    with pytest.raises(CheckpointFormatError, match=r"s_resnet50.*widths \[0\.3\]"):
        build_slimmable_resnet(width=0.3, weights=str(path))


def test_save_backbone_round_trip(tmp_path):
    torch.manual_seed(0)
    widths = (0.25, 0.5)
    model = build_slimmable_resnet(widths=widths, width=0.5)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
    model.eval()
    path = save_backbone(tmp_path / "bb.safetensors", model, widths=widths)
    _, meta = load_weights(path)
    assert meta["format"] == "msad/1" and meta["role"] == "backbone" and meta["depth"] == "50"
    assert json.loads(meta["width"]) == [0.25, 0.5]
    loaded = build_slimmable_resnet(widths=widths, width=0.25, weights=str(path)).eval()
    x = torch.randn(1, 3, 64, 64)
    for w in widths:
        model.set_width(w)
        loaded.set_width(w)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x)["res5"], model(x)["res5"], atol=0, rtol=0)
    with pytest.raises(ValueError, match="widths"):
        build_slimmable_resnet(weights=str(path))  # default widths differ from the file's
    with pytest.raises(ValueError, match="depth"):
        build_slimmable_resnet(depth=101, widths=widths, width=0.5, weights=str(path))
