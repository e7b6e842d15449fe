"""Package layering: the models and the evaluation stand on their own, without the training engine."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import importlib, pkgutil, sys
import msad.{package} as root
for info in pkgutil.walk_packages(root.__path__, root.__name__ + "."):
    importlib.import_module(info.name)
print(sorted(m for m in sys.modules if m == "msad.engine" or m.startswith("msad.engine.")))
"""


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
