"""Option declarations read through the registry (``msad.plugins.declared_options``): the built-ins', and a
plugin's declaration checked against the options msad lets a recipe set."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from types import SimpleNamespace

import pytest

from msad.errors import PluginError
from msad.plugin_declarations import OptionDeclaration
from msad.plugins import declared_options, list_plugins


def test_the_builtins_declare_their_initialisation_options() -> None:
    assert declared_options("msad.backbones", "slimmable_resnet") == OptionDeclaration(
        init_files=("weights",), freeze="freeze_at", training=("norm",), width="width"
    )
    assert declared_options("msad.backbones", "timm") == OptionDeclaration(init_files=("weights",))
    for group, name in (("msad.necks", "fpn"), ("msad.heads", "fcos"), ("msad.distill_losses", "msad_l1")):
        assert declared_options(group, name) == OptionDeclaration()  # every option shapes the weights


def _odd(group: str) -> EntryPoint:
    """Entry point ``odd`` of ``group`` (module ``msad_test_odd``, its ``build``)."""
    return EntryPoint("odd", "msad_test_odd:build", group)._for(SimpleNamespace(name="odd-dist", version="0.1"))


def test_declaring_an_argument_msad_supplies_is_refused_naming_the_plugin(with_plugins) -> None:
    with_plugins("msad_test_odd", (
        "from msad.plugin_declarations import declare_options\n"
        "@declare_options(training=('levels',))\n"
        "def build(*, in_channels, num_classes, levels, depth: int = 1): ...\n"
    ), _odd("msad.heads"))
    with pytest.raises(PluginError, match=r"^head 'odd' declares 'levels' \(training\), which is not one of its "
                                          r"recipe options \(depth\)$"):
        declared_options("msad.heads", "odd")


def test_a_declaration_naming_no_parameter_is_a_broken_plugin_in_the_listing(with_plugins) -> None:
    with_plugins("msad_test_odd", (
        "from msad.plugins import declare_options\n"
        "@declare_options(init_files=('weights',))\n"
        "def build(*, pretrained_path: str | None = None): ...\n"
    ), _odd("msad.backbones"))
    [row] = [r for r in list_plugins(("msad.backbones",)) if r.name == "odd"]
    assert row.status == (
        "error: TypeError: declare_options on build: 'weights' is not a keyword parameter of the builder "
        "(its parameters: pretrained_path)"
    )
