"""Distillation losses: the paper's numbers and hand-computed alternatives."""

import math

import pytest
import torch

from msad.distill.losses import build_cwd, build_msad_l1, build_mse


def test_msad_l1_is_point_six_mean_l1_per_level_summed():
    s = {"p3": torch.zeros(1, 2, 2, 2), "p4": torch.zeros(1, 2, 1, 1)}
    t = {"p3": torch.full((1, 2, 2, 2), 1.0), "p4": torch.full((1, 2, 1, 1), -2.0)}
    loss = build_msad_l1()(s, t)
    # α·T²·mean|S/T − F/T| = 0.2·9·(1/3) = 0.6 for p3, 0.2·9·(2/3) = 1.2 for p4
    assert loss.item() == pytest.approx(1.8)


def test_msad_l1_gradient_reaches_student_only():
    s = {"p3": torch.zeros(1, 1, 2, 2, requires_grad=True)}
    t = {"p3": torch.ones(1, 1, 2, 2, requires_grad=True)}
    build_msad_l1()(s, t).backward()
    torch.testing.assert_close(s["p3"].grad, torch.full((1, 1, 2, 2), -0.6 / 4))
    assert t["p3"].grad is None


def test_mse_and_mismatch_errors():
    s = {"p3": torch.zeros(1, 1, 1, 2)}
    t = {"p3": torch.tensor([[[[1.0, 3.0]]]])}
    assert build_mse(weight=2.0)(s, t).item() == pytest.approx(2.0 * 5.0)
    with pytest.raises(ValueError, match="levels differ"):
        build_mse()(s, {"p4": t["p3"]})
    with pytest.raises(ValueError, match="p3"):
        build_mse()(s, {"p3": torch.zeros(1, 1, 2, 2)})


def test_cwd_hand_computed():
    # one channel, two locations: teacher logits (0, ln 3) → p = (1/4, 3/4); student uniform (1/2, 1/2)
    s = {"p3": torch.zeros(1, 1, 1, 2)}
    t = {"p3": torch.tensor([[[[0.0, math.log(3.0)]]]])}
    loss = build_cwd(weight=1.0, temperature=1.0)(s, t)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    same = build_cwd(temperature=2.0)(t, t)
    assert same.item() == pytest.approx(0.0, abs=1e-6)
