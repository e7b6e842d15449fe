"""Files without pickle: safetensors weights with JSON metadata, and atomic writes.

Neutral helpers used by the engine, the models (pretrained backbones), the converters and the API; this module
imports nothing of msad but :mod:`msad.errors`.

Every write goes to a temporary file in the destination's directory, is fsynced and then moved over the
destination with ``os.replace``, so a crash leaves either the old file or the new one, never half of one.
Reading checks the file before trusting it and fails with one clear :class:`CheckpointError` line.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

import msad
from msad import file_formats
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
    "read_metadata",
    "tensors_digest",
    "DIGEST_KEY",
]

#: ``format`` metadata of msad weight files.
FORMAT = "msad/1"
#: Metadata key of the integrity digest msad records in its weight files (:func:`tensors_digest`).
DIGEST_KEY = "tensors_sha256"


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
        OSError: the write failed (a full disk is ``errno.ENOSPC``, also when safetensors reports it).
    """
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise TypeError(f"checkpoint metadata {key!r} must be a string (JSON-encode it), got {type(value).__name__}")
    prepared = _prepare(tensors)

    def write(tmp: Path) -> None:
        try:
            save_file(prepared, str(tmp), metadata=dict(metadata))
        except Exception as err:  # noqa: BLE001 - safetensors wraps the operating system's error in its own type
            raise _os_error(err, path) from err
        _sort_metadata(tmp)

    return atomic_write(path, write)


def _os_error(err: Exception, path: str | os.PathLike) -> Exception:
    """The ``OSError`` a safetensors write error wraps (``IoError(Os { code: 28, … })``), else ``err`` itself."""
    if isinstance(err, OSError):
        return err
    match = re.search(r"\bcode: (\d+)", str(err))
    if match is not None:
        code = int(match.group(1))
    elif "No space left" in str(err):
        code = errno.ENOSPC
    else:
        return err
    return OSError(code, os.strerror(code), str(path))


def save_weights(path: str | os.PathLike, state_dict: Mapping[str, Tensor], metadata: Mapping[str, str]) -> Path:
    """Save model weights with msad metadata (``format``, ``msad_version`` and the integrity digest are added).

    Args:
        path: destination ``.safetensors`` file.
        state_dict: the model's ``state_dict()`` (any device; shared tensors are fine).
        metadata: string values (role, width, recipe JSON, classes JSON…).
    """
    prepared = _prepare(state_dict)
    meta = {"format": FORMAT, "msad_version": msad.__version__, **metadata, DIGEST_KEY: tensors_digest(prepared)}
    return save_tensors(path, prepared, meta)


def tensors_digest(tensors: Mapping[str, Tensor]) -> str:
    """SHA-256 (hex) over every tensor's name, dtype, shape and bytes, in name order: what msad weight files record
    under :data:`DIGEST_KEY` and :func:`load_weights` verifies (safetensors itself has no checksum)."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key].detach().cpu().contiguous()
        digest.update(json.dumps([key, str(tensor.dtype), list(tensor.shape)]).encode("utf-8") + b"\0")
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def load_weights(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read an msad weights file: ``(state_dict on the CPU, metadata)``, its tensors checked.

    A file that records an integrity digest (:data:`DIGEST_KEY`, written by :func:`save_weights`) must match it;
    older files, without one, load as they are. Floating-point tensors must be finite.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, another format (ONNX, torch.export, a PyTorch
            pickle), lacks msad ``format``, fails its integrity check, or holds NaN or infinite values.
    """
    path = Path(path)
    tensors, metadata = read_tensors(path, expected_format=FORMAT)
    recorded = metadata.get(DIGEST_KEY)
    if recorded is not None and tensors_digest(tensors) != recorded:
        raise CheckpointError(
            f"{path} fails its integrity check: its tensor data differs from the checksum recorded when it was saved "
            "(the file is damaged); use another copy"
        )
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not _finite(tensor):
            raise CheckpointError(
                f"{path}: tensor {key!r} holds NaN or infinite values; these weights cannot be used "
                "(from a diverged run? use an earlier checkpoint)"
            )
    return tensors, metadata


def _finite(tensor: Tensor) -> bool:
    """Whether every value is finite; a finite sum (one cheap pass) proves it, an overflowing one asks value by value."""
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


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


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a safetensors file, its framing checked, without reading its tensors.

    Raises:
        CheckpointError: see :func:`load_weights`.
    """
    return _check_file(Path(path))


def _check_file(path: Path) -> dict[str, str]:
    """Validate a safetensors file's framing without loading it; return its metadata."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    kind = file_formats.sniff(path)
    if kind == file_formats.PICKLE:
        raise CheckpointError(f"{path} looks like a PyTorch pickle, not safetensors; convert it with `msad convert`")
    if kind in (file_formats.ONNX, file_formats.PT2):
        raise CheckpointError(
            f"{path}: this is {file_formats.describe(kind)}, not msad weights (.safetensors); `msad predict "
            "--weights` runs it; `msad eval`, `compare`, `export` and `--runtime torch` take the .safetensors weights "
            "it was exported from"
        )
    if kind != file_formats.SAFETENSORS:
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file (bad header, {size} bytes)")
    with path.open("rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
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
    dtypes = [k for k in expected if k in state and state[k].is_floating_point() != expected[k].is_floating_point()]
    parts = []
    if dtypes:
        k = dtypes[0]
        parts.append(
            f"{len(dtypes)} tensors of the wrong kind of number (e.g. {k}: {str(state[k].dtype).removeprefix('torch.')} "
            f"where {str(expected[k].dtype).removeprefix('torch.')} is expected)"
        )
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} shape mismatches (e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)})")
    if missing:
        parts.append(f"{len(missing)} missing tensors (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
    return "; ".join(parts) or None

