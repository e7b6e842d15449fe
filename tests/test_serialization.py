"""Weights files without pickle: round trips, atomic writes that keep the old file, one-line errors."""

import errno
import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from msad.errors import CheckpointError, MsadError
from msad.serialization import (
    atomic_write,
    atomic_write_text,
    load_weights,
    save_weights,
    state_mismatch,
    tensors_digest,
)


def test_checkpoint_error_is_a_user_error():
    assert issubclass(CheckpointError, MsadError) and not issubclass(CheckpointError, ValueError)


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

    monkeypatch.setattr("msad.serialization.save_file", broken_save_file)
    with pytest.raises(OSError, match="no space left"):
        save_weights(path, {"a": torch.zeros(3)}, {"role": "new"})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]


def test_equal_checkpoints_are_byte_identical(tmp_path):
    meta = {f"key{i}": str(i) for i in range(12)} | {"recipe": json.dumps({"é": [1, 2]}, ensure_ascii=False)}
    files = [save_weights(tmp_path / f"w{i}.safetensors", {"b": torch.ones(2), "a": torch.arange(3)}, meta) for i in range(6)]
    assert len({f.read_bytes() for f in files}) == 1
    loaded = load_weights(files[0])[1]
    assert loaded == {"format": "msad/1", "msad_version": loaded["msad_version"], "tensors_sha256": loaded["tensors_sha256"]} | meta


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


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    """safetensors creates its files 0600; weights must get the mode of any other file of the run."""
    old = os.umask(umask)
    try:
        weights = save_weights(tmp_path / "w.safetensors", {"w": torch.zeros(2)}, {"role": "baseline"})
        text = atomic_write_text(tmp_path / "m.json", "{}")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == expected
    assert stat.S_IMODE(weights.stat().st_mode) == expected
    assert stat.S_IMODE(text.stat().st_mode) == expected


# ---------------------------------------------------------------- #23: weights sanity, formats by content, ENOSPC

#: The smallest ONNX ModelProto: ir_version 9, producer "pytorch", an empty graph.
ONNX_BYTES = b"\x08\x09" + b"\x12\x07pytorch" + b"\x3a\x02\x0a\x00"


def test_flipped_bytes_in_tensor_data_fail_the_integrity_check(tmp_path):
    path = save_weights(tmp_path / "w.safetensors", {"a": torch.arange(64.0), "b": torch.ones(3)}, {"role": "student"})
    data = bytearray(path.read_bytes())
    data[-40] ^= 0x01  # one bit of a value: still a well-formed file
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"w.safetensors fails its integrity check") as info:
        load_weights(path)
    assert "\n" not in str(info.value)


def test_files_without_a_digest_stay_loadable(tmp_path):
    path = tmp_path / "old.safetensors"
    save_file({"a": torch.arange(4.0)}, str(path), metadata={"format": "msad/1", "role": "student"})  # msad < #23
    tensors, meta = load_weights(path)
    assert torch.equal(tensors["a"], torch.arange(4.0)) and "tensors_sha256" not in meta


def test_digest_covers_names_dtypes_and_shapes():
    base = {"a": torch.arange(6.0).reshape(2, 3)}
    digest = tensors_digest(base)
    assert digest == tensors_digest({"a": torch.arange(6.0).reshape(2, 3).clone()})
    for other in ({"b": base["a"]}, {"a": base["a"].reshape(3, 2)}, {"a": base["a"].view(torch.int32).reshape(2, 3)}):
        assert tensors_digest(other) != digest


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, bad):
    state = {"head.cls.weight": torch.ones(4), "head.box.weight": torch.tensor([1.0, bad]), "n": torch.tensor(3)}
    path = save_weights(tmp_path / "w.safetensors", state, {})
    with pytest.raises(CheckpointError, match=r"tensor 'head.box.weight' holds NaN or infinite values"):
        load_weights(path)


def test_large_finite_weights_whose_sum_overflows_load(tmp_path):
    path = save_weights(tmp_path / "w.safetensors", {"big": torch.full((8,), 3e38)}, {})
    assert torch.equal(load_weights(path)[0]["big"], torch.full((8,), 3e38))


def test_int_weights_where_floats_are_expected_are_named():
    expected = {"conv.weight": torch.zeros(2, 2), "bn.num_batches_tracked": torch.tensor(0)}
    state = {"conv.weight": torch.zeros(2, 2, dtype=torch.int32), "bn.num_batches_tracked": torch.tensor(5)}
    assert state_mismatch(expected, state) == "1 tensors of the wrong kind of number (e.g. conv.weight: int32 where float32 is expected)"
    assert state_mismatch(expected, {**state, "conv.weight": torch.zeros(2, 2, dtype=torch.float16)}) is None


def test_onnx_and_pt2_files_are_named_as_such(tmp_path):
    onnx_file = tmp_path / "model.safetensors"  # the name does not decide: the content does
    onnx_file.write_bytes(ONNX_BYTES)
    with pytest.raises(CheckpointError, match=r"this is an ONNX file .*not msad weights \(.safetensors\)"):
        load_weights(onnx_file)

    class Double(torch.nn.Module):
        def forward(self, x):
            return x * 2

    pt2 = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(Double(), (torch.ones(2),)), str(pt2))
    with pytest.raises(CheckpointError, match=r"this is a torch.export program \(.pt2"):
        load_weights(pt2)


def test_enospc_inside_safetensors_is_an_os_error_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = save_weights(tmp_path / "last.safetensors", {"a": torch.ones(3)}, {"role": "old"})

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x10")
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')

    monkeypatch.setattr("msad.serialization.save_file", full)
    with pytest.raises(OSError) as info:
        save_weights(path, {"a": torch.zeros(3)}, {"role": "new"})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]
