"""What a file is, told by its content, not its name: safetensors, ONNX, a ``torch.export`` archive, a pickle.

msad reads three kinds of files a user may mix up: its weights (safetensors), and the ``.onnx`` and ``.pt2``
files ``msad export`` writes. Each reader asks :func:`sniff` what it was given before it trusts the bytes, so
an ONNX file given where weights are expected is called an ONNX file, not a corrupt safetensors file. Nothing
here parses more than framing (no protobuf library, no unpickling); this module imports nothing of msad.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import BinaryIO

__all__ = ["SAFETENSORS", "ONNX", "PT2", "PICKLE", "sniff", "describe"]

SAFETENSORS = "safetensors"
ONNX = "onnx"
PT2 = "pt2"
PICKLE = "pickle"

#: What each kind is, for messages.
_NAMES = {
    SAFETENSORS: "a safetensors file",
    ONNX: "an ONNX file (from `msad export`?)",
    PT2: "a torch.export program (.pt2, from `msad export`?)",
    PICKLE: "a PyTorch pickle (torch.save)",
}
_MAX_HEADER = 100_000_000
#: ModelProto field number → protobuf wire type (0 varint, 2 length-delimited), from onnx.proto.
_MODEL_PROTO_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}


def sniff(path: str | os.PathLike) -> str | None:
    """The kind of the file at ``path`` (``safetensors``, ``onnx``, ``pt2``, ``pickle``), or ``None`` if none.

    Cheap: reads the first bytes, a zip's directory, or walks an ONNX file's top-level protobuf fields by
    seeking (the graph itself is never read).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(9)
            if _is_safetensors(head, size):
                return SAFETENSORS
            if head.startswith(b"PK\x03\x04"):
                return _zip_kind(path)
            if head.startswith(b"\x80") and len(head) > 1 and 2 <= head[1] <= 5:
                return PICKLE
            handle.seek(0)
            if _is_model_proto(handle, size):
                return ONNX
    except OSError:
        return None
    return None


def describe(kind: str | None) -> str:
    """A phrase for ``kind`` (``"an ONNX file (from `msad export`?)"``…)."""
    return _NAMES.get(kind or "", "not a file msad knows")


def _is_safetensors(head: bytes, size: int) -> bool:
    """An 8-byte little-endian header length, then the JSON header's ``{``, within the file."""
    header_len = int.from_bytes(head[:8], "little")
    return len(head) == 9 and head[8:9] == b"{" and 2 <= header_len <= min(size - 8, _MAX_HEADER)


def _zip_kind(path: Path) -> str | None:
    """``pt2`` for a torch.export archive, ``pickle`` for a torch.save archive, else ``None``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    if any(n == "archive_format" or n.endswith("/archive_format") for n in names):
        return PT2
    if any(n.endswith("data.pkl") for n in names):
        return PICKLE
    return None


def _is_model_proto(handle: BinaryIO, size: int, *, max_fields: int = 10_000) -> bool:
    """Whether the file is a protobuf whose top-level fields are those of ONNX's ``ModelProto``, ending exactly
    at the end of the file, with an IR version and a graph."""
    seen: set[int] = set()
    position = 0
    for _ in range(max_fields):
        if position == size:
            return 1 in seen and 7 in seen
        tag, position = _varint(handle, position)
        if tag is None:
            return False
        number, wire = tag >> 3, tag & 7
        if _MODEL_PROTO_FIELDS.get(number) != wire:
            return False
        seen.add(number)
        value, position = _varint(handle, position)
        if value is None:
            return False
        if wire == 2:
            position += value
            if position > size:
                return False
            handle.seek(position)
    return False


def _varint(handle: BinaryIO, position: int) -> tuple[int | None, int]:
    """A protobuf varint at ``position``: ``(value, next position)``, or ``(None, …)`` when malformed."""
    value, shift = 0, 0
    while shift < 64:
        byte = handle.read(1)
        if not byte:
            return None, position
        position += 1
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value, position
        shift += 7
    return None, position
