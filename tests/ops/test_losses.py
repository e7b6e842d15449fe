"""Focal, GIoU and the FCOS criterion against hand-computed values."""

import math

import pytest
import torch

from msad.ops.losses import FCOSCriterion, giou_loss_ltrb, sigmoid_focal_loss
from msad.structures import LevelOutputs, Target

LN2 = math.log(2.0)


def test_giou_identical_is_zero():
    t = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 1.0, 2.0, 7.0]])
    assert giou_loss_ltrb(t, t).item() == pytest.approx(0.0, abs=1e-6)


def test_giou_nested_hand_computed():
    # pred (1,1,1,1) area 4, target (2,2,2,2) area 16: inter 4, union 16, iou 5/17, enclosing 16 → 12/17.
    loss = giou_loss_ltrb(torch.tensor([[1.0, 1, 1, 1]]), torch.tensor([[2.0, 2, 2, 2]]))
    assert loss.item() == pytest.approx(12 / 17, rel=1e-6)


def test_giou_disjoint_enclosure_and_weight():
    # pred (1,1,1,1), target (0,2,2,0): w_int = 0+1, h_int = 1+0 → inter 1; areas 4, 4 → union 7;
    # iou = 2/8; g_w = 1+2 = 3, g_h = 2+1 = 3 → enclosing 9; giou = 1/4 - 2/9 = 1/36 → loss 35/36.
    pred = torch.tensor([[1.0, 1, 1, 1], [1.0, 1, 1, 1]])
    target = torch.tensor([[0.0, 2, 2, 0], [2.0, 2, 2, 2]])
    loss = giou_loss_ltrb(pred, target, torch.tensor([2.0, 0.5]))
    assert loss.item() == pytest.approx(2 * 35 / 36 + 0.5 * 12 / 17, rel=1e-6)


def test_focal_loss_literal_formula():
    logits = [-2.0, 0.5, 3.0, 0.0]
    targets = [0.0, 1.0, 1.0, 0.0]
    expected = 0.0
    for x, t in zip(logits, targets, strict=True):
        p = 1 / (1 + math.exp(-x))
        if t == 1:
            expected += -0.25 * (1 - p) ** 2 * math.log(p)
        else:
            expected += -0.75 * p**2 * math.log(1 - p)
    got = sigmoid_focal_loss(torch.tensor(logits), torch.tensor(targets))
    assert got.item() == pytest.approx(expected, rel=1e-6)


# Criterion fixture: one level p3 (stride 8), 8×8 map (64×64 image), 2 classes, all logits 0.
# Box A (0,0,32,32) → 4 positives (x, y ∈ {12, 20}), ltrb permutations of (12,12,20,20), centerness 0.6.
# Box B (32,32,64,64) → region (36,36,60,60) → x, y ∈ {44, 52}: 4 more positives.
# With logit 0: p = .5, CE = ln2, (1-p_t)^2 = .25 → positive element .25·.25·ln2, negative .75·.25·ln2.
POS_E = 0.25 * 0.25 * LN2
NEG_E = 0.75 * 0.25 * LN2


def _outputs(batch=1, box_value=1.0, dtype=torch.float32, requires_grad=True):
    def t(c, v):
        return torch.full((batch, c, 8, 8), v, dtype=dtype, requires_grad=requires_grad)

    return {"p3": LevelOutputs(cls_logits=t(2, 0.0), box_regression=t(4, box_value), centerness=t(1, 0.0))}


def _target(*boxes):
    if not boxes:
        return Target(torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64))
    return Target(torch.tensor(boxes, dtype=torch.float32), torch.tensor([1] * len(boxes)))


def test_criterion_hand_computed_one_box():
    crit = FCOSCriterion(num_classes=2)
    losses = crit(_outputs(), [_target([0, 0, 32, 32])], {"p3": 8})
    assert set(losses) == {"loss_cls", "loss_box", "loss_ctr"}
    # 128 class elements, 4 positive.
    assert losses["loss_cls"].item() == pytest.approx((4 * POS_E + 124 * NEG_E) / 4, rel=1e-5)
    # pred (1,1,1,1) vs target (1.5,1.5,2.5,2.5) (stride units): inter 4, union 16 → 12/17 each,
    # all weights 0.6 → weighted mean 12/17.
    assert losses["loss_box"].item() == pytest.approx(12 / 17, rel=1e-5)
    # BCE of logit 0 is ln2 whatever the target.
    assert losses["loss_ctr"].item() == pytest.approx(LN2, rel=1e-5)


def test_criterion_normalises_by_num_positives():
    crit = FCOSCriterion(num_classes=2)
    two = crit(_outputs(), [_target([0, 0, 32, 32], [32, 32, 64, 64])], {"p3": 8})
    assert two["loss_cls"].item() == pytest.approx((8 * POS_E + 120 * NEG_E) / 8, rel=1e-5)
    # Batch of two: a positive image and an empty one → 4 positives over 256 elements.
    batch = crit(_outputs(batch=2), [_target([0, 0, 32, 32]), _target()], {"p3": 8})
    assert batch["loss_cls"].item() == pytest.approx((4 * POS_E + 252 * NEG_E) / 4, rel=1e-5)


def test_criterion_perfect_regression_zero_box_loss():
    out = _outputs(box_value=0.0)
    # Set the regression at the 4 positives of box A to their exact targets (stride units).
    reg = torch.zeros(1, 4, 8, 8)
    for i, j in [(1, 1), (1, 2), (2, 1), (2, 2)]:
        x, y = 8 * j + 4, 8 * i + 4
        reg[0, :, i, j] = torch.tensor([x, y, 32 - x, 32 - y]) / 8
    out["p3"].box_regression = reg.requires_grad_()
    losses = FCOSCriterion(num_classes=2)(out, [_target([0, 0, 32, 32])], {"p3": 8})
    assert losses["loss_box"].item() == pytest.approx(0.0, abs=1e-6)


def test_criterion_no_positives_finite_and_connected():
    out = _outputs()
    losses = FCOSCriterion(num_classes=2)(out, [_target()], {"p3": 8})
    assert losses["loss_cls"].item() == pytest.approx(128 * NEG_E, rel=1e-5)  # num_pos clamped to 1
    for name in ("loss_box", "loss_ctr"):
        assert losses[name].item() == 0.0 and losses[name].grad_fn is not None
    sum(losses.values()).backward()
    assert out["p3"].box_regression.grad is not None and out["p3"].centerness.grad is not None
    assert (out["p3"].box_regression.grad == 0).all()


def test_criterion_bf16_autocast_float32_losses():
    out = _outputs(dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = FCOSCriterion(num_classes=2)(out, [_target([0, 0, 32, 32])], {"p3": 8})
    for value in losses.values():
        assert value.dtype == torch.float32 and torch.isfinite(value)
    assert losses["loss_box"].item() == pytest.approx(12 / 17, rel=1e-4)
    sum(losses.values()).backward()
    assert out["p3"].cls_logits.grad.dtype == torch.bfloat16


def test_criterion_level_validation():
    with pytest.raises(ValueError, match="classes"):
        FCOSCriterion(num_classes=3)(_outputs(), [_target()], {"p3": 8})
    with pytest.raises(ValueError, match="targets"):
        FCOSCriterion(num_classes=2)(_outputs(), [_target(), _target()], {"p3": 8})
    with pytest.raises(ValueError, match="p2"):
        FCOSCriterion(num_classes=2, levels=["p2"])


def _reference_losses(crit: FCOSCriterion, outputs, targets, strides) -> dict[str, torch.Tensor]:
    """The criterion as written before it avoided host syncs: positives picked by ``nonzero()`` and indexed."""
    from msad.ops.boxes import centerness_target
    from msad.ops.points import points_for_levels
    from msad.ops.targets import assign_targets_batch

    levels = list(outputs)
    pts = points_for_levels({lvl: tuple(outputs[lvl].cls_logits.shape[-2:]) for lvl in levels}, strides)
    labels, ltrb = assign_targets_batch(pts.points, pts.strides, pts.ranges, targets, num_classes=crit.num_classes)
    reg = (ltrb / pts.strides[None, :, None]).reshape(-1, 4)

    b = outputs[levels[0]].cls_logits.shape[0]

    def per_image(name: str, c: int) -> torch.Tensor:  # [B·N, c], points of all levels per image
        return torch.cat([getattr(outputs[lvl], name).permute(0, 2, 3, 1).reshape(b, -1, c) for lvl in levels], 1).reshape(-1, c)

    cls, box, ctr = per_image("cls_logits", crit.num_classes), per_image("box_regression", 4), per_image("centerness", 1).reshape(-1)
    labels = labels.reshape(-1)
    pos = (labels != crit.num_classes).nonzero().squeeze(1)
    target = torch.zeros_like(cls)
    target[pos, labels[pos]] = 1.0
    num_pos = max(float(len(pos)), 1.0)
    ctr_t = centerness_target(reg[pos])
    return {
        "loss_cls": sigmoid_focal_loss(cls, target) / num_pos,
        "loss_box": giou_loss_ltrb(box[pos], reg[pos], ctr_t) / ctr_t.sum().clamp(min=1e-6),
        "loss_ctr": torch.nn.functional.binary_cross_entropy_with_logits(ctr[pos], ctr_t, reduction="sum") / num_pos,
    }


def test_criterion_equals_the_indexed_reference_and_reuses_assigned_targets():
    g = torch.Generator().manual_seed(0)
    outputs = {
        lvl: LevelOutputs(torch.randn(2, 3, n, n + 1, generator=g), torch.rand(2, 4, n, n + 1, generator=g) * 4,
                          torch.randn(2, 1, n, n + 1, generator=g))
        for lvl, n in (("p3", 16), ("p4", 8))
    }
    strides = {"p3": 8, "p4": 16}
    targets = [Target(torch.tensor([[4.0, 6.0, 60.0, 50.0], [70.0, 20.0, 130.0, 120.0]]), torch.tensor([0, 2])),
               Target(torch.tensor([[10.0, 10.0, 40.0, 30.0]]), torch.tensor([1]))]
    crit = FCOSCriterion(num_classes=3)
    want = _reference_losses(crit, outputs, targets, strides)
    got = crit(outputs, targets, strides)
    assigned = crit.assign(outputs, targets, strides)
    again = crit(outputs, [], {}, assigned=assigned)  # targets and strides are not read again
    assert int(assigned.positive.sum()) > 4
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6)
        assert torch.equal(again[name], got[name])
    smaller = {lvl: LevelOutputs(*(t[..., :-1] for t in (o.cls_logits, o.box_regression, o.centerness))) for lvl, o in outputs.items()}
    with pytest.raises(ValueError, match="targets were assigned for maps"):
        crit(smaller, targets, strides, assigned=assigned)
