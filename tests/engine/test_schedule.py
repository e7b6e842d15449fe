"""The lr curve (hand numbers) and detectron2-style weight-decay groups."""

import pytest
import torch
from torch import nn

from msad.engine import LRSchedule, SolverSettings, build_optimizer, lr_at


def solver(**overrides) -> SolverSettings:
    values = dict(batch_size=8, lr=0.1, momentum=0.9, weight_decay=1e-4, weight_decay_norm=None, weight_decay_bias=None,
                  iters=10, steps=(6, 8), gamma=0.1, warmup_iters=4, warmup_factor=0.2, clip_grad_norm=0.0, amp="off",
                  ema_decay=0.0)
    return SolverSettings(**(values | overrides))


def test_lr_curve_matches_hand_numbers():
    expected = [0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert [lr_at(i, solver()) for i in range(10)] == pytest.approx(expected, rel=1e-12)


def test_lr_without_warmup_and_steps_is_constant():
    s = solver(warmup_iters=0, steps=())
    assert {lr_at(i, s) for i in range(10)} == {0.1}


def test_warmup_longer_than_first_step():
    s = solver(warmup_iters=10, steps=(5,), warmup_factor=0.2)
    assert lr_at(5, s) == pytest.approx(0.1 * (0.2 * 0.5 + 0.5) * 0.1)


def test_schedule_writes_every_group():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    optimizer = build_optimizer(model, solver(weight_decay_norm=0.0))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.02)
    assert LRSchedule(optimizer, solver()).step(6) == pytest.approx(0.01)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01, 0.01])


def decay_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> float:
    return next(g["weight_decay"] for g in optimizer.param_groups if any(p is param for p in g["params"]))


def test_weight_decay_groups_like_detectron2():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.GroupNorm(1, 2), nn.Linear(2, 2), nn.LayerNorm(2))
    conv, gn, fc, ln = model
    opt = build_optimizer(model, solver(weight_decay=1e-4, weight_decay_norm=0.0))
    assert decay_of(opt, conv.weight) == 1e-4 and decay_of(opt, conv.bias) == 1e-4 and decay_of(opt, fc.bias) == 1e-4
    assert decay_of(opt, gn.weight) == 0.0 and decay_of(opt, gn.bias) == 0.0 and decay_of(opt, ln.weight) == 0.0
    assert len(opt.param_groups) == 2 and opt.defaults["momentum"] == 0.9

    opt = build_optimizer(model, solver(weight_decay=1e-4, weight_decay_norm=None, weight_decay_bias=0.5))
    assert decay_of(opt, gn.weight) == 1e-4 and decay_of(opt, gn.bias) == 0.5 and decay_of(opt, conv.bias) == 0.5


def test_optimizer_skips_frozen_and_shared_parameters():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, shared, nn.Linear(2, 1).requires_grad_(False))
    opt = build_optimizer(model, solver())
    assert sum(len(g["params"]) for g in opt.param_groups) == 2


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="steps must be strictly increasing"):
        solver(steps=(8, 6))
    with pytest.raises(ValueError, match="amp"):
        solver(amp="fp8")
    with pytest.raises(ValueError, match="momentum"):  # the recipe's constraints hold for settings made in code
        solver(momentum=1.0)


def test_fused_sgd_on_request_only():
    """fp16 asks for the fused SGD (it takes the GradScaler's inf flag on the device: no host read per step)."""
    model = nn.Linear(2, 1)
    assert not any(g["fused"] for g in build_optimizer(model, solver()).param_groups)  # foreach: numbers as before
    fused = build_optimizer(model, solver(), fused=True)
    assert all(g["fused"] for g in fused.param_groups) and getattr(fused, "_step_supports_amp_scaling", False)
