"""``torch.export`` programs (``.pt2``) of a :class:`~msad.export.deploy.DeployModel`, and their backend.

The program has a dynamic batch and a dynamic height and width, each a multiple of the spec's
``size_divisibility``; the :class:`DeploySpec` travels inside the archive as ``extra_files["msad.json"]``.

A ``.pt2`` archive is code, not data (``torch.export.load`` unpickles and evaluates parts of it): it is loaded
only when the caller trusts it (``--trust-pt2``), see :func:`check_archive`. ONNX files and safetensors weights
are data and need no such trust.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor
from torch.export import Dim, ExportedProgram

from msad.errors import UsageError
from msad.export.deploy import DeployModel, DeploySpec, ExportError
from msad.serialization import atomic_write

__all__ = [
    "SPEC_FILE", "TRUST_OPTION", "example_input", "dynamic_shapes", "trace", "save_program", "check_archive",
    "ProgramBackend",
]

#: Name of the spec inside a ``.pt2`` archive.
SPEC_FILE = "msad.json"


def example_input(spec: DeploySpec) -> Tensor:
    """A two-image example batch (used to trace the graph; any allowed size is taken afterwards)."""
    d = spec.size_divisibility
    rows = max(3, -(-spec.coarsest_stride // d) + 1)
    return torch.full((2, 3, rows * d, (rows + 2) * d), 114.0)


def dynamic_shapes(spec: DeploySpec) -> dict[str, dict[int, object]]:
    """Dynamic batch, height and width (multiples of ``spec.size_divisibility``) of the ``images`` input."""
    d = spec.size_divisibility
    top = spec.max_side // d
    return {
        "images": {
            0: Dim("batch", min=1, max=256),
            2: d * Dim("height_blocks", min=1, max=top),
            3: d * Dim("width_blocks", min=1, max=top),
        }
    }


def trace(model: DeployModel, spec: DeploySpec) -> ExportedProgram:
    """``torch.export`` of ``model`` (eval mode) with the dynamic shapes of :func:`dynamic_shapes`.

    Traced size-obliviously: without it the tracer would assume that no pyramid map has a side of one cell
    and refuse, e.g., a 64×96 input whose stride-64 map is 1×2.
    """
    with torch.no_grad(), _size_oblivious():
        return torch.export.export(model.eval(), (example_input(spec),), dynamic_shapes=dynamic_shapes(spec))


def _size_oblivious():
    """torch's ``backed_size_oblivious`` tracing mode (a no-op where this torch lacks it)."""
    try:
        from torch.fx.experimental import _config

        return _config.patch(backed_size_oblivious=True)
    except (ImportError, AttributeError, KeyError):
        return contextlib.nullcontext()


def save_program(program: ExportedProgram, spec: DeploySpec, path: str | Path) -> Path:
    """Write ``program`` as a ``.pt2`` archive at ``path`` with ``spec`` inside; returns the path."""
    path = Path(path)
    if path.suffix != ".pt2":
        raise ExportError(f"{path}: a torch.export archive must end in .pt2")
    # torch.export.save insists on a .pt2 name: the temporary is written under one, inside atomic_write's
    return atomic_write(path, lambda tmp: _save_as_pt2(program, spec, tmp))


def _save_as_pt2(program: ExportedProgram, spec: DeploySpec, tmp: Path) -> None:
    """``torch.export.save`` into ``tmp`` (through a ``.pt2``-named sibling, renamed to ``tmp``)."""
    named = tmp.with_name(tmp.name + ".pt2")
    try:
        torch.export.save(program, str(named), extra_files={SPEC_FILE: spec.to_json()})
        named.replace(tmp)
    finally:
        named.unlink(missing_ok=True)


#: The option that lets ``msad predict`` load a ``.pt2`` archive (see :func:`check_archive`).
TRUST_OPTION = "--trust-pt2"


def check_archive(path: str | Path, *, trust: bool) -> str:
    """Read a ``.pt2`` archive's layout and msad spec as plain zip data, and refuse to go further untrusted.

    ``torch.export.load`` is not a data reader: it unpickles the archive's sample inputs (falling back to a full,
    unrestricted unpickle when the restricted one fails), unpickles any payload marked as pickled, evaluates the
    graph's symbolic shape expressions with sympy (``eval``) and calls whatever ``torch.*`` function the graph
    names. A crafted archive therefore runs any code it holds; only ``trust`` lets it be loaded. This function
    itself only reads the zip directory and one JSON member.

    Returns:
        The spec's JSON text.

    Raises:
        ExportError: the file is not a zip archive (e.g. truncated), or holds no msad spec.
        UsageError: ``trust`` is false.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            specs = [name for name in archive.namelist() if name.endswith(f"/extra/{SPEC_FILE}")]
            text = archive.read(specs[0]).decode("utf-8") if len(specs) == 1 else ""
            if not text:
                raise ExportError(f"{path}: a torch.export archive without msad metadata; export it with `msad export`")
            if not trust:
                raise UsageError(
                    f"{path}: a .pt2 archive is not data: loading it unpickles parts of it and evaluates code-like "
                    f"expressions, so a crafted file runs any code it holds; pass {TRUST_OPTION} only for a file you "
                    f"exported or trust, or run the .onnx file or the .safetensors weights (data only)"
                )
            pickled = _unrestricted_pickles(archive) or _unsafe_graph(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, UnicodeDecodeError, ValueError) as err:
        raise ExportError(f"{path}: truncated or corrupt .pt2 archive ({type(err).__name__}: {err})") from None
    if pickled:
        raise ExportError(f"{path}: refused even with {TRUST_OPTION}: {pickled[0]} (`msad export` never writes that)")
    return text


def _unrestricted_pickles(archive: zipfile.ZipFile) -> list[str]:
    """Members ``torch.export.load`` would unpickle without ``weights_only``: pickled payloads, script or opaque
    objects, legacy ``.pt`` members, and sample inputs that torch's restricted unpickler refuses (torch then
    falls back to a full unpickle)."""
    found = []
    for name in archive.namelist():
        if "/data/sample_inputs/" in name:
            try:
                torch.load(io.BytesIO(archive.read(name)), weights_only=True)
            except Exception:  # noqa: BLE001 - whatever the restricted unpickler refuses
                found.append(name)
        elif name.endswith(".pt"):
            found.append(name)
        elif name.endswith("_config.json") and ("/data/weights/" in name or "/data/constants/" in name):
            found += _pickled_payloads(name, json.loads(archive.read(name)))
    return [f"{name} would be unpickled without restriction" for name in found]


#: What the graph of an msad export may call (``torch.export``'s deserializer resolves any ``torch.*`` name).
_TARGET = re.compile(r"torch\.ops\.aten\.\w+\.\w+|_operator\.(getitem|add|sub|mul|floordiv|truediv|neg)")
#: Names a symbolic shape expression may use (``sympy.sympify`` evaluates the text as Python).
_SYMPY_NAMES = frozenset({
    "Add", "Mul", "Pow", "Max", "Min", "Integer", "Float", "Rational", "Symbol", "True", "False", "integer",
    "positive", "precision", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "FloorDiv", "ModularIndexing",
    "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv", "PowByNatural", "FloatPow",
    "FloatTrueDiv", "IntTrueDiv", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity",
})
_EXPR_TOKEN = re.compile(r"\s+|'[\w.+-]*'|\d+(\.\d+)?(e[+-]?\d+)?|[()\[\],=+*/<>!&|~-]|(?P<name>[A-Za-z_]\w*)")


def _unsafe_graph(archive: zipfile.ZipFile) -> list[str]:
    """What in the archive's graph JSON would run code when deserialized or called: an operator outside ATen
    (and a few arithmetic ones), or a shape expression that is not plain sympy arithmetic."""
    found: list[str] = []
    for name in archive.namelist():
        if "/models/" in name and name.endswith(".json"):
            _check_graph(json.loads(archive.read(name)), found)
    return found


def _check_graph(node: object, found: list[str]) -> None:
    """Walk the graph JSON, collecting what it may not hold (see :func:`_unsafe_graph`)."""
    if isinstance(node, list):
        for item in node:
            _check_graph(item, found)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "nodes" and isinstance(value, list):
                found += [f"the graph calls {n.get('target')!r}" for n in value
                          if isinstance(n, dict) and not _TARGET.fullmatch(str(n.get("target")))]
            if key == "expr_str" and not _plain_expression(value):
                found.append(f"the shape expression {str(value)[:60]!r} is not plain arithmetic")
            _check_graph(value, found)


def _plain_expression(text: object) -> bool:
    """Whether ``text`` is sympy arithmetic over known names (no attribute access, no other names, no calls to
    anything but the sympy constructors in ``_SYMPY_NAMES``)."""
    if not isinstance(text, str):
        return False
    at = 0
    while at < len(text):
        token = _EXPR_TOKEN.match(text, at)
        if token is None or (token["name"] is not None and token["name"] not in _SYMPY_NAMES
                             and not re.fullmatch(r"[a-z]+\d+", token["name"])):
            return False
        at = token.end()
    return True


def _pickled_payloads(name: str, config: object) -> list[str]:
    """The entries of a weights/constants payload config that are not plain tensor bytes."""
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        return [name]
    return [
        f"{name}: {key}" for key, entry in entries.items()
        if not isinstance(entry, dict) or entry.get("use_pickle") is not False
        or not str(entry.get("path_name", "")).startswith(("weight_", "tensor_"))
    ]


@contextlib.contextmanager
def _quiet_torch_export() -> Iterator[None]:
    """Silence torch's export loggers (their warnings print the tracebacks of a bad archive before msad's line)."""
    loggers = [logging.getLogger(name) for name in ("torch.export", "torch._export")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class ProgramBackend:
    """A ``.pt2`` archive from :func:`export_program`, run in PyTorch.

    Args:
        path: the ``.pt2`` file.
        device: where to run it.
        trust: load it although loading a ``.pt2`` archive can run code (see :func:`check_archive`);
            without it the archive is refused.
    """

    def __init__(self, path: str | Path, *, device: torch.device | str = "cpu", trust: bool = False) -> None:
        spec = check_archive(path, trust=trust)
        self.spec = DeploySpec.from_json(spec, source=path)  # checked before torch reads the archive
        try:
            with _quiet_torch_export():
                program = torch.export.load(str(path))
        except Exception as err:  # noqa: BLE001 - torch raises several types for a bad archive
            raise ExportError(f"{path}: not a loadable torch.export archive ({' '.join(str(err).split())[:200]})") from None
        self.spec.check_graph(path, **_graph_outputs(program))
        self.device = torch.device(device)
        self.module = program.module().to(self.device)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> list[Tensor]:
        """The program's flat outputs for a float ``[B, 3, H, W]`` batch."""
        return list(self.module(images.to(self.device, torch.float32)))


def _graph_outputs(program: ExportedProgram) -> dict[str, int | None]:
    """``num_outputs`` and ``num_classes`` (channels of the first output, the class logits) of a program's graph."""
    node = next(n for n in program.graph.nodes if n.op == "output")
    outputs = node.args[0] if isinstance(node.args[0], (tuple, list)) else (node.args[0],)
    value = getattr(outputs[0], "meta", {}).get("val") if outputs else None
    shape = getattr(value, "shape", None)
    channels = shape[1] if shape is not None and len(shape) == 4 else None
    return {"num_outputs": len(outputs), "num_classes": channels if isinstance(channels, int) else None}
