"""Windowing and reading speed: the package against a plain per-slice float64 version.

Prints, in one run on this machine:
- slices/s of ``to_nchan`` on 512x512 slices (two windows + histogram channel), with breaks
  computed per slice and with fixed breaks (as the export uses them), against a plain version
  (float64 copy, boolean-mask clipping, full sort for the breaks, channels stacked first);
- time and peak memory of ``read_nii`` on a 512x512x300 int16 volume stored as ('L','P','S'),
  against ``nibabel.load(...).get_fdata()`` + ``np.rot90`` (the seed report's reader).

Peak memory is measured in a fresh child process per reader: the growth of its peak resident
set (``VmHWM`` in /proc/self/status, which, unlike ``ru_maxrss``, does not inherit the parent's
peak across exec) over the baseline after imports. Pages of a memory-mapped file count too.

Run: ``python benchmarks/windowing_speed.py``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from livertumor import freqhist_bins, read_nii, to_nchan
from livertumor.data.volumes import canonical_affine_for, reorient_image

SHAPE = (512, 512, 300)
WINS = [(150, 30), (400, 50)]


def plain_windowed(x, w, level):
    px = x.copy()
    lo, hi = level - w // 2, level + w // 2
    px[px < lo] = lo
    px[px > hi] = hi
    return (px - lo) / (hi - lo)


def plain_to_nchan(slice_hu):
    x = np.asarray(slice_hu, dtype=np.float64)
    imsd = np.sort(x.ravel())
    t = np.concatenate([[0.001], np.arange(100) / 100 + 0.005, [0.999]])
    brks = np.unique(imsd[(len(imsd) * t).astype(np.int64)])
    hist = np.clip(np.interp(x.ravel(), brks, np.linspace(0, 1, len(brks))), 0, 1)
    res = [plain_windowed(x, *w) for w in WINS] + [hist.reshape(x.shape)]
    return np.stack(res, axis=0)


def rate(fn, slices, repeat=1):
    t0 = time.perf_counter()
    for _ in range(repeat):
        for s in slices:
            fn(s)
    return repeat * len(slices) / (time.perf_counter() - t0)


def synthetic_volume(shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    vol = rng.normal(40, 200, size=shape).astype(np.float32)
    vol[:, :, :] += np.linspace(-300, 300, shape[1], dtype=np.float32)[None, :, None]
    return np.clip(vol, -1024, 3071).astype(np.int16)


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(mode: str, path: str) -> None:
    base = peak_rss_kib()
    t0 = time.perf_counter()
    if mode == "read_nii":
        arr = read_nii(path)
    else:
        arr = np.rot90(nib.load(path).get_fdata())
    seconds = time.perf_counter() - t0
    peak = peak_rss_kib()
    print(json.dumps({"seconds": seconds, "peak_mib": (peak - base) / 1024,
                      "dtype": str(arr.dtype), "mib_result": arr.nbytes / 2**20}))


def main() -> None:
    vol = synthetic_volume()
    slices = [vol[:, :, k].astype(np.float32) for k in range(0, 24)]
    fixed = freqhist_bins(vol[:, :, ::10])
    print(f"to_nchan on 512x512 slices ({len(slices)} slices, 2 windows + histogram channel)")
    r_plain = rate(plain_to_nchan, slices)
    r_ours = rate(lambda s: to_nchan(s, WINS), slices)
    r_fixed = rate(lambda s: to_nchan(s, WINS, bins=fixed), slices)
    print(f"  plain float64, full sort per slice : {r_plain:7.1f} slices/s")
    print(f"  to_nchan, breaks per slice         : {r_ours:7.1f} slices/s  "
          f"({r_ours / r_plain:.1f}x)")
    print(f"  to_nchan, fixed breaks (export)    : {r_fixed:7.1f} slices/s  "
          f"({r_fixed / r_plain:.1f}x)")

    int16_mib = vol.nbytes / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "volume-0.nii"
        nib.save(reorient_image(vol, canonical_affine_for((0.7, 0.7, 1.0)), ("L", "P", "S")),
                 path)
        del vol, slices
        print(f"\nreading a {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} int16 volume "
              f"({int16_mib:.0f} MiB on disk), fresh process each")
        results = {}
        for mode in ("plain", "read_nii"):
            out = subprocess.run([sys.executable, __file__, "--child", mode, str(path)],
                                 capture_output=True, text=True, check=True)
            results[mode] = json.loads(out.stdout)
        for mode, label in (("plain", "get_fdata + rot90 (float64)"),
                            ("read_nii", "read_nii (float32, oriented)")):
            r = results[mode]
            print(f"  {label:<30}: {r['seconds']:5.2f} s, peak +{r['peak_mib']:6.0f} MiB "
                  f"({r['peak_mib'] / int16_mib:4.1f}x the int16 size), result {r['dtype']}")
        print(f"  speed-up {results['plain']['seconds'] / results['read_nii']['seconds']:.1f}x, "
              f"memory {results['plain']['peak_mib'] / results['read_nii']['peak_mib']:.1f}x "
              "less")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
