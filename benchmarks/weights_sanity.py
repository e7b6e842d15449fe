"""What the weights checks of issue 23 cost: loading a realistic checkpoint with and without them.

Baseline: ``read_tensors`` followed by one pass over every tensor (``sum``), the least any user of the weights does.
Checked: :func:`msad.serialization.load_weights` (integrity digest + finite check). Also the digest alone and the
save with the digest against a plain ``save_tensors``. Best of ``--repeats`` runs each, printed as seconds and ratios.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python benchmarks/weights_sanity.py --megabytes 130
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from msad.serialization import FORMAT, load_weights, read_tensors, save_tensors, save_weights, tensors_digest


def _best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    """Print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=130, help="checkpoint size (float32 tensors of 2.4 MB)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    count = max(1, round(args.megabytes * 1e6 / (256 * 256 * 9 * 4)))
    state = {f"layer{i}.weight": torch.randn(256, 256, 3, 3) for i in range(count)}
    size = sum(t.numel() * t.element_size() for t in state.values()) / 1e6
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.safetensors"
        plain_save = _best(lambda: save_tensors(path, state, {"format": FORMAT}), args.repeats)
        checked_save = _best(lambda: save_weights(path, state, {}), args.repeats)

        def touched() -> None:
            tensors, _ = read_tensors(path, expected_format=FORMAT)
            for tensor in tensors.values():
                tensor.sum()

        plain_load = _best(touched, args.repeats)
        checked_load = _best(lambda: load_weights(path), args.repeats)
        digest = _best(lambda: tensors_digest(state), args.repeats)
    print(f"checkpoint: {size:.0f} MB, {count} float32 tensors; threads: {torch.get_num_threads()}")
    print(f"load: read + one pass {plain_load:.2f} s; load_weights (digest + finite) {checked_load:.2f} s "
          f"({checked_load / plain_load:.1f}x); digest alone {digest:.2f} s")
    print(f"save: save_tensors {plain_save:.2f} s; save_weights (with digest) {checked_save:.2f} s "
          f"({checked_save / plain_save:.2f}x)")


if __name__ == "__main__":
    main()
