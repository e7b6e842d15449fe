"""Start-up time of the ``msad`` command: median wall time of ``msad --help``, ``msad --version`` and, with
``--all``, of the commands that only read metadata: ``msad plugins`` and ``msad recipe show recipes/tiny.toml``.

    python benchmarks/cli_startup.py --runs 7 [--all]

Each run is a fresh process (``.venv/bin/msad`` beside the interpreter, else ``msad`` on the PATH); the first
run of each command is discarded (cold file cache).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def msad_executable() -> str:
    """The ``msad`` console script of this interpreter's environment."""
    beside = Path(sys.executable).with_name("msad")
    found = str(beside) if beside.exists() else shutil.which("msad")
    if found is None:
        raise SystemExit("no msad command found: install the package first (bash scripts/install.sh)")
    return found


def time_command(argv: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` runs of ``argv`` after one discarded run."""
    subprocess.run(argv, capture_output=True, check=True)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command")
    parser.add_argument("--all", action="store_true", help="also time `msad plugins` and `msad recipe show`")
    args = parser.parse_args()
    exe = msad_executable()
    commands = [["--help"], ["--version"]]
    if args.all:
        recipe = str(Path(__file__).resolve().parents[1] / "recipes" / "tiny.toml")
        commands += [["plugins"], ["recipe", "show", recipe]]
    for command in commands:
        seconds = time_command([exe, *command], args.runs)
        shown = " ".join(command).replace(str(Path(__file__).resolve().parents[1]) + "/", "")
        print(f"msad {shown}: median {statistics.median(seconds):.2f} s over {args.runs} runs "
              f"(min {min(seconds):.2f}, max {max(seconds):.2f})")


if __name__ == "__main__":
    main()
