"""``benchmarks/gpu_check.sh --smoke`` runs every section end to end on the CPU (slow: ~20 s of CPU)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_smoke_run_prints_every_section(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--smoke", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    for header in ("## 1. Train step", "## 2. Host syncs", "## 3. End-to-end", "## 4. Batch-1 inference"):
        assert header in done.stdout
    assert "skipped: set_sync_debug_mode needs CUDA" in done.stdout
    figures = json.loads(out.read_text())
    assert len(figures["train"]) == 6 and all(row["msad_s"] > 0 and row["torchvision_s"] > 0 for row in figures["train"].values())
    assert set(figures["e2e"]) == {"bare_images_per_s", "workers_2", "workers_4"}
    assert all(math.isfinite(figures["infer"][role]["bf16"]) for role in ("baseline", "teacher", "student"))
