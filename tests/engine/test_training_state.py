"""The pickle-free training state (exact resume) and the EMA of the weights."""

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from msad.engine import ModelEMA, load_training_state, save_training_state
from msad.engine.training_state import capture_rng_state, restore_rng_state
from msad.errors import CheckpointError
from msad.serialization import atomic_write_text


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, ema: ModelEMA | None = None) -> None:
    for i in range(steps):
        x = torch.randn(8, 3, generator=torch.Generator().manual_seed(i))
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()
        if ema is not None:
            ema.update(model)


@pytest.mark.parametrize("optimizer_cls", [torch.optim.SGD, torch.optim.AdamW])
def test_training_state_round_trip_is_exact(tmp_path, optimizer_cls):
    kwargs = {"momentum": 0.9} if optimizer_cls is torch.optim.SGD else {}
    model = make_model()
    optimizer = optimizer_cls(model.parameters(), lr=0.1, **kwargs)
    ema = ModelEMA(model, 0.5)
    train_steps(model, optimizer, 3, ema)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    rng = capture_rng_state()
    expected_draws = (random.random(), np.random.rand(), torch.rand(3))
    save_training_state(tmp_path, model=model, optimizer=optimizer, ema=ema, iteration=3, rng=rng,
                        extra={"best": 1.5, "checkpoints": ["model_0000003.safetensors"]})
    document = json.loads((tmp_path / "state.json").read_text())
    assert document["tensors"] == "state-0000003.safetensors" and document["iteration"] == 3

    fresh = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    fresh_opt = optimizer_cls(fresh.parameters(), lr=0.7, **kwargs)
    fresh_ema = ModelEMA(fresh, 0.5)
    state = load_training_state(tmp_path, model=fresh, optimizer=fresh_opt, ema=fresh_ema)
    assert state.iteration == 3 and state.extra["best"] == 1.5
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    for a, b in zip(ema.state_dict().values(), fresh_ema.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert fresh_opt.param_groups[0]["lr"] == 0.1
    for p, q in zip(model.parameters(), fresh.parameters(), strict=True):
        for name, value in optimizer.state[p].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(fresh_opt.state[q][name])), name
    restore_rng_state(state.rng[0])
    assert (random.random(), np.random.rand()) == expected_draws[:2]
    assert torch.equal(torch.rand(3), expected_draws[2])

    # both continue identically
    train_steps(model, optimizer, 2)
    train_steps(fresh, fresh_opt, 2)
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)


def test_new_state_replaces_old_tensor_file_only_after_json(tmp_path, monkeypatch):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_steps(model, optimizer, 1)
    save_training_state(tmp_path, model=model, optimizer=optimizer, ema=None, iteration=1, rng=capture_rng_state(), extra={})
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    train_steps(model, optimizer, 1)

    def crash(path, text):
        raise OSError("killed while writing state.json")

    monkeypatch.setattr("msad.engine.training_state.atomic_write_text", crash)
    with pytest.raises(OSError):
        save_training_state(tmp_path, model=model, optimizer=optimizer, ema=None, iteration=2, rng=capture_rng_state(), extra={})
    monkeypatch.undo()
    fresh = make_model()
    state = load_training_state(tmp_path, model=fresh, optimizer=torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9))
    assert state.iteration == 1
    assert all(torch.equal(saved[k], v) for k, v in fresh.state_dict().items())
    save_training_state(tmp_path, model=model, optimizer=optimizer, ema=None, iteration=2, rng=capture_rng_state(), extra={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state-0000002.safetensors", "state.json"]


def test_state_that_does_not_fit(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    save_training_state(tmp_path, model=model, optimizer=optimizer, ema=None, iteration=1, rng=capture_rng_state(), extra={})
    other = nn.Linear(3, 1)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_training_state(tmp_path, model=other, optimizer=torch.optim.SGD(other.parameters(), lr=0.1))
    with pytest.raises(CheckpointError, match="no training state"):
        load_training_state(tmp_path / "empty", model=model, optimizer=optimizer)
    atomic_write_text(tmp_path / "state.json", "{not json")
    with pytest.raises(CheckpointError, match="unreadable training state"):
        load_training_state(tmp_path, model=model, optimizer=optimizer)


def test_ema_update_math():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = ModelEMA(model, decay=0.75)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)
    assert ema.module.weight.item() == pytest.approx(0.75 * 1 + 0.25 * 3)
    assert not ema.module.weight.requires_grad and not ema.train().module.training
