"""Paired differences, row by row, between two finished accuracy studies run on the same seeds.

Each argument is an ``--out`` folder of ``benchmarks/accuracy.py`` (its ``accuracy.json``); a row present in both is
compared seed by seed on the seeds both measured, with a 95 % interval (``msad.evaluation.stats``), e.g. the same
study before and after a default changed:

    python benchmarks/compare_studies.py runs/study_coco_cpu_hn runs/study_coco_cpu
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from msad.evaluation.stats import paired_difference


def _seeds(row: dict) -> dict[int, float]:
    return dict(zip(row["seeds"], row["AP_per_seed"], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="study A (the difference is A − B)")
    parser.add_argument("b", type=Path, help="study B")
    args = parser.parse_args()
    for folder in (args.a, args.b):
        if not (folder / "accuracy.json").is_file():
            parser.error(f"{folder}: no accuracy.json; pass the --out folder of a finished benchmarks/accuracy.py study")
    a, b = (json.loads((d / "accuracy.json").read_text())["rows"] for d in (args.a, args.b))
    print(f"| row | AP: {args.a} − {args.b} (same seeds) |\n|---|---|")
    for row in (r for r in a if r in b):
        sa, sb = _seeds(a[row]), _seeds(b[row])
        seeds = sorted(set(sa) & set(sb))
        if seeds:
            print(f"| {row} | {paired_difference([sa[s] for s in seeds], [sb[s] for s in seeds])} |")


if __name__ == "__main__":
    main()
