"""Converting original MSAD detectron2 checkpoints (``model_final.pth``) into msad teacher/student weights.

The original files are synthesised from msad models by an inverse map written here independently of the
converter, with the key names of dvlab-research/MSAD (``arch_t.py``, ``arch_s.py``, ``slresnets.py``,
``tower.py``, detectron2's FPN): full-width slimmable convs, one BN per width of (0.25, 0.5, 0.75, 1.0), conv
biases in the head towers, ``scales.{i}.scale`` of shape [1], BGR/std-1 input for the stem.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from msad.api.convert import convert_detectron2
from msad.checkpoint import load_model, read_checkpoint
from msad.config import load_recipe
from msad.convert.detectron2 import (
    convert_detectron2_state,
    detectron2_role,
    fold_input_normalization,
    load_detectron2_checkpoint,
)
from msad.errors import CheckpointError
from msad.roles import build_model

ROOT = Path(__file__).resolve().parents[2]
NUM_CLASSES = 3
WIDTH = 0.25
ORIGINAL_WIDTHS = (0.25, 0.5, 0.75, 1.0)
R50 = ((3, 256), (4, 512), (6, 1024), (3, 2048))
STD = (58.395, 57.12, 57.375)  # msad's default RGB std, the recipe's


def _recipe(*overrides: str):
    return load_recipe(ROOT / "recipes" / "tiny.toml", overrides=list(overrides))


def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial values everywhere (BN statistics, GN affine, scales) so that a wrong mapping shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif tensor.dim() <= 1:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1 + 0.5)
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) / fan_in**0.5)
    return model.eval()


def _embed(small: torch.Tensor, full_shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    full = torch.randn(full_shape, generator=gen)
    full[tuple(slice(0, n) for n in small.shape)] = small
    return full


def to_original(s: dict[str, torch.Tensor], role: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """msad state (width 0.25, one BN per position) → the original detectron2 layout, written out by hand."""
    gen = torch.Generator().manual_seed(seed)
    src = "detector." if role == "teacher" else ""
    P = "T" if role == "teacher" else "S"
    out: dict[str, torch.Tensor] = {}

    def conv(m: str, o: str, cin_full: int, cout_full: int) -> None:
        w = s[f"{src}backbone.{m}.weight"]
        out[f"{P}_backbone.bottom_up.{o}.weight"] = _embed(w, (cout_full, cin_full, *w.shape[2:]), gen)

    def bn(m: str, o: str, channels_at) -> None:
        for j, width in enumerate(ORIGINAL_WIDTHS):
            c = channels_at(width)
            for stat in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                key = f"{P}_backbone.bottom_up.{o}.bn.{j}.{stat}"
                if width == WIDTH:
                    out[key] = s[f"{src}backbone.{m}.bns.0.{stat}"].clone()
                elif stat == "num_batches_tracked":
                    out[key] = torch.tensor(3)
                else:
                    out[key] = torch.rand(c, generator=gen) + 0.5

    # stem: the original saw BGR minus the mean, std 1 → undo msad's RGB/std fold
    stem = s[f"{src}backbone.stem.conv.weight"]
    unfolded = (stem / torch.tensor(STD).view(1, 3, 1, 1)).flip(1)
    out[f"{P}_backbone.bottom_up.features.0.0.weight"] = _embed(unfolded, (64, 3, 7, 7), gen)
    bn("stem.bn", "features.0.1", lambda w: int(64 * w))
    index, cin = 1, 64
    for stage, (blocks, cout) in enumerate(R50):
        for i in range(blocks):
            m, o = f"res{stage + 2}.{i}", f"features.{index}"
            conv(f"{m}.conv1", f"{o}.body.0", cin, cout // 4)
            bn(f"{m}.bn1", f"{o}.body.1", lambda w, c=cout: int(c * w) // 4)
            conv(f"{m}.conv2", f"{o}.body.3", cout // 4, cout // 4)
            bn(f"{m}.bn2", f"{o}.body.4", lambda w, c=cout: int(c * w) // 4)
            conv(f"{m}.conv3", f"{o}.body.6", cout // 4, cout)
            bn(f"{m}.bn3", f"{o}.body.7", lambda w, c=cout: int(c * w))
            if i == 0:
                conv(f"{m}.downsample.0", f"{o}.shortcut.0", cin, cout)
                bn(f"{m}.downsample.1", f"{o}.shortcut.1", lambda w, c=cout: int(c * w))
            index, cin = index + 1, cout
    # detectron2 FPN + LastLevelP6P7 (p6 from res5)
    for i in range(2, 6):
        for param in ("weight", "bias"):
            out[f"{P}_backbone.fpn_lateral{i}.{param}"] = s[f"{src}neck.lateral.p{i}.{param}"].clone()
            out[f"{P}_backbone.fpn_output{i}.{param}"] = s[f"{src}neck.output.p{i}.{param}"].clone()
    for param in ("weight", "bias"):
        out[f"{P}_backbone.top_block.p6.{param}"] = s[f"{src}neck.p6.{param}"].clone()
        p7 = s.get(f"{src}neck.p7.{param}")  # the msad student has no p7; the original student file does
        out[f"{P}_backbone.top_block.p7.{param}"] = p7.clone() if p7 is not None else torch.randn(
            s[f"{src}neck.p6.{param}"].shape[:1] + s[f"{src}neck.output.p2.{param}"].shape[1:], generator=gen)
    # AdelaiDet-style FCOSHead of tower.py: towers conv(bias=True), GN, ReLU; share_tower empty
    for msad_tower, original_tower in (("cls_tower", "cls_tower"), ("box_tower", "bbox_tower")):
        for n in (0, 3):
            weight = s[f"{src}head.{msad_tower}.{n}.weight"]
            out[f"{P}_fcos_head.{original_tower}.{n}.weight"] = weight.clone()
            bias = s.get(f"{src}head.{msad_tower}.{n}.bias", torch.zeros(weight.shape[0]))
            out[f"{P}_fcos_head.{original_tower}.{n}.bias"] = bias.clone()
            for param in ("weight", "bias"):
                gn = s[f"{src}head.{msad_tower}.{n + 1}.{param}"]
                out[f"{P}_fcos_head.{original_tower}.{n + 1}.{param}"] = gn.clone()
    out[f"{P}_fcos_head.cls_logits.weight"] = s[f"{src}head.cls_logits.weight"].clone()
    out[f"{P}_fcos_head.cls_logits.bias"] = s[f"{src}head.cls_logits.bias"].clone()
    out[f"{P}_fcos_head.bbox_pred.weight"] = s[f"{src}head.box_pred.weight"].clone()
    out[f"{P}_fcos_head.ctrness.weight"] = s[f"{src}head.centerness.weight"].clone()
    for i, level in enumerate(("p3", "p4", "p5", "p6", "p7")):
        out[f"{P}_fcos_head.scales.{i}.scale"] = s[f"{src}head.scales.{level}"].reshape(1).clone()
    if role == "teacher":
        out["SE.fc.0.weight"] = s["fusion.fc.0.weight"].clone()
        out["SE.fc.2.weight"] = s["fusion.fc.2.weight"].clone()
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    torch.manual_seed(0)
    recipe = _recipe()
    teacher = _randomise(build_model(recipe, role="teacher", num_classes=NUM_CLASSES), seed=1)
    student = _randomise(build_model(recipe, role="student", num_classes=NUM_CLASSES), seed=2)
    t_orig = to_original(teacher.state_dict(), "teacher", seed=3)
    s_orig = {**t_orig, **to_original(student.state_dict(), "student", seed=4)}  # a student file holds its teacher
    root = tmp_path_factory.mktemp("d2")
    torch.save({"model": t_orig, "iteration": 5}, root / "teacher.pth")
    torch.save({"model": s_orig, "iteration": 5}, root / "student.pth")
    annotations = root / "ann.json"
    cats = [{"id": i, "name": n} for i, n in ((3, "c"), (1, "a"), (2, "b"))]
    annotations.write_text(json.dumps({"images": [], "annotations": [], "categories": cats}))
    return {"recipe": recipe, "teacher": teacher, "student": student, "t_orig": t_orig, "s_orig": s_orig,
            "root": root, "annotations": annotations}


def _assert_same_state(converted: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert set(converted) == set(reference)
    for key, value in reference.items():
        if key.endswith("stem.conv.weight"):  # folded and unfolded: equal up to rounding
            torch.testing.assert_close(converted[key], value, rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(converted[key], value), key


def test_mapping_restores_every_tensor(files) -> None:
    converted = convert_detectron2_state(files["t_orig"], role="teacher", width=WIDTH, pixel_std=STD)
    _assert_same_state(converted, files["teacher"].state_dict())
    converted = convert_detectron2_state(files["s_orig"], role="student", width=WIDTH, pixel_std=STD)
    _assert_same_state(converted, files["student"].state_dict())


def test_teacher_converts_with_same_outputs(files) -> None:
    out = convert_detectron2(files["root"] / "teacher.pth", files["root"] / "t.safetensors", recipe=files["recipe"],
                             annotations=files["annotations"])
    ckpt = read_checkpoint(out, role="teacher")
    assert ckpt.label_space == [(1, "a"), (2, "b"), (3, "c")]
    _assert_same_state(ckpt.state, files["teacher"].state_dict())
    model = load_model(ckpt)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want, got = files["teacher"](x), model(x)
    for branch in ("hr", "lr", "fused"):
        for level, ref in want.branch(branch).items():
            for field in ("cls_logits", "box_regression", "centerness"):
                torch.testing.assert_close(getattr(got.branch(branch)[level], field), getattr(ref, field),
                                           rtol=1e-4, atol=1e-5)


def test_student_converts_to_student(files) -> None:
    out = convert_detectron2(files["root"] / "student.pth", files["root"] / "s.safetensors", recipe=files["recipe"],
                             annotations=files["annotations"], role="student")
    ckpt = read_checkpoint(out, role="student")
    model = load_model(ckpt)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        want, got = files["student"](x), model(x)
    for level, ref in want.items():
        torch.testing.assert_close(got[level].cls_logits, ref.cls_logits, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got[level].box_regression, ref.box_regression, rtol=1e-4, atol=1e-5)


def test_fold_matches_detectron2_input() -> None:
    gen = torch.Generator().manual_seed(7)
    weight = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64)
    rgb = torch.rand(1, 3, 8, 8, generator=gen, dtype=torch.float64) * 255
    mean_rgb = torch.tensor((123.675, 116.28, 103.53), dtype=torch.float64).view(1, 3, 1, 1)
    detectron2_input = (rgb - mean_rgb).flip(1)  # BGR minus (103.53, 116.28, 123.675), std 1
    msad_input = (rgb - mean_rgb) / torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(F.conv2d(msad_input, fold_input_normalization(weight, STD), padding=1),
                               F.conv2d(detectron2_input, weight, padding=1))


def test_role_detection_and_wrong_role(files) -> None:
    assert detectron2_role(files["t_orig"]) == "teacher"
    assert detectron2_role(files["s_orig"]) == "student"
    with pytest.raises(CheckpointError, match="not an original MSAD"):
        detectron2_role({"backbone.stem.conv.weight": torch.zeros(1)})
    out = files["root"] / "wrong_role.safetensors"
    with pytest.raises(CheckpointError, match="holds a teacher"):
        convert_detectron2(files["root"] / "teacher.pth", out, recipe=files["recipe"],
                           annotations=files["annotations"], role="student")
    assert not out.exists()


def test_missing_and_unexpected_keys_are_named(files) -> None:
    state = dict(files["t_orig"])
    del state["T_fcos_head.ctrness.weight"]
    state["T_fcos_head.share_tower.0.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\): T_fcos_head\.ctrness\.weight.*share_tower"):
        convert_detectron2_state(state, role="teacher", width=WIDTH)
    path, out = files["root"] / "missing.pth", files["root"] / "missing.safetensors"
    state = dict(files["t_orig"])
    del state["T_backbone.bottom_up.features.3.body.4.bn.2.running_var"]
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match=r"features\.3\.body\.4\.bn\.2\.running_var"):
        convert_detectron2(path, out, recipe=files["recipe"], annotations=files["annotations"])
    assert not out.exists()


def test_class_count_mismatch(files) -> None:
    out = files["root"] / "classes.safetensors"
    with pytest.raises(CheckpointError, match=r"scores 3 classes, but COCO 2017 has 80"):
        convert_detectron2(files["root"] / "teacher.pth", out, recipe=files["recipe"])
    assert not out.exists()


def test_wrong_width_is_refused(files) -> None:
    with pytest.raises(CheckpointError, match=r"trained at width 0.25.*width is 0.5"):
        convert_detectron2(files["root"] / "teacher.pth", files["root"] / "w.safetensors",
                           recipe=_recipe("model.backbone.width=0.5"), annotations=files["annotations"])


def test_tower_bias_must_fit_the_head(files) -> None:
    state = dict(files["t_orig"])
    state["T_fcos_head.cls_tower.0.bias"] = torch.full_like(state["T_fcos_head.cls_tower.0.bias"], 0.5)
    converted = convert_detectron2_state(state, role="teacher", width=WIDTH, tower_bias=True)
    assert torch.equal(converted["detector.head.cls_tower.0.bias"], state["T_fcos_head.cls_tower.0.bias"])
    with pytest.raises(CheckpointError, match="cls_tower.0.bias is nonzero"):
        convert_detectron2_state(state, role="teacher", width=WIDTH, tower_bias=False)


def test_truncated_file_gives_one_clear_error(files) -> None:
    data = (files["root"] / "teacher.pth").read_bytes()
    path = files["root"] / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    out = files["root"] / "existing.safetensors"
    out.write_bytes(b"keep me")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        convert_detectron2(path, out, recipe=files["recipe"], annotations=files["annotations"])
    assert out.read_bytes() == b"keep me"
    with pytest.raises(CheckpointError, match="not found"):
        load_detectron2_checkpoint(files["root"] / "absent.pth")


def test_module_prefix_and_extras_are_ignored(files, tmp_path: Path) -> None:
    path = tmp_path / "ddp.pth"
    torch.save({"model": {"module." + k: v for k, v in list(files["t_orig"].items())[:3]}, "iteration": 9,
                "__author__": "test"}, path)
    state = load_detectron2_checkpoint(path)
    assert list(state) == list(files["t_orig"])[:3]
