"""Synthetic case generation speed: seconds per case at 64, 128, 256 and 512 px.

For each matrix size, generates cases 0 .. n-1 of seed 0 in memory (``make_case``; no files
written) and prints the wall-clock and CPU seconds per case (mean, min, max) with the mean
number of slices, whose count grows with the size (see :mod:`livertumor.demo.generator`).
CPU time is printed too because on a shared machine the wall clock also counts other work.

Run: ``python benchmarks/demo_speed.py [n_cases]`` (default 4 cases per size, 2 at 512).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from livertumor.demo.generator import make_case

SIZES = (64, 128, 256, 512)


def time_cases(size: int, n_cases: int) -> dict:
    """Wall and CPU seconds per case (arrays), and slices per case, over cases 0..n-1."""
    wall, cpu, slices = [], [], []
    for i in range(n_cases):
        t0, c0 = time.perf_counter(), time.process_time()
        case = make_case(i, 0, size)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        slices.append(case.ct.shape[2])
    return dict(wall=np.array(wall), cpu=np.array(cpu), slices=np.array(slices))


def main(n_cases: int = 4) -> None:
    make_case(0, 0, 32)  # imports and first-call costs out of the figures
    print(f"{'size':>5} {'cases':>5} {'slices':>7} {'wall s/case (min-max)':>24} "
          f"{'cpu s/case':>11}")
    for size in SIZES:
        n = n_cases if size < 512 else max(1, n_cases // 2)
        r = time_cases(size, n)
        w = r["wall"]
        print(f"{size:>5} {n:>5} {r['slices'].mean():>7.0f} "
              f"{w.mean():>11.2f} ({w.min():.2f}-{w.max():.2f}) {r['cpu'].mean():>11.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
