"""Package layering: the models and the evaluation stand on their own, without the training engine."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_PROBE = """
import importlib, pkgutil, sys
import msad.{package} as root
for info in pkgutil.walk_packages(root.__path__, root.__name__ + "."):
    importlib.import_module(info.name)
print(sorted(m for m in sys.modules if m == "msad.engine" or m.startswith("msad.engine.")))
"""

_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", ["models", "evaluation"])
def test_package_does_not_import_the_engine(package: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(package=package)], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", f"msad.{package} imports {out.strip()}"


def test_slimmable_checkpoint_reader_does_not_import_the_network() -> None:
    probe = "import sys, msad.models.backbones.slimmable_checkpoint; print('msad.models.backbones.slimmable_resnet' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # the network imports its weight readers, never the other way round


def _imported_modules(path: Path) -> Iterator[tuple[int, set[str]]]:
    """``(line, modules)`` of every import statement in a source file, type-checking-only ones included: the module
    and, for ``from … import name``, ``module.name`` too (``from msad import api`` is ``msad.api``); relative imports
    are resolved against the file's package."""
    package = ".".join(path.relative_to(_ROOT).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            yield node.lineno, {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            yield node.lineno, {base} | {f"{base}.{alias.name}" for alias in node.names}


def test_nothing_below_the_api_imports_it() -> None:
    """Only ``msad.api`` itself and the CLI over it import ``msad.api`` (no import runs upward, even for types)."""
    upward = [
        f"{path.relative_to(_ROOT)}:{line} imports msad.api"
        for path in sorted((_ROOT / "msad").rglob("*.py"))
        if path.relative_to(_ROOT / "msad").parts[0] not in ("api", "cli")
        for line, modules in _imported_modules(path)
        if any(module == "msad.api" or module.startswith("msad.api.") for module in modules)
    ]
    assert not upward, "\n".join(upward)


def test_config_imports_no_torch() -> None:
    """msad.config derives its solver and run tables from msad.engine.settings, which must come without torch."""
    probe = "import sys, msad.config; print(sorted(m for m in ('torch', 'msad.engine.trainer') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_synthetic_generators_import_one_way() -> None:
    """synth → synth_coco → synth_shapes (and synth → synth_shapes): nothing imports back up the chain."""
    data = _ROOT / "msad" / "data"

    def imported(name: str) -> set[str]:
        return set().union(*(modules for _, modules in _imported_modules(data / name)))

    assert "msad.data.synth" not in imported("synth_coco.py")
    assert not {"msad.data.synth", "msad.data.synth_coco"} & imported("synth_shapes.py")


#: The layers of ``docs/architecture.md``, lowest first: a module imports from its own group or the groups before it.
LAYERS: tuple[frozenset[str], ...] = tuple(frozenset(group.split()) for group in (
    "structures levels errors plugin_declarations file_formats serialization outputs run_lock comm macs console plots visualize _pydantic_errors",
    "models ops distill data evaluation",
    "tasks engine",
    "config plugins",
    "build",
    "roles",
    "checkpoint",
    "export convert",
    "api",
    "cli __main__",
))


def _layer(module: str) -> int | None:
    """The layer of ``msad.<part>…`` (``None`` for ``msad`` itself, which every module may import for its version)."""
    parts = module.split(".")
    if parts[0] != "msad" or len(parts) < 2:
        return None
    return next((i for i, group in enumerate(LAYERS) if parts[1] in group), -1)


def test_every_module_has_a_layer() -> None:
    unplaced = sorted({
        path.relative_to(_ROOT / "msad").parts[0].removesuffix(".py")
        for path in (_ROOT / "msad").rglob("*.py")
        if path.relative_to(_ROOT / "msad").parts[0] != "__init__.py"
        and _layer("msad." + path.relative_to(_ROOT / "msad").parts[0].removesuffix(".py")) == -1
    })
    assert not unplaced, f"place these in LAYERS and in docs/architecture.md's layering: {unplaced}"


def test_no_import_runs_upward() -> None:
    """Every ``msad`` import (type-checking ones included) goes to the importer's own layer or one below it."""
    upward = []
    for path in sorted((_ROOT / "msad").rglob("*.py")):
        rel = path.relative_to(_ROOT / "msad")
        if rel.parts[0] == "__init__.py":
            continue
        own = _layer("msad." + rel.parts[0].removesuffix(".py"))
        for line, modules in _imported_modules(path):
            for module in modules:
                target = _layer(module)
                if target is not None and target > own:
                    upward.append(f"{path.relative_to(_ROOT)}:{line} imports {module} (layer {target} > {own})")
    assert not upward, "\n".join(sorted(set(upward)))
