"""Scoring speed: ``lits_scores`` on a 512x512x300 case, surface connectivity 1 and 2.

The synthetic pair: an irregular liver of about 170 x 230 x 130 voxels (spacing 0.75 x 0.75 x
1.0 mm, about 1.5 L) with eight tumors of 3 to 25 voxels radius; the prediction shifts and
roughens the liver boundary, misses one small tumor, under-segments one, and adds one false
positive. Each measurement runs in a fresh child process that loads the two uint8 arrays from
.npy files and then reports:

- seconds of one ``lits_scores`` call (best of two);
- peak memory above the loaded inputs: the growth of ``VmHWM`` (peak resident set, from
  /proc/self/status) and the peak of ``tracemalloc`` (numpy's allocations are traced).

For scale, the same child is run once with a MedPy-style full-volume computation of the
liver surface distances (erosion and two distance transforms over all 78.6 M voxels), which
is what a plain port of MedPy's ``__surface_distances`` costs per structure.

Run: ``python benchmarks/scoring_speed.py`` (``--quick`` skips the full-volume reference).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import ndimage

from livertumor.evaluation import detect_lesions, lits_scores

SHAPE = (512, 512, 300)
SPACING = (0.75, 0.75, 1.0)


def smooth_noise(shape, rng, grid=(6, 6, 5)):
    coarse = rng.normal(size=grid).astype(np.float32)
    return ndimage.zoom(coarse, [s / g for s, g in zip(shape, grid, strict=True)], order=3,
                        grid_mode=True, mode="nearest")[: shape[0], : shape[1], : shape[2]]


def largest_component(mask):
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    return labels == np.argmax(sizes)


def synthetic_pair(seed=0):
    rng = np.random.default_rng(seed)
    truth = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    centre, semi = np.array([250, 200, 150]), np.array([85, 115, 65])
    lo, hi = centre - semi - 30, centre + semi + 30
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    shape = tuple(hi - lo)
    r0, r1, r2 = np.ogrid[: shape[0], : shape[1], : shape[2]]
    radius = np.sqrt(((r0 + lo[0] - centre[0]) / semi[0]) ** 2
                     + ((r1 + lo[1] - centre[1]) / semi[1]) ** 2
                     + ((r2 + lo[2] - centre[2]) / semi[2]) ** 2).astype(np.float32)
    bumps = smooth_noise(shape, rng)
    liver = largest_component(radius <= 1.0 + 0.06 * bumps)
    # Prediction: boundary moved in and out by a few voxels, and shifted by one voxel.
    wobble = smooth_noise(shape, rng, grid=(10, 10, 8))
    liver_pred = largest_component(radius <= 1.0 + 0.06 * bumps + 0.02 * wobble)
    truth[box][liver] = 1
    shifted = tuple(slice(a + d, b + d) for a, b, d in zip(lo, hi, (1, -1, 1), strict=True))
    pred[shifted][liver_pred] = 1
    tumors = [((240, 150, 140), 25), ((210, 260, 170), 18), ((290, 220, 110), 12),
              ((260, 140, 180), 9), ((200, 200, 120), 7), ((300, 280, 160), 5),
              ((230, 240, 200), 4), ((280, 170, 100), 3)]
    for k, (c, r) in enumerate(tumors):
        sl = tuple(slice(ci - r - 1, ci + r + 2) for ci in c)
        g = np.ogrid[tuple(slice(-r - 1, r + 2) for _ in range(3))]
        ball = g[0] ** 2 + g[1] ** 2 + (g[2] * 1.3) ** 2 <= r ** 2
        truth[sl][ball] = 2
        if k == 6:
            continue                                    # missed
        if k == 3:
            ball = ndimage.binary_erosion(ball, iterations=3)   # under-segmented
        pred[tuple(slice(s.start + 1, s.stop + 1) for s in sl)][ball] = 2
    pred[200:208, 240:246, 140:146] = 2                 # false positive
    return pred, truth


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def full_volume_liver_distances(pred, truth, connectivity):
    structure = ndimage.generate_binary_structure(3, connectivity)
    p, r = pred >= 1, truth >= 1
    sp = p ^ ndimage.binary_erosion(p, structure=structure)
    sr = r ^ ndimage.binary_erosion(r, structure=structure)
    d_pr = ndimage.distance_transform_edt(~sr, sampling=SPACING)[sp]
    d_rp = ndimage.distance_transform_edt(~sp, sampling=SPACING)[sr]
    return float(max(d_pr.max(), d_rp.max()))


def child(mode: str, connectivity: int, folder: str) -> None:
    pred = np.load(Path(folder) / "pred.npy")
    truth = np.load(Path(folder) / "truth.npy")
    base = peak_rss_kib()
    tracemalloc.start()
    times, result = [], {}
    for _ in range(1 if mode == "full" else 2):
        t0 = time.perf_counter()
        if mode == "lits_scores":
            result = lits_scores(pred, truth, SPACING, connectivity)
        elif mode == "detect_lesions":
            result = detect_lesions(pred, truth, SPACING)
        else:
            result = {"liver_msd": full_volume_liver_distances(pred, truth, connectivity)}
        times.append(time.perf_counter() - t0)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    keep = ("liver_dice", "liver_assd", "liver_hd95", "liver_msd", "tumor_dice", "tumor_assd",
            "lesion_tp", "lesion_fp", "lesion_fn", "tp", "fp", "fn")
    print(json.dumps({"seconds": min(times), "rss_mib": (peak_rss_kib() - base) / 1024,
                      "traced_mib": traced / 2**20,
                      "result": {k: result[k] for k in keep if k in result}}))


def run_child(mode: str, connectivity: int, folder: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(connectivity), folder],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main(quick: bool) -> None:
    t0 = time.perf_counter()
    pred, truth = synthetic_pair()
    print(f"synthetic {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} pair built in "
          f"{time.perf_counter() - t0:.1f} s; liver {np.count_nonzero(truth >= 1) / 1e6:.2f} M "
          f"voxels ({np.count_nonzero(truth >= 1) * np.prod(SPACING) / 1e6:.2f} L), tumor "
          f"{np.count_nonzero(truth == 2)} voxels; inputs 2 x {truth.nbytes / 2**20:.0f} MiB "
          "uint8")
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "pred.npy", pred)
        np.save(Path(folder) / "truth.npy", truth)
        del pred, truth
        runs = [("lits_scores", 1), ("lits_scores", 2), ("detect_lesions", 1)]
        if not quick:
            runs.append(("full", 1))
        for mode, conn in runs:
            r = run_child(mode, conn, folder)
            label = {"lits_scores": f"lits_scores, connectivity {conn}",
                     "detect_lesions": "detect_lesions (with sizes)",
                     "full": "full-volume liver distances"}[mode]
            print(f"  {label:<34}: {r['seconds']:6.2f} s, peak +{r['rss_mib']:6.0f} MiB RSS, "
                  f"+{r['traced_mib']:6.0f} MiB traced   {r['result']}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main(quick="--quick" in sys.argv)
