"""What the README tells a newcomer to run agrees with the scripts it names: the same extras, and a demo that
leaves the README's commands runnable in the same folder."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
DEMO = (REPO / "scripts" / "demo.sh").read_text(encoding="utf-8")


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_readme_and_install_script_list_the_same_extras() -> None:
    install = (REPO / "scripts" / "install.sh").read_text(encoding="utf-8")
    (default,) = re.findall(r"MSAD_EXTRAS:-([\w,-]+)\}", install)
    extras = set(default.split(","))
    declared = set(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"])
    assert extras == declared
    install_block = next(block for block in _code_blocks(README) if "scripts/install.sh" in block)
    listed = re.findall(r"(?:msad|\.)\[([\w,-]+)\]", install_block)
    assert len(listed) == 2, install_block  # the script's comment and the pip line
    for names in listed:
        assert set(names.split(",")) == extras, names


def test_the_demo_leaves_the_readme_commands_runnable() -> None:
    """After ``bash scripts/demo.sh`` the four commands must not meet the demo's data (``data synth`` refuses a
    folder that is not empty) nor its runs."""
    four = next(block for block in _code_blocks(README) if "msad data synth" in block and "msad teacher" in block)
    (readme_data,) = re.findall(r"msad data synth (\S+)", four)
    readme_runs = set(re.findall(r"(runs/[\w-]+)/", four))
    (demo_data,) = re.findall(r"DATA_DIR=\$\{MSAD_DEMO_DATA:-(\S+)\}", DEMO)
    (demo_runs,) = re.findall(r"OUT=\$\{MSAD_DEMO_OUT:-(\S+)\}", DEMO)
    assert demo_data != readme_data and demo_runs not in readme_runs
    assert re.search(r'data synth "\$DATA_DIR"', DEMO)
    training = [line for line in DEMO.splitlines() if re.match(r"\$MSAD (teacher|distill|train) ", line)]
    assert len(training) == 4 and all('"${DATA[@]}"' in line for line in training), training
    for key in ("train_images", "train_annotations", "val_images", "val_annotations"):
        assert f"data.{key}=" in DEMO
