"""Files without pickle: safetensors weights with JSON metadata, and atomic writes.

Neutral helpers used by the engine, the models (pretrained backbones), the converters and the API; this module
imports nothing of msad but :mod:`msad.errors`.

Every write goes to a temporary file in the destination's directory, is fsynced and then moved over the
destination with ``os.replace``, so a crash leaves either the old file or the new one, never half of one.
Reading checks the file before trusting it and fails with one clear :class:`CheckpointError` line.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

import msad
from msad.errors import CheckpointError

__all__ = [
    "FORMAT",
    "CheckpointError",
    "atomic_write",
    "atomic_write_text",
    "save_weights",
    "load_weights",
    "save_tensors",
    "read_tensors",
    "state_mismatch",
]

#: ``format`` metadata of msad weight files.
FORMAT = "msad/1"
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save zip archive, legacy pickle protocol ≥ 2
_MAX_HEADER = 100_000_000


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary file that is fsynced and renamed over ``path``.

    The file gets the permissions of any new file (``0o666`` less the umask), whatever ``write`` created it with
    (safetensors creates ``0o600`` files). If anything fails (including the rename) the temporary file is removed
    and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _umask() -> int:
    """The process umask (read from /proc where possible: setting it to read it is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> Path:
    """Write ``tensors`` as a safetensors file atomically (CPU, contiguous, shared storage de-duplicated).

    Raises:
        TypeError: a value is not a tensor, or a metadata value is not a string.
    """
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise TypeError(f"checkpoint metadata {key!r} must be a string (JSON-encode it), got {type(value).__name__}")
    prepared = _prepare(tensors)

    def write(tmp: Path) -> None:
        save_file(prepared, str(tmp), metadata=dict(metadata))
        _sort_metadata(tmp)

    return atomic_write(path, write)


def save_weights(path: str | os.PathLike, state_dict: Mapping[str, Tensor], metadata: Mapping[str, str]) -> Path:
    """Save model weights with msad metadata (``format`` and ``msad_version`` are added when absent).

    Args:
        path: destination ``.safetensors`` file.
        state_dict: the model's ``state_dict()`` (any device; shared tensors are fine).
        metadata: string values (role, width, recipe JSON, classes JSON…).
    """
    meta = {"format": FORMAT, "msad_version": msad.__version__, **metadata}
    return save_tensors(path, state_dict, meta)


def load_weights(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read an msad weights file: ``(state_dict on the CPU, metadata)``.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, a PyTorch pickle, or lacks msad ``format``.
    """
    return read_tensors(path, expected_format=FORMAT)


def read_tensors(path: str | os.PathLike, *, expected_format: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file whose metadata ``format`` must equal ``expected_format``.

    Raises:
        CheckpointError: see :func:`load_weights`.
    """
    path = Path(path)
    metadata = _check_file(path)
    found = metadata.get("format")
    if found is None:
        raise CheckpointError(f"{path}: metadata has no `format` key; this is not an msad checkpoint")
    if found != expected_format:
        raise CheckpointError(f"{path}: metadata format is {found!r}, expected {expected_format!r}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as reader:
            tensors = {key: reader.get_tensor(key) for key in reader.keys()}
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path}: unreadable safetensors file ({_one_line(err)})") from err
    return tensors, metadata


def _check_file(path: Path) -> dict[str, str]:
    """Validate a safetensors file's framing without loading it; return its metadata."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(9)
        header_len = int.from_bytes(head[:8], "little")
        framed = len(head) == 9 and head[8:9] == b"{" and 2 <= header_len <= min(size - 8, _MAX_HEADER)
        if not framed and head.startswith(_PICKLE_MAGIC):
            raise CheckpointError(
                f"{path} looks like a PyTorch pickle, not safetensors; convert it with `msad convert`"
            )
        if not framed:
            raise CheckpointError(f"{path}: truncated or corrupt safetensors file (bad header, {size} bytes)")
        handle.seek(8)
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{path}: corrupt safetensors header ({_one_line(err)})") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    try:
        data_end = max((int(entry["data_offsets"][1]) for entry in header.values()), default=0)
    except (TypeError, KeyError, IndexError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt safetensors header ({_one_line(err)})") from err
    if 8 + header_len + data_end != size:
        raise CheckpointError(
            f"{path}: truncated or corrupt safetensors file (header says {8 + header_len + data_end} bytes, "
            f"the file has {size})"
        )
    return {str(k): str(v) for k, v in metadata.items()}


def _sort_metadata(path: Path) -> None:
    """Rewrite a fresh safetensors header with its metadata keys sorted, in place and at the same length.

    safetensors writes the metadata from a Rust ``HashMap`` whose order changes from call to call; sorting it
    makes equal checkpoints byte-identical. A header that would not fit its old length is left as it is.
    """
    with path.open("r+b") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        raw = handle.read(header_len)
        header = json.loads(raw)
        if "__metadata__" not in header:
            return
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        new = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(new) <= header_len:
            handle.seek(8)
            handle.write(new + b" " * (header_len - len(new)))


def _prepare(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Detached, contiguous CPU tensors, each owning its storage (safetensors refuses shared storage)."""
    prepared: dict[str, Tensor] = {}
    seen: set[int] = set()
    for key, value in tensors.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"cannot save {key!r}: expected a tensor, got {type(value).__name__}")
        tensor = value.detach().cpu()
        storage = tensor.untyped_storage()
        owns_storage = tensor.is_contiguous() and storage.nbytes() == tensor.numel() * tensor.element_size()
        if not owns_storage or (storage.nbytes() and storage.data_ptr() in seen):
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        if tensor.numel():
            seen.add(tensor.untyped_storage().data_ptr())
        prepared[key] = tensor
    return prepared


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _one_line(err: BaseException) -> str:
    """An exception as one short line."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:200]}" if text else type(err).__name__


def state_mismatch(
    expected: Mapping[str, Tensor], state: Mapping[str, Tensor], *, tolerated: set[str] | frozenset[str] = frozenset()
) -> str | None:
    """How ``state`` fails to fit a module whose ``state_dict()`` is ``expected``, as one line; ``None`` if it fits.

    Args:
        expected: the module's state dict (names and shapes).
        state: the tensors to load.
        tolerated: extra keys of ``state`` that are not an error (e.g. a classifier a feature extractor drops).
    """
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected) - set(tolerated))
    shapes = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    parts = []
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} shape mismatches (e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)})")
    if missing:
        parts.append(f"{len(missing)} missing tensors (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
    return "; ".join(parts) or None

