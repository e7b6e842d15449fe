"""Plugins that fail in unusual ways, and a misspelt MSAD_PLUGINS, each reported in one line (issue 13)."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path
from types import SimpleNamespace

import pytest

from msad.errors import PluginError
from msad.plugins import get_builder, list_plugins


def _ep(name: str, value: str, group: str, dist: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=group)._for(SimpleNamespace(name=dist, version="0.1"))


def test_a_plugin_that_calls_sys_exit_on_import_is_a_broken_row(with_plugins) -> None:
    with_plugins("exits_on_import", "import sys\nsys.exit(7)\n",
                 _ep("quitter", "exits_on_import:build", "msad.backbones", "quitter-dist"))
    rows = list_plugins()
    quitter = [r for r in rows if r.name == "quitter"]
    assert len(quitter) == 1 and quitter[0].status == "error: called sys.exit(7) while importing"
    assert any(r.name == "fcos" and r.status == "ok" for r in rows)  # the listing went on after it
    with pytest.raises(PluginError, match=r"'quitter' .*quitter-dist.* failed to load: called sys.exit\(7\)"):
        get_builder("msad.backbones", "quitter")


def test_a_misspelt_msad_plugins_name_is_refused_naming_the_installed_ones(with_plugins, monkeypatch) -> None:
    with_plugins("fine_plugin", "def build():\n    return None\n",
                 _ep("fine", "fine_plugin:build", "msad.necks", "msad-fine"))
    monkeypatch.setenv("MSAD_PLUGINS", "msad-fien")
    with pytest.raises(PluginError) as info:
        get_builder("msad.necks", "fpn")
    message = str(info.value)
    assert "MSAD_PLUGINS names 'msad-fien'" in message and "installed: msad-fine" in message
    assert "did you mean 'msad-fine'" in message
    monkeypatch.setenv("MSAD_PLUGINS", "MSAD_Fine, msad")  # normalised names, and the built-ins, are fine
    assert get_builder("msad.necks", "fine") is not None


def test_a_builder_that_calls_sys_exit_is_one_line_naming_the_plugin(with_plugins, tmp_path: Path, capsys) -> None:
    from msad.cli.main import main

    with_plugins("exits_when_built", "import sys\ndef build(**kwargs):\n    sys.exit(5)\n",
                 _ep("quitter", "exits_when_built:build", "msad.backbones", "quitter-dist"))
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "tiny.toml"
    with pytest.raises(SystemExit) as done:
        main(["flops", str(recipe), "--set", 'model.backbone.name="quitter"'])
    err = capsys.readouterr().err.strip()
    assert done.value.code == 1 and len(err.splitlines()) == 1
    assert "backbone 'quitter' (exits_when_built:build, from quitter-dist 0.1) called sys.exit(5) while building" in err
