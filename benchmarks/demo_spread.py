"""The demo profile's results over several seeds, against the project's targets.

Runs ``python -m livertumor run --profile demo --seed S --run demo-seedS`` for each seed; seed 0,
the profile's own, is ``make run``'s run in ``outputs/demo``. A run whose ``metrics.json`` exists
is read, not repeated (``--rerun`` repeats it). Then it prints, per
model, the mean and the range of the metrics that say whether tumors are found, and whether
each target is met by every seed. Synthetic data: the numbers say how the pipeline learns, not
how it would do on patients.

    python benchmarks/demo_spread.py                 # seeds 0 1 2, about 15 minutes each
                                                     # (seed 0 read from make run's outputs/demo)
    python benchmarks/demo_spread.py --seeds 0 --rerun
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
PROFILE = PROJECT / "notebooks" / "params" / "demo.yaml"
PROFILE_SEED = yaml.safe_load(PROFILE.read_text())["common"]["seed"]
"""The demo profile's own seed: its run is make run's, in outputs/demo."""

METRICS = [
    ("liver_dice_mean", "liver Dice per case"),
    ("tumor_dice_global", "tumor Dice global"),
    ("tumor_dice_mean", "tumor Dice per case"),
    ("lesion_recall_ge10mm", "lesion recall >= 10 mm"),
    ("lesion_recall", "lesion recall"),
    ("lesion_precision", "lesion precision"),
    ("tumor_auc", "tumor AUC"),
    ("liver_auc", "liver AUC"),
]

TARGETS = {
    "cascade": {"tumor_dice_global": 0.75, "tumor_dice_mean": 0.65, "lesion_recall_ge10mm": 0.7,
                "lesion_precision": 0.7, "liver_dice_mean": 0.95},
    "resnet50_unet": {"liver_dice_mean": 0.93, "tumor_auc": 0.9},
}
"""The targets of the demo profile (each a lower bound)."""


def run(seed: int, rerun: bool) -> tuple[dict, float | None]:
    """metrics.json of the seed's run (running it when needed) and its wall time in s."""
    own = seed == PROFILE_SEED
    name = "demo" if own else f"demo-seed{seed}"
    metrics = PROJECT / "outputs" / name / "metrics.json"
    if metrics.exists() and not rerun:
        return json.loads(metrics.read_text()), None
    t0 = time.perf_counter()
    seed_args = [] if own else ["--seed", str(seed)]
    subprocess.run([sys.executable, "-m", "livertumor", "run", "--profile", "demo", *seed_args,
                    "--run", name], cwd=PROJECT, check=True)
    return json.loads(metrics.read_text()), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rerun", action="store_true", help="run again even if finished")
    args = parser.parse_args()
    runs = {}
    for seed in args.seeds:
        runs[seed], seconds = run(seed, args.rerun)
        if seconds is not None:
            print(f"seed {seed}: make run equivalent took {seconds / 60:.1f} min")
    models = list(next(iter(runs.values())))
    for model in models:
        print(f"\n{model} (seeds {', '.join(map(str, runs))})")
        for key, label in METRICS:
            values = [r[model].get(key) for r in runs.values()]
            values = [float("nan") if v is None else float(v) for v in values]
            shown = ", ".join("-" if v != v else f"{v:.3f}" for v in values)
            defined = [v for v in values if v == v]  # NaN: undefined (no predicted tumor)
            mean = f"{sum(defined) / len(defined):.3f}" if defined else "-"
            if len(defined) < len(values):
                mean += f" of {len(defined)}"
            target = TARGETS.get(model, {}).get(key)
            verdict = ""
            if target is not None:
                met = all(v >= target for v in values)  # an undefined value does not meet it
                verdict = f"  target >= {target}: {'met' if met else 'NOT met'}"
            print(f"  {label:26} mean {mean}  [{shown}]{verdict}")


if __name__ == "__main__":
    main()
