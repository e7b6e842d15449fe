"""The entry-point registry: built-ins, isolated loading, duplicates, MSAD_PLUGINS and option validation."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint
from types import SimpleNamespace

import pytest

from msad.errors import MsadError, PluginError, RecipeError, UsageError
from msad.models.fcos_head import build_fcos_head
from msad.models.fpn import build_fpn
from msad.plugins import (
    FRAMEWORK_ARGS,
    builder_options,
    get_builder,
    list_plugins,
    plugin_options,
    registry,
    validate_options,
)

BUILTINS = [
    ("msad.backbones", "slimmable_resnet"),
    ("msad.necks", "fpn"),
    ("msad.heads", "fcos"),
    ("msad.distill_losses", "msad_l1"),
    ("msad.distill_losses", "mse"),
    ("msad.distill_losses", "cwd"),
]


def _ep(name: str, value: str, group: str, dist: str | None = None, version: str = "0.1") -> EntryPoint:
    ep = EntryPoint(name=name, value=value, group=group)
    return ep._for(SimpleNamespace(name=dist, version=version)) if dist else ep


@pytest.fixture
def extra_plugins(monkeypatch: pytest.MonkeyPatch):
    """Add fake entry points next to the real ones: ``extra_plugins(ep, ...)``."""
    real = registry.entry_points
    added: list[EntryPoint] = []

    def fake(*, group: str):
        return [*real(group=group), *(ep for ep in added if ep.group == group)]

    monkeypatch.setattr(registry, "entry_points", fake)
    monkeypatch.delenv("MSAD_PLUGINS", raising=False)
    return lambda *eps: added.extend(eps)


def _row(rows, group: str, name: str, distribution: str | None = None):
    matches = [r for r in rows if r.group == group and r.name == name]
    if distribution is not None:
        matches = [r for r in matches if r.distribution == distribution]
    assert len(matches) == 1, matches
    return matches[0]


def test_error_exit_codes() -> None:
    assert MsadError("x").exit_code == 1
    assert RecipeError("x").exit_code == 3
    assert PluginError("x").exit_code == 1
    assert UsageError("x").exit_code == 2
    assert issubclass(RecipeError, MsadError) and issubclass(PluginError, MsadError)


def test_builtins_listed_with_msad_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSAD_PLUGINS", raising=False)
    rows = list_plugins()
    for group, name in BUILTINS:
        row = _row(rows, group, name)
        assert row.distribution == "msad"
        assert row.status == "ok", row
        assert ":" in row.value


def test_get_builder_returns_the_builder() -> None:
    assert get_builder("msad.necks", "fpn") is build_fpn
    assert get_builder("msad.heads", "fcos") is build_fcos_head


def test_unknown_name_lists_available_and_suggests() -> None:
    with pytest.raises(PluginError, match=r"unknown head 'fcoss'; available: fcos \(did you mean 'fcos'\?\)"):
        get_builder("msad.heads", "fcoss")
    with pytest.raises(PluginError, match="unknown plugin group"):
        get_builder("msad.nope", "x")


def test_broken_plugin_is_reported_not_raised(extra_plugins) -> None:
    extra_plugins(_ep("bad", "nonexistent_mod_xyz:build", "msad.backbones", dist="broken-dist", version="0.3"))
    rows = list_plugins()
    row = _row(rows, "msad.backbones", "bad")
    assert row.distribution == "broken-dist" and row.version == "0.3"
    assert row.status.startswith("error: ModuleNotFoundError")
    assert "\n" not in row.status
    assert _row(rows, "msad.necks", "fpn").status == "ok"
    # Loading is lazy: a broken sibling does not stop another plugin of the group.
    assert callable(get_builder("msad.backbones", "slimmable_resnet"))
    with pytest.raises(PluginError, match=r"backbone 'bad'.*broken-dist 0\.3.*failed to load"):
        get_builder("msad.backbones", "bad")


def test_entry_point_without_distribution_is_reported(extra_plugins) -> None:
    extra_plugins(_ep("orphan", "nonexistent_mod_xyz:build", "msad.heads"))
    row = _row(list_plugins(), "msad.heads", "orphan")
    assert row.distribution == "?" and row.status.startswith("error:")


def test_not_callable_plugin(extra_plugins) -> None:
    extra_plugins(_ep("pi", "math:pi", "msad.necks", dist="numbers-dist"))
    assert _row(list_plugins(), "msad.necks", "pi").status == "error: not callable"
    with pytest.raises(PluginError, match="not callable"):
        get_builder("msad.necks", "pi")


def test_duplicate_name_builtin_wins(extra_plugins) -> None:
    extra_plugins(_ep("fpn", "json:dumps", "msad.necks", dist="copycat"))
    rows = list_plugins()
    assert _row(rows, "msad.necks", "fpn", "msad").status == "ok"
    assert _row(rows, "msad.necks", "fpn", "copycat").status == "error: duplicate name, also provided by msad"
    assert get_builder("msad.necks", "fpn") is build_fpn


def test_msad_plugins_allow_list(extra_plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    extra_plugins(
        _ep("a_loss", "json:dumps", "msad.distill_losses", dist="plugin-a"),
        _ep("b_loss", "json:loads", "msad.distill_losses", dist="plugin_b"),
    )
    rows = list_plugins(("msad.distill_losses",))
    assert _row(rows, "msad.distill_losses", "a_loss").status == "ok"
    assert _row(rows, "msad.distill_losses", "b_loss").status == "ok"

    monkeypatch.setenv("MSAD_PLUGINS", "Plugin_A")  # names are normalised
    rows = list_plugins(("msad.distill_losses",))
    assert _row(rows, "msad.distill_losses", "a_loss").status == "ok"
    assert _row(rows, "msad.distill_losses", "b_loss").status == "disabled (MSAD_PLUGINS)"
    assert _row(rows, "msad.distill_losses", "msad_l1").status == "ok"
    with pytest.raises(PluginError, match="MSAD_PLUGINS"):
        get_builder("msad.distill_losses", "b_loss")

    monkeypatch.setenv("MSAD_PLUGINS", "")
    rows = list_plugins(("msad.distill_losses",))
    assert {r.name for r in rows if r.status == "ok"} == {"msad_l1", "mse", "cwd"}
    assert registry.available("msad.distill_losses") == ["cwd", "msad_l1", "mse"]


def test_builder_options_exclude_framework_args() -> None:
    head = builder_options(build_fcos_head, framework_args=FRAMEWORK_ARGS["msad.heads"])
    assert head == {
        "num_convs": (int, 4), "prior_prob": (float, 0.01), "norm": (str, "gn"), "box_init": (str, "half_normal"),
    }
    neck = builder_options(build_fpn, framework_args=FRAMEWORK_ARGS["msad.necks"])
    assert neck == {"out_channels": (int, 256)}

    def required(*, size: int, ratio=0.5, **kwargs) -> None:
        """A builder with a required option and an unannotated one."""

    opts = builder_options(required, framework_args=())
    assert opts["size"] == (int, ...) and opts["ratio"][1] == 0.5 and "kwargs" not in opts


def test_validate_options_coerces_and_reports() -> None:
    assert validate_options("msad.heads", "fcos", {"num_convs": "2"}, path="model.head") == {"num_convs": 2}
    assert validate_options("msad.necks", "fpn", {}, path="model.neck") == {}
    with pytest.raises(RecipeError, match=r"^model\.head\.num_conv: unknown option 'num_conv', did you mean 'num_convs'\?$"):
        validate_options("msad.heads", "fcos", {"num_conv": 2}, path="model.head")
    with pytest.raises(RecipeError, match=r"^model\.head\.prior_prob: input should be a valid number \(got 'abc'\)$"):
        validate_options("msad.heads", "fcos", {"prior_prob": "abc"}, path="model.head")
    with pytest.raises(RecipeError, match=r"model\.neck\.levels: 'levels' is supplied by msad"):
        validate_options("msad.necks", "fpn", {"levels": ["p3"]}, path="model.neck")
    with pytest.raises(RecipeError, match=r"^model\.neck\.name: unknown neck 'fpnn'"):
        validate_options("msad.necks", "fpnn", {}, path="model.neck")


def test_validate_backbone_option_typo() -> None:
    with pytest.raises(RecipeError, match=r"model\.backbone\.widht: .*did you mean 'width'"):
        validate_options("msad.backbones", "slimmable_resnet", {"widht": 0.5}, path="model.backbone")
    assert validate_options("msad.backbones", "slimmable_resnet", {"width": 1}, path="model.backbone") == {
        "width": 1.0
    }


def test_listing_from_metadata_imports_no_plugin(extra_plugins, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "probe_plugin_xyz.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    extra_plugins(_ep("probe", "probe_plugin_xyz:build", "msad.necks", dist="probe-dist"))
    row = _row(list_plugins(load=False), "msad.necks", "probe")
    assert row.status == "installed" and row.distribution == "probe-dist"
    assert "probe_plugin_xyz" not in sys.modules
    assert _row(list_plugins(), "msad.necks", "probe").status == "error: RuntimeError: imported"  # load=True checks


def test_plugin_options_are_what_validation_checks() -> None:
    options = plugin_options("msad.necks", "fpn")
    assert "in_features" not in options and "levels" not in options  # framework arguments
    assert options == {k: v for k, v in builder_options(build_fpn, framework_args=FRAMEWORK_ARGS["msad.necks"]).items()
                       if not k.startswith("_")}
    some = next(iter(options))
    with pytest.raises(RecipeError, match=f"model.neck.{some}x"):
        validate_options("msad.necks", "fpn", {f"{some}x": 1}, path="model.neck")
