"""The CLI starts without torch: heavy modules are imported by the commands that use them."""

import subprocess
import sys

from msad.cli.lazy import lazy_module

HEAVY = ("torch", "torchvision", "pydantic", "msad.api", "msad.config")


def test_importing_the_cli_imports_no_heavy_module():
    code = f"import sys, msad.cli.main; print(*[m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []


def test_version_runs_without_torch():
    code = ("import sys\nfrom msad.cli.main import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "False" and out.stdout.startswith("msad ")


def test_lazy_module_imports_on_first_attribute(tmp_path, monkeypatch):
    (tmp_path / "msad_lazy_probe.py").write_text("import builtins\nbuiltins.msad_probe_runs = getattr(builtins, 'msad_probe_runs', 0) + 1\nVALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import builtins

    monkeypatch.setattr(builtins, "msad_probe_runs", 0, raising=False)
    probe = lazy_module("msad_lazy_probe")
    assert builtins.msad_probe_runs == 0 and "msad_lazy_probe" not in sys.modules
    assert probe.VALUE == 7 and probe.VALUE == 7
    assert builtins.msad_probe_runs == 1
    monkeypatch.delitem(sys.modules, "msad_lazy_probe")
