"""Weights files, atomic writes, clear errors, and the pickle-free training state."""

import json
import os
import random

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from msad.engine import CheckpointError, ModelEMA, load_training_state, load_weights, save_training_state, save_weights
from msad.engine.checkpoint import atomic_write, atomic_write_text
from msad.engine.training_state import capture_rng_state, restore_rng_state


def test_weights_round_trip_with_shared_views_and_cuda_free_metadata(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    state = {"a": base, "tied": base, "col": base[:, 1], "row": base[1], "empty": torch.zeros(0)}
    path = save_weights(tmp_path / "w.safetensors", state, {"role": "teacher", "width": "0.5"})
    loaded, meta = load_weights(path)
    assert meta["format"] == "msad/1" and meta["role"] == "teacher" and "msad_version" in meta
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_metadata_values_must_be_strings(tmp_path):
    with pytest.raises(TypeError, match="'width' must be a string"):
        save_weights(tmp_path / "w.safetensors", {"a": torch.ones(1)}, {"width": 0.5})


def test_crash_during_replace_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    save_weights(path, {"a": torch.ones(3)}, {"role": "old"})
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_weights(path, {"a": torch.zeros(3)}, {"role": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_weights(path)[1]["role"] == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # no temporary file left


def test_failing_write_callable_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_text(path, "old contents")

    def half_then_fail(tmp):
        tmp.write_text("new but incomp")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    atomic_write(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new"


def test_failure_inside_safetensors_write_keeps_the_old_weights(tmp_path, monkeypatch):
    path = save_weights(tmp_path / "last.safetensors", {"a": torch.ones(3)}, {"role": "old"})
    before = path.read_bytes()

    def broken_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"\x10\x00")
        raise OSError("no space left on device")

    monkeypatch.setattr("msad.engine.checkpoint.save_file", broken_save_file)
    with pytest.raises(OSError, match="no space left"):
        save_weights(path, {"a": torch.zeros(3)}, {"role": "new"})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]


def test_equal_checkpoints_are_byte_identical(tmp_path):
    meta = {f"key{i}": str(i) for i in range(12)} | {"recipe": json.dumps({"é": [1, 2]}, ensure_ascii=False)}
    files = [save_weights(tmp_path / f"w{i}.safetensors", {"b": torch.ones(2), "a": torch.arange(3)}, meta) for i in range(6)]
    assert len({f.read_bytes() for f in files}) == 1
    assert load_weights(files[0])[1] == {"format": "msad/1", "msad_version": load_weights(files[0])[1]["msad_version"]} | meta


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_weights(tmp_path / "nope.safetensors")


def test_truncated_file(tmp_path):
    path = save_weights(tmp_path / "w.safetensors", {"a": torch.randn(100)}, {})
    path.write_bytes(path.read_bytes()[:-17])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_weights(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content", [b"", b"abc", b"\x00" * 64, b"\x05\x00\x00\x00\x00\x00\x00\x00{oops"])
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "w.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_weights(path)


@pytest.mark.parametrize("zipped", [True, False])
def test_pickle_file_is_named_as_such(tmp_path, zipped):
    path = tmp_path / "model.pth"
    torch.save({"model": {"a": torch.ones(2)}}, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(CheckpointError, match=r"looks like a PyTorch pickle.*msad convert"):
        load_weights(path)


def test_safetensors_without_msad_format(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"a": torch.ones(2)}, str(path))
    with pytest.raises(CheckpointError, match="no `format`"):
        load_weights(path)
    save_file({"a": torch.ones(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="format is 'pt'"):
        load_weights(path)


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
