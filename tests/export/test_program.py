"""``.pt2`` archives are not data: nothing in one runs unless the user trusts it, and a bad one is one line."""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from msad.cli.main import main
from msad.errors import UsageError
from msad.export import DeploySpec, ExportedDetector, ExportError
from msad.export.program import SPEC_FILE, ProgramBackend, check_archive, save_program


class _Payload:
    """Unpickling it creates the marker file (what an attacker's ``os.system`` would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Tiny(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``torch.export`` archive carrying an (empty) msad spec, as a ``.pt2`` file."""
    path = tmp_path_factory.mktemp("pt2") / "model.pt2"
    batch = torch.export.Dim("batch", min=2, max=8)  # a dynamic size gives the graph symbolic shape expressions
    program = torch.export.export(_Tiny(), (torch.zeros(2, 3),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path), extra_files={SPEC_FILE: "{}"})
    return path


def _with_payload(archive: Path, out: Path, marker: Path) -> Path:
    """``archive`` with its pickled sample inputs replaced by a payload that torch's restricted unpickler refuses
    (``torch.export.load`` then falls back to a full unpickle, which runs it)."""
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if "/data/sample_inputs/" in info.filename:
                data = pickle.dumps(_Payload(marker), protocol=2)
            dst.writestr(info, data)
    return out


def test_a_payload_archive_runs_nothing(archive: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    evil = _with_payload(archive, tmp_path / "evil.pt2", marker)
    with pytest.raises(UsageError, match="not data.*--trust-pt2"):
        ExportedDetector(evil)
    with pytest.raises(ExportError, match="refused even with --trust-pt2: .*sample_inputs"):
        ProgramBackend(evil, trust=True)  # trusted, it still never falls back to the unrestricted unpickle
    assert not marker.exists()


def _with_graph(archive: Path, out: Path, edit) -> Path:
    """``archive`` with ``edit(graph JSON)`` applied to its graph."""
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/models/model.json"):
                graph = json.loads(data)
                edit(graph)
                data = json.dumps(graph).encode()
            dst.writestr(info, data)
    return out


def _first(tree: object, key: str) -> dict:
    """The first dict in ``tree`` that has ``key``."""
    stack = [tree]
    while stack:
        item = stack.pop(0)
        if isinstance(item, dict):
            if key in item:
                return item
            stack += item.values()
        elif isinstance(item, list):
            stack += item
    raise AssertionError(f"no {key!r} in the graph")


def test_a_trusted_archive_still_never_evaluates_code_in_its_graph(archive: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    payload = f"__import__('os').system('touch {marker}')"
    expression = _with_graph(archive, tmp_path / "expr.pt2", lambda g: _first(g, "expr_str").update(expr_str=payload))
    with pytest.raises(ExportError, match="refused even with --trust-pt2: the shape expression .* is not plain"):
        ProgramBackend(expression, trust=True)  # torch would hand the text to sympy.sympify, i.e. eval
    target = _with_graph(archive, tmp_path / "target.pt2", lambda g: _first(g, "target").update(target="torch.os.system"))
    with pytest.raises(ExportError, match="the graph calls 'torch.os.system'"):
        ProgramBackend(target, trust=True)
    assert not marker.exists()
    assert check_archive(archive, trust=True) == "{}"  # the untouched archive passes


def test_cli_predict_refuses_a_pt2_archive_in_one_line(archive: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "PWNED"
    evil = _with_payload(archive, tmp_path / "evil.pt2", marker)
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    code, _, err = _msad(capsys, "predict", tmp_path / "a.png", "-w", evil, "-o", tmp_path / "out", "--device", "cpu")
    assert code == 2 and not marker.exists() and not (tmp_path / "out").exists()
    assert _lines(err) == [f"msad: error: {evil}: a .pt2 archive is not data: loading it unpickles parts of it "
                           "and evaluates code-like expressions, so a crafted file runs any code it holds; pass "
                           "--trust-pt2 only for a file you exported or trust, or run the .onnx file or the "
                           ".safetensors weights (data only)"]
    assert "RISK" in _msad(capsys, "predict", "--help")[1]


def test_a_truncated_archive_is_one_line_without_torchs_traceback(
    archive: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the tiny graph carries no real spec; msad checks the spec before torch reads the archive
    monkeypatch.setattr(DeploySpec, "from_json", classmethod(lambda cls, text, source=None: SimpleNamespace()))
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    cut = tmp_path / "cut.pt2"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    corrupt = tmp_path / "corrupt.pt2"  # a sound zip that lacks a member: torch itself fails on it, and logs why
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(corrupt, "w") as dst:
        for info in src.infolist():
            if "/data/sample_inputs/" not in info.filename:
                dst.writestr(info, src.read(info.filename))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    torch_logger = logging.getLogger("torch.export")  # torch logs the failure's traceback here, before msad's line
    torch_logger.addHandler(handler)
    try:
        for path, words in ((cut, "truncated or corrupt .pt2 archive"), (corrupt, "not a loadable torch.export archive")):
            code, _, err = _msad(capsys, "predict", tmp_path / "a.png", "-w", path, "-o", tmp_path / "out", "--trust-pt2")
            lines = _lines(err)
            assert code == 1 and len(lines) == 1 and words in lines[0], err
    finally:
        torch_logger.removeHandler(handler)
    assert not records, [r.getMessage() for r in records]


def test_an_archive_without_msad_metadata_is_refused_before_loading(tmp_path: Path) -> None:
    path = tmp_path / "other.pt2"
    torch.export.save(torch.export.export(_Tiny(), (torch.zeros(1, 3),)), str(path))
    with pytest.raises(ExportError, match="without msad metadata"):
        ProgramBackend(path, trust=True)


def _msad(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """``msad …`` → ``(exit code, stdout, stderr)``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return (0 if done.value.code is None else done.value.code), out, err


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _full_disk(written: list[str]):
    """A writer that leaves half a file behind, then fails as on a full disk."""
    def write(_obj, f, *args, **kwargs) -> None:
        Path(f).write_bytes(b"half")
        written.append(str(f))
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


def test_a_failed_pt2_write_leaves_no_temporary(archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []
    monkeypatch.setattr(torch.export, "save", _full_disk(written))
    spec = SimpleNamespace(to_json=lambda: "{}")
    with pytest.raises(OSError, match="No space"):
        save_program(torch.export.load(str(archive)), spec, tmp_path / "model.pt2")
    assert written and list(tmp_path.iterdir()) == []


def test_a_failed_onnx_write_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    onnx = pytest.importorskip("onnx")
    from msad.export.onnx import export_onnx

    written: list[str] = []
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: SimpleNamespace(model_proto=onnx.ModelProto()))
    monkeypatch.setattr(onnx, "save", _full_disk(written))
    with pytest.raises(OSError, match="No space"):
        export_onnx(None, SimpleNamespace(levels=("p3",), to_json=lambda: "{}"), tmp_path / "model.onnx")
    assert written and list(tmp_path.iterdir()) == []  # no .model.onnx.tmp left behind
