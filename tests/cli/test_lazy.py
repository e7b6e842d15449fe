"""The CLI starts without torch: heavy modules are imported by the commands that use them."""

import json
import os
import subprocess
import sys
from pathlib import Path

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


def _modules_after(argv: list[str], names: tuple[str, ...]) -> tuple[str, list[str]]:
    """Run ``msad ARGV`` in a fresh interpreter: ``(its stdout, which of names it imported)``."""
    code = (f"import sys\nfrom msad.cli.main import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"print('IMPORTED', *[m for m in {names!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "COLUMNS": "200"}).stdout
    head, _, tail = out.rpartition("IMPORTED")
    return head, tail.split()


PLUGIN_MODULES = ("torch", "timm", "msad.models", "msad.distill", "msad.api")


def test_plugins_lists_from_metadata_without_importing_any_plugin():
    out, imported = _modules_after(["plugins", "--json"], PLUGIN_MODULES)
    assert imported == []
    assert {row["name"]: row["status"] for row in json.loads(out)}["timm"] == "installed"


def test_plugins_name_imports_that_plugin_only_and_shows_its_options():
    out, imported = _modules_after(["plugins", "fpn", "--json"], (*PLUGIN_MODULES, "msad.models.backbones.timm_backbone"))
    assert "timm" not in imported and "msad.models.backbones.timm_backbone" not in imported and "msad.api" not in imported
    (detail,) = json.loads(out)
    assert detail["group"] == "msad.necks" and detail["status"] == "ok"
    from msad.models.fpn import build_fpn
    from msad.plugins import FRAMEWORK_ARGS, builder_options

    expected = builder_options(build_fpn, framework_args=FRAMEWORK_ARGS["msad.necks"])
    assert [o["name"] for o in detail["options"]] == list(expected)
    for option in detail["options"]:
        default = expected[option["name"]][1]
        assert option["default"] == ("required" if default is ... else repr(default))


def test_recipe_show_imports_only_the_plugins_the_recipe_names():
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "tiny.toml"
    probe = ("timm", "msad.models.backbones.timm_backbone", "msad.models.backbones.slimmable_resnet", "msad.api")
    out, imported = _modules_after(["recipe", "show", str(recipe)], probe)
    assert 'name = "slimmable_resnet"' in out
    assert imported == ["msad.models.backbones.slimmable_resnet"]
