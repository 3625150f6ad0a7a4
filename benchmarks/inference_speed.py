"""Whole-volume inference: seconds and peak memory to segment a 512 x 512 x 300 volume.

For each model (the demo U-Net, 16 base filters, and the ResNet-50 U-Net, both 128-pixel
inputs, random weights: speed does not depend on them), in a fresh process each:

- batched: ``livertumor.inference.predict.predict_volume`` (batches of 16 slices, probabilities
  resized back to 512 x 512, argmax into a uint8 volume);
- per slice: the same preprocessing, then ``model.predict`` called once per slice, the plain
  loop a notebook would write.

Peak memory is the growth of the process's peak resident set (VmHWM) over its baseline after
loading the model; the volume is a memory-mapped int16 .nii (150 MiB). Run:
``python benchmarks/inference_speed.py`` (about 5 minutes on 2 CPU cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (512, 512, 300)


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(arch: str, mode: str, volume: str) -> None:
    import keras

    from livertumor.data.volumes import NiftiVolume
    from livertumor.inference.inputs import SliceInputs
    from livertumor.inference.predict import predict_volume, resize_probabilities
    from livertumor.training.models import build_resnet50_unet, build_unet

    keras.utils.set_random_seed(0)
    model = (build_unet((128, 128, 3), base_filters=16) if arch == "unet"
             else build_resnet50_unet((128, 128, 3)))
    prep = {"windows": [[150, 30], [400, 50]], "bins": list(np.linspace(-1000, 400, 60)),
            "size": 128, "jpeg_quality": 90}
    model.predict(np.zeros((16, 128, 128, 3), np.float32), verbose=0)  # build and trace
    base = peak_rss_mib()
    t0 = time.perf_counter()
    vol = NiftiVolume(volume)
    if mode == "batched":
        labels = predict_volume(model, vol, prep, batch_size=16, progress=False).labels
    else:
        rows, cols, n = vol.geometry.canonical_shape
        labels = np.zeros((rows, cols, n), np.uint8)
        inputs = SliceInputs(vol, prep, 128)
        for k in range(n):
            x = inputs.batch([k])
            p = model.predict(x, verbose=0)
            labels[:, :, k] = resize_probabilities(p, (rows, cols))[0].argmax(-1)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_mib": peak_rss_mib() - base,
                      "labels": int(labels.size)}))


def main() -> None:
    import nibabel as nib

    from livertumor.data.volumes import canonical_affine_for, reorient_image

    int16_mib = np.prod(SHAPE) * 2 / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        ct = rng.integers(-1000, 300, SHAPE, dtype=np.int16)
        path = Path(tmp) / "volume-0.nii"
        nib.save(reorient_image(ct, canonical_affine_for((0.75, 0.75, 1.0)), ("L", "P", "S")),
                 path)
        del ct
        print(f"segmenting a {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} volume ({int16_mib:.0f} MiB int16), "
              f"128-pixel models, {os.cpu_count()} CPU cores, fresh process each")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        for arch in ("unet", "resnet50_unet"):
            results = {}
            for mode in ("batched", "per-slice"):
                out = subprocess.run([sys.executable, __file__, "--child", arch, mode, str(path)],
                                     capture_output=True, text=True, env=env)
                if out.returncode != 0:
                    raise RuntimeError(out.stderr[-3000:])
                results[mode] = r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"  {arch:<14} {mode:<10}: {r['seconds']:6.1f} s "
                      f"({SHAPE[2] / r['seconds']:5.1f} slices/s), peak +{r['peak_mib']:5.0f} MiB "
                      f"({r['peak_mib'] / int16_mib:3.1f}x the int16 volume)", flush=True)
            print(f"  {arch:<14} batched is "
                  f"{results['per-slice']['seconds'] / results['batched']['seconds']:.1f}x "
                  "faster than the per-slice loop")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
