"""Whole-volume inference: seconds and peak memory to segment a 512 x 512 x 300 volume.

For each model (the demo U-Net, 16 base filters, and the ResNet-50 U-Net, both 128-pixel
inputs, random weights: speed does not depend on them), each mode in a fresh process:

- batched: ``livertumor.inference.predict.predict_volume`` (batches of 16 slices: the
  lookup-table images, the JPEG round trip, one batched resize of the class probabilities back
  to 512 x 512 as the argmax of two resized differences, the next batch's images made in a
  thread while the model runs);
- per slice: the loop a notebook would write with the package's public per-slice functions:
  ``hu_slice`` -> ``slice_to_jpeg_array`` -> ``resize_for_model`` -> ``model.predict`` of one
  slice -> Pillow's bilinear resize of each class's probabilities -> ``argmax``;
- batched with ``tta`` (three zooms, averaged);
- the two-stage cascade: the whole-volume liver stage, then the same model as a tumor stage
  inside a liver box of 240 x 240 pixels x 150 slices (18 x 18 x 15 cm at 0.75 mm, a large
  liver with its margin; random weights find no liver of their own).

The batched run also reports where its time goes (model, inputs, resize + argmax), each part
timed alone over the same batches (so they can add up to more than the batched run, which makes
the inputs while the model runs). Peak memory is the growth of the process's peak resident set
(VmHWM) over its baseline after loading the model; the volume is a memory-mapped int16 .nii
(150 MiB). Run: ``python benchmarks/inference_speed.py`` (about 5 minutes on 2 CPU cores);
``--arch unet`` for one model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (512, 512, 300)
BATCH = 16
BOX = (136, 376, 100, 340, 75, 225)  # rows, columns, slices of the cascade's tumor stage
PREP = {"windows": [[150, 30], [400, 50]], "bins": [float(b) for b in np.linspace(-1000, 400, 60)],
        "size": 128, "jpeg_quality": 90}


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def per_slice_loop(model, vol) -> np.ndarray:
    """The plain loop: one slice at a time through the public per-slice functions."""
    from PIL import Image

    from livertumor.data.preprocessing import slice_to_jpeg_array
    from livertumor.training.dataset import resize_for_model

    rows, cols, n = vol.geometry.canonical_shape
    labels = np.zeros((rows, cols, n), np.uint8)
    for k in range(n):
        x = resize_for_model(slice_to_jpeg_array(vol.hu_slice(k), PREP)[None], 128)
        p = model.predict(x, verbose=0)[0]
        resized = np.stack([np.asarray(Image.fromarray(p[:, :, c]).resize((cols, rows),
                                                                          Image.BILINEAR))
                            for c in range(p.shape[-1])], -1)
        labels[:, :, k] = resized.argmax(-1)
    return labels


def breakdown(model, vol) -> dict:
    """Seconds of each part of the batched path, each timed alone over all the batches."""
    from livertumor.inference.inputs import SliceInputs
    from livertumor.inference.predict import resized_labels

    n = vol.geometry.canonical_shape[2]
    inputs = SliceInputs(vol, PREP, 128)
    batches = [range(s, min(s + BATCH, n)) for s in range(0, n, BATCH)]
    t0 = time.perf_counter()
    xs = [inputs.batch(ks) for ks in batches]
    t1 = time.perf_counter()
    ps = [np.asarray(model.predict_on_batch(x), np.float32) for x in xs]
    t2 = time.perf_counter()
    for p in ps:
        resized_labels(p, SHAPE[:2])
    t3 = time.perf_counter()
    return {"inputs": t1 - t0, "model": t2 - t1, "resize_argmax": t3 - t2}


def child(arch: str, mode: str, volume: str) -> None:
    import keras

    from livertumor.data.roi import Box
    from livertumor.data.volumes import NiftiVolume
    from livertumor.inference.predict import predict_volume
    from livertumor.training.models import build_resnet50_unet, build_unet

    keras.utils.set_random_seed(0)
    model = (build_unet((128, 128, 3), base_filters=16) if arch == "unet"
             else build_resnet50_unet((128, 128, 3)))
    model.predict(np.zeros((BATCH, 128, 128, 3), np.float32), verbose=0)  # build and trace
    model.predict(np.zeros((1, 128, 128, 3), np.float32), verbose=0)
    base = peak_rss_mib()
    vol = NiftiVolume(volume)
    extra = {}
    t0 = time.perf_counter()
    if mode == "per-slice":
        labels = per_slice_loop(model, vol)
    elif mode == "cascade":
        liver = predict_volume(model, vol, PREP, BATCH, progress=False)
        box = Box(*BOX)
        tumor = predict_volume(model, vol, PREP, BATCH, progress=False, box=box)
        labels = np.maximum(liver.labels, tumor.labels)
        extra = {"box_slices": box.slice1 - box.slice0}
    else:
        labels = predict_volume(model, vol, PREP, BATCH, progress=False,
                                tta=mode == "tta").labels
    seconds = time.perf_counter() - t0
    peak = peak_rss_mib() - base
    if mode == "batched":
        extra = {"parts": breakdown(model, vol)}
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "labels": int(labels.size),
                      **extra}))


def run(arch: str, mode: str, path: Path) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, __file__, "--child", arch, mode, str(path)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    import nibabel as nib

    from livertumor.data.volumes import canonical_affine_for, reorient_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("unet", "resnet50_unet"), action="append",
                        help="only this architecture (repeatable)")
    archs = parser.parse_args(argv).arch or ["unet", "resnet50_unet"]
    int16_mib = np.prod(SHAPE) * 2 / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        ct = rng.integers(-1000, 300, SHAPE, dtype=np.int16)
        path = Path(tmp) / "volume-0.nii"
        nib.save(reorient_image(ct, canonical_affine_for((0.75, 0.75, 1.0)), ("L", "P", "S")),
                 path)
        del ct
        print(f"segmenting a {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} volume ({int16_mib:.0f} MiB int16), "
              f"128-pixel models, batch {BATCH}, {os.cpu_count()} CPU cores, a fresh process "
              "each")
        for arch in archs:
            results = {}
            for mode in ("batched", "per-slice", "tta", "cascade"):
                results[mode] = r = run(arch, mode, path)
                print(f"  {arch:<14} {mode:<10}: {r['seconds']:6.1f} s "
                      f"({SHAPE[2] / r['seconds']:5.1f} slices/s), peak +{r['peak_mib']:5.0f} MiB "
                      f"({r['peak_mib'] / int16_mib:3.1f}x the int16 volume)", flush=True)
            batched = results["batched"]["seconds"]
            parts = results["batched"]["parts"]
            total = sum(parts.values())
            print(f"  {arch:<14} batched is {results['per-slice']['seconds'] / batched:.1f}x "
                  f"faster than the per-slice loop (aim: >= 5x); tta costs "
                  f"{results['tta']['seconds'] / batched:.1f}x, the cascade "
                  f"{results['cascade']['seconds'] / batched:.2f}x the batched single stage")
            print(f"  {arch:<14} batched time: model {100 * parts['model'] / total:.0f} %, "
                  f"inputs (lookup, JPEG round trip, resize to 128) "
                  f"{100 * parts['inputs'] / total:.0f} %, probabilities resized to 512 + argmax "
                  f"{100 * parts['resize_argmax'] / total:.0f} % (each part timed alone)")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
