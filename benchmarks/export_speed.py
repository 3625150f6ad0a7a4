"""Slice export speed and memory: ``livertumor export`` against a plain version of the seed's code.

Generates two full-size cases (512 x 512 x 300 int16 volumes, stored ('L', 'P', 'S') as most
LiTS files are, with a uint8 mask) and exports every 2nd slice at 256 px with the liver and
abdomen windows plus the histogram channel, three ways, each in a fresh process:

- plain: the seed report's approach: ``nibabel.load(...).get_fdata()`` (float64) and
  ``np.rot90`` per volume and mask, then per slice a float64 ``to_nchan`` (breaks from the
  slice itself, full sort), ``PIL`` resize and save of the JPEG and the PNG;
- ``livertumor export`` with 1 worker and with 2 workers.

Prints slices/s and the peak resident memory above each process's baseline after imports
(sum over the worker processes for 2 workers, sampled every 20 ms with psutil), and the
ratios. Run: ``python benchmarks/export_speed.py`` (about 2 minutes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (512, 512, 300)
SIZE, EVERY = 256, 2


def make_cases(root: Path) -> None:
    """Two smooth synthetic volumes with a liver-like blob (content does not affect speed)."""
    import nibabel as nib
    from scipy import ndimage

    from livertumor.volumes import canonical_affine_for, reorient_image

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


def plain_export(data_dir: Path, out: Path) -> int:
    """The seed pipeline, written plainly (float64, rot90, per-slice breaks, PIL)."""
    import nibabel as nib
    from PIL import Image

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
        return np.stack([windowed(x, 150, 30), windowed(x, 400, 50), hist.reshape(x.shape)], 0)

    out.mkdir(parents=True)
    n = 0
    for vpath in sorted(data_dir.glob("volume_pt1/*.nii")):
        cid = vpath.stem.split("-")[1]
        ct = np.rot90(nib.load(vpath).get_fdata())
        mask = np.rot90(nib.load(data_dir / "segmentations" / f"segmentation-{cid}.nii")
                        .get_fdata())
        for k in range(0, ct.shape[2], EVERY):
            x = (to_nchan(ct[:, :, k]) * 255).astype(np.uint8)
            Image.fromarray(x.transpose(1, 2, 0)).resize((SIZE, SIZE)).save(
                out / f"{cid}_{k}.jpg", quality=90)
            Image.fromarray(mask[:, :, k].astype(np.uint8)).resize(
                (SIZE, SIZE), Image.NEAREST).save(out / f"{cid}_{k}.png")
            n += 1
    return n


def child(mode: str, data_dir: str, out: str) -> None:
    if mode == "plain":
        n = plain_export(Path(data_dir), Path(out))
    else:
        from livertumor.export import export_slices

        result = export_slices(data_dir, out, every=EVERY, size=SIZE, test_fraction=0.5,
                               workers=int(mode), progress=False)
        n = len(result.manifest)
    print(json.dumps({"slices": n}))


def measure(mode: str, data_dir: Path, out: Path) -> dict:
    """Run one export in a child process, sampling the memory of its process tree."""
    import psutil

    # baseline: the same interpreter with the same imports, idle
    probe = subprocess.run([sys.executable, "-c", "import numpy, nibabel, PIL, pandas, scipy, "
                            "livertumor.export, psutil, os; "
                            "print(psutil.Process(os.getpid()).memory_info().rss)"],
                           capture_output=True, text=True, check=True)
    baseline = int(probe.stdout.strip())
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", mode, str(data_dir), str(out)],
                            stdout=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    peak_sum = peak_one = 0
    while proc.poll() is None:
        try:
            procs = [parent, *parent.children(recursive=True)]
            rss = [max(0, p.memory_info().rss - baseline) for p in procs]
            peak_sum, peak_one = max(peak_sum, sum(rss)), max(peak_one, max(rss))
        except psutil.Error:
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    slices = json.loads(proc.stdout.read().strip().splitlines()[-1])["slices"]
    return {"slices": slices, "seconds": seconds, "rate": slices / seconds,
            "peak_sum_mib": peak_sum / 2**20, "peak_one_mib": peak_one / 2**20}


def main() -> None:
    int16_mib = np.prod(SHAPE) * 2 / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_cases(root / "data")
        print(f"two {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} int16 cases written in "
              f"{time.perf_counter() - t0:.0f} s (one volume: {int16_mib:.0f} MiB int16)")
        print(f"exporting every {EVERY}nd slice at {SIZE} px, 3 channels; fresh process each")
        results = {}
        for mode, label in (("plain", "plain seed-style (get_fdata, rot90)"),
                            ("1", "livertumor export, 1 worker"),
                            ("2", "livertumor export, 2 workers")):
            r = measure(mode, root / "data", root / f"out-{mode}")
            results[mode] = r
            print(f"  {label:<38}: {r['slices']} slices in {r['seconds']:5.1f} s = "
                  f"{r['rate']:6.1f} slices/s; peak memory +{r['peak_one_mib']:5.0f} MiB per "
                  f"process ({r['peak_one_mib'] / int16_mib:4.1f}x a volume's int16), "
                  f"+{r['peak_sum_mib']:5.0f} MiB all processes")
        plain = results["plain"]
        for mode in ("1", "2"):
            r = results[mode]
            print(f"  {mode} worker(s) vs plain: {r['rate'] / plain['rate']:.1f}x the slices/s, "
                  f"{plain['peak_one_mib'] / max(r['peak_one_mib'], 1):.1f}x less memory "
                  "per process")
        print("  (targets: at least 10x the plain slices/s with 2 workers; at most 2x a "
              "volume's int16 size per process)")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
