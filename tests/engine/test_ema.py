"""The EMA follows ``ema = decay·ema + (1 − decay)·model`` on floats and copies integer buffers."""

from __future__ import annotations

import torch
from torch import nn

from msad.engine.ema import ModelEMA


def test_ema_update_is_the_lerp_of_every_float_tensor_and_copies_integer_buffers() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ema = ModelEMA(model, decay=0.9)
    start = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        model[1].running_var.mul_(3.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    now = model.state_dict()
    for name, value in ema.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.9 * start[name] + 0.1 * now[name])
        else:
            assert torch.equal(value, now[name])
    assert not any(p.requires_grad for p in ema.parameters())
