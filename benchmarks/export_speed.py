"""Slice export speed and memory: ``livertumor export`` against a plain version of the seed's code.

Generates two full-size cases (512 x 512 x 300 int16 volumes, stored ('L', 'P', 'S') as most
LiTS files are, with uint8 masks) and exports every 2nd slice at 256 px with the liver and
abdomen windows plus the histogram channel, three ways, each in a fresh child process:

- plain: the seed report's approach written plainly: per case ``np.rot90(nib.load(...)
  .get_fdata())`` for the volume and the mask (float64 volumes), then per slice a float32
  ``to_nchan`` whose histogram breaks come from the slice itself (a full sort, as fastai's
  ``hist_scaled`` without ``brks``), ``PIL`` resize and save of the JPEG and the PNG;
- ``livertumor.export_slices`` (what ``python -m livertumor export`` calls) with 1 worker and
  with 2 workers.

For each it prints slices per second two ways: over the export call alone (``in call``, what a
notebook cell or a long export sees) and over the whole child process including interpreter
start and imports (``command``); and the peak resident memory (RSS) above the child's own RSS
after its imports: per process (the child's ``VmHWM`` from /proc, its worker processes'
``ru_maxrss`` from ``resource.getrusage``), and summed over all processes from psutil samples
every 10 ms. RSS counts the memory-mapped pages of the ``.nii`` files that were touched.
Each mode runs ``--repeat`` times (3); the fastest run in call is shown, with the highest peak
memory of its runs. Then the ratios.

Run: ``python benchmarks/export_speed.py`` (about a minute; needs ~1 GB of /tmp and ~2.5 GB of
RAM for the plain version); ``--size 512`` exports at full resolution (no resize).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (512, 512, 300)
SIZE, EVERY = 256, 2
WINDOWS = ((150, 30), (400, 50))  # liver, abdomen_soft (width, level)


def make_cases(root: Path) -> None:
    """Two smooth synthetic volumes with a liver-like blob (content does not affect speed)."""
    import nibabel as nib
    from scipy import ndimage

    from livertumor.data.volumes import canonical_affine_for, reorient_image

    rng = np.random.default_rng(0)
    (root / "volume_pt1").mkdir(parents=True)
    (root / "segmentations").mkdir(parents=True)
    rr, cc = np.mgrid[:SHAPE[0], :SHAPE[1]]
    body = ((rr - 256) / 200) ** 2 + ((cc - 256) / 240) ** 2 < 1
    liver2d = ((rr - 230) / 110) ** 2 + ((cc - 170) / 90) ** 2 < 1
    tumor2d = ((rr - 220) / 20) ** 2 + ((cc - 160) / 20) ** 2 < 1
    for i in range(2):
        noise = ndimage.gaussian_filter(rng.normal(0, 40, SHAPE[:2]).astype(np.float32), 2)
        ct = np.full(SHAPE, -1000, np.int16)
        mask = np.zeros(SHAPE, np.uint8)
        for k in range(SHAPE[2]):
            s = np.where(body, 40 + noise + (k % 7), -1000)
            in_liver = 60 < k < 240
            s = np.where(liver2d & in_liver, 110 + noise, s)
            s = np.where(tumor2d & (120 < k < 150), 60 + noise, s)
            ct[:, :, k] = s.astype(np.int16)
            mask[:, :, k] = np.where(liver2d & in_liver, 1, 0)
            mask[:, :, k][tumor2d & (120 < k < 150)] = 2
        affine = canonical_affine_for((0.75, 0.75, 1.0), (180.0, 200.0, -400.0 - 300 * i))
        nib.save(reorient_image(ct, affine, ("L", "P", "S")),
                 root / "volume_pt1" / f"volume-{i}.nii")
        nib.save(reorient_image(mask, affine, ("L", "P", "S")),
                 root / "segmentations" / f"segmentation-{i}.nii")


def plain_export(data_dir: Path, out: Path, size: int) -> int:
    """The seed pipeline, written plainly (float64 volumes, rot90, per-slice breaks, PIL)."""
    import nibabel as nib
    from PIL import Image

    def read_nii(path):  # the seed's read_nii
        return np.rot90(np.array(nib.load(path).get_fdata()))

    def windowed(x, w, level):
        px = x.copy()
        lo, hi = level - w // 2, level + w // 2
        px[px < lo] = lo
        px[px > hi] = hi
        return (px - lo) / (hi - lo)

    def to_nchan(x):
        imsd = np.sort(x.ravel())
        t = np.concatenate([[0.001], np.arange(100) / 100 + 0.005, [0.999]])
        brks = np.unique(imsd[(len(imsd) * t).astype(np.int64)])
        hist = np.clip(np.interp(x.ravel(), brks, np.linspace(0, 1, len(brks))), 0, 1)
        return np.stack([*(windowed(x, w, lv) for w, lv in WINDOWS), hist.reshape(x.shape)], -1)

    out.mkdir(parents=True)
    n = 0
    for vpath in sorted(data_dir.glob("volume_pt1/*.nii")):
        cid = vpath.stem.split("-")[1]
        ct = read_nii(vpath)
        mask = read_nii(data_dir / "segmentations" / f"segmentation-{cid}.nii")
        for k in range(0, ct.shape[2], EVERY):
            x = (to_nchan(ct[:, :, k].astype(np.float32)) * 255).astype(np.uint8)
            Image.fromarray(x).resize((size, size)).save(out / f"{cid}_{k}.jpg", quality=90)
            Image.fromarray(mask[:, :, k].astype(np.uint8)).resize(
                (size, size), Image.NEAREST).save(out / f"{cid}_{k}.png")
            n += 1
    return n


def _status_bytes(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS: now; VmHWM: peak of this process image)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def child(mode: str, data_dir: str, out: str, size: int) -> None:
    """One measured export in this (fresh) process; prints a JSON line."""
    from livertumor.export import export_slices

    baseline = _status_bytes("VmRSS")  # after all imports
    t0 = time.perf_counter()
    if mode == "plain":
        n = plain_export(Path(data_dir), Path(out), size)
    else:
        result = export_slices(data_dir, out, every=EVERY, size=size,
                               windows=("liver", "abdomen_soft"), test_fraction=0.5,
                               workers=int(mode), progress=False)
        n = len(result.manifest)
    seconds = time.perf_counter() - t0
    # VmHWM rather than ru_maxrss for this process: Linux carries the RSS the forked copy of
    # the parent had before exec into RUSAGE_SELF's ru_maxrss. The workers (forked from this
    # process after the baseline) report through RUSAGE_CHILDREN, in KiB.
    print(json.dumps({
        "slices": n, "call_s": seconds, "baseline": baseline,
        "max_self": _status_bytes("VmHWM"),
        "max_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))


def measure(mode: str, data_dir: Path, out: Path, size: int) -> dict:
    """Run one export in a child process, sampling the RSS of its process tree."""
    import psutil

    os.sync()  # each run flushes only its own files (the export syncs before its renames)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", mode, str(data_dir), str(out),
                             str(size)],
                            stdout=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    peak_sum = 0
    while proc.poll() is None:
        try:
            peak_sum = max(peak_sum, sum(p.memory_info().rss for p in
                                         [parent, *parent.children(recursive=True)]))
        except psutil.Error:
            pass
        time.sleep(0.01)
    command_s = time.perf_counter() - t0
    res = json.loads(proc.stdout.read().strip().splitlines()[-1])
    base = res["baseline"]
    n_procs = 1 if mode == "plain" else 1 + int(mode) * (int(mode) > 1)
    return {**res, "command_s": command_s,
            "rate_call": res["slices"] / res["call_s"],
            "rate_command": res["slices"] / command_s,
            "peak_one_mib": (max(res["max_self"], res["max_children"]) - base) / 2**20,
            "peak_sum_mib": max(0, peak_sum - n_procs * base) / 2**20}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=SIZE,
                        help=f"exported side in pixels (default {SIZE}; 512: full resolution)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each mode; the fastest is shown (default 3)")
    args = parser.parse_args(argv)
    size, repeat = args.size, args.repeat
    volume_mib = np.prod(SHAPE) * 2 / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        # in a child process, so that this one stays small (its RSS at each fork is inherited)
        subprocess.run([sys.executable, __file__, "--make", str(root / "data")], check=True)
        print(f"two {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} int16 cases written in "
              f"{time.perf_counter() - t0:.0f} s (one volume: {volume_mib:.0f} MiB as int16); "
              f"{os.cpu_count()} CPUs")
        print(f"exporting every {EVERY}nd slice at {size} px, 3 channels; a fresh process each, "
              f"the fastest of {repeat} runs\n")
        print(f"{'':32}{'slices':>7}{'in call':>9}{'slices/s':>10}{'command':>9}{'slices/s':>10}"
              f"{'peak RSS/proc':>15}{'x volume':>9}{'all procs':>11}")
        results = {}
        for mode, label in (("plain", "plain seed-style (get_fdata)"),
                            ("1", "livertumor export, 1 worker"),
                            ("2", "livertumor export, 2 workers")):
            runs = []
            for i in range(repeat):
                runs.append(measure(mode, root / "data", root / f"out-{mode}-{i}", size))
                shutil.rmtree(root / f"out-{mode}-{i}")
            # the fastest run in call (as timeit takes the minimum: the others waited for
            # other processes), with the highest peak memory of all runs
            r = {**min(runs, key=lambda run: run["call_s"]),
                 "peak_one_mib": max(run["peak_one_mib"] for run in runs),
                 "peak_sum_mib": max(run["peak_sum_mib"] for run in runs)}
            results[mode] = r
            print(f"{label:32}{r['slices']:7d}{r['call_s']:8.2f}s{r['rate_call']:10.1f}"
                  f"{r['command_s']:8.2f}s{r['rate_command']:10.1f}"
                  f"{r['peak_one_mib']:11.0f} MiB{r['peak_one_mib'] / volume_mib:8.2f}x"
                  f"{r['peak_sum_mib']:7.0f} MiB")
        plain = results["plain"]
        print()
        for mode in ("1", "2"):
            r = results[mode]
            print(f"{mode} worker(s) vs plain: {r['rate_call'] / plain['rate_call']:5.1f}x the "
                  f"slices/s in call, {r['rate_command'] / plain['rate_command']:5.1f}x per "
                  f"command; {plain['peak_one_mib'] / max(r['peak_one_mib'], 1):5.1f}x less "
                  "peak memory per process")
        print("targets: >= 10x the plain slices/s with 2 workers; <= 2x a volume's int16 size "
              "per process")
        print("peak RSS: above the child's RSS after imports; per process from /proc VmHWM and "
              "getrusage (workers), all processes summed from psutil samples every 10 ms")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--make":
        make_cases(Path(sys.argv[2]))
    else:
        main()
