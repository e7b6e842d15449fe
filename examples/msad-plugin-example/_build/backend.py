"""setuptools' PEP 517 backend, run on a temporary copy of this folder so that installing leaves no ``build/`` or
``*.egg-info`` here (``pip install ./examples/msad-plugin-example`` builds in the source tree otherwise)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from setuptools import build_meta

get_requires_for_build_wheel = build_meta.get_requires_for_build_wheel
get_requires_for_build_sdist = build_meta.get_requires_for_build_sdist

_SOURCE = Path(__file__).resolve().parents[1]


def _in_a_copy(hook: Callable[..., str], directory: str, *args: Any) -> str:
    """Run ``hook(absolute directory, *args)`` from a temporary copy of the source folder."""
    target = os.path.abspath(directory)
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(_SOURCE, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        os.chdir(copy)
        try:
            return hook(target, *args)
        finally:
            os.chdir(here)


def build_wheel(wheel_directory: str, config_settings: dict | None = None, metadata_directory: str | None = None) -> str:
    """The wheel, built in a temporary copy."""
    return _in_a_copy(build_meta.build_wheel, wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory: str, config_settings: dict | None = None) -> str:
    """The source distribution, built in a temporary copy."""
    return _in_a_copy(build_meta.build_sdist, sdist_directory, config_settings)


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: dict | None = None) -> str:
    """The wheel's metadata, prepared in a temporary copy."""
    return _in_a_copy(build_meta.prepare_metadata_for_build_wheel, metadata_directory, config_settings)
