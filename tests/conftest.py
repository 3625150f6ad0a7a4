"""Shared fixtures: small synthetic NIfTI files built by the tests themselves."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from livertumor.data.volumes import canonical_affine_for, reorient_image

BAND_WINDOWS = [[150.0, 30.0], [400.0, 50.0]]
"""Windows of the band models: liver (150, 30) first."""
SPACING = (0.75, 0.8, 2.5)
ORIGIN = (120.0, 95.0, -310.0)


def anatomy(shape=(24, 20, 12), seed=0):
    """A canonical (P, L, S) int16 HU volume and its uint8 label map with asymmetric content.

    The "liver" is a box on the patient's right (low columns) and the tumor lies inside it, so
    any wrong flip or transpose changes the arrays.
    """
    rng = np.random.default_rng(seed)
    ct = rng.integers(-1000, 400, size=shape).astype(np.int16)
    mask = np.zeros(shape, np.uint8)
    mask[3:14, 2:9, 1:9] = 1
    mask[5:8, 3:6, 3:6] = 2
    ct[mask == 1] = 110
    ct[mask == 2] = 45
    return ct, mask


def write_case(root, case_id, ct, mask, axcodes=("P", "L", "S"), mask_axcodes=None,
               spacing=SPACING, origin=ORIGIN, gz=False):
    """Write volume-N / segmentation-N in the Kaggle layout with the given on-disk orientation."""
    affine = canonical_affine_for(spacing, origin)
    ext = ".nii.gz" if gz else ".nii"
    vdir, mdir = root / "volume_pt1", root / "segmentations"
    vdir.mkdir(parents=True, exist_ok=True)
    mdir.mkdir(parents=True, exist_ok=True)
    vpath, mpath = vdir / f"volume-{case_id}{ext}", mdir / f"segmentation-{case_id}{ext}"
    if ct is not None:
        nib.save(reorient_image(ct, affine, axcodes), vpath)
    if mask is not None:
        nib.save(reorient_image(mask, affine, mask_axcodes or axcodes), mpath)
    return vpath, mpath


@pytest.fixture
def case_arrays():
    return anatomy()


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """A small export (five 64-pixel demo cases, every 2nd slice) to train on."""
    from livertumor.demo.generator import make_demo_dataset
    from livertumor.export import export_slices

    root = tmp_path_factory.mktemp("export")
    make_demo_dataset(root / "raw", n_cases=5, seed=0, size=64, progress=False)
    return export_slices(root / "raw", root / "export", every=2, size=64, test_fraction=0.2,
                         seed=0, workers=1, progress=False).out_dir


def band_model(channels: int, size: int = 32):
    """A Keras model whose answer is known. Liver window x: liver logit 4 relu(10 (x - .8))
    - 1, tumor logit 4 relu(10 (x - .3)) - 12 relu(10 (x - .8)) - 2: tumor for x in about
    (0.35, 0.8), liver above."""
    import keras

    model = keras.Sequential([
        keras.Input((size, size, channels)),
        keras.layers.Conv2D(2, 1, activation="relu"),
        keras.layers.Conv2D(3, 1),
        keras.layers.Softmax(),
    ])
    k1 = np.zeros((1, 1, channels, 2), np.float32)
    k1[0, 0, 0] = [10.0, 10.0]
    model.layers[0].set_weights([k1, np.array([-3.0, -8.0], np.float32)])
    k2 = np.zeros((1, 1, 2, 3), np.float32)
    k2[0, 0, :, 1] = [0.0, 4.0]
    k2[0, 0, :, 2] = [4.0, -12.0]
    model.layers[1].set_weights([k2, np.array([0.0, -1.0, -2.0], np.float32)])
    return model


def band_model_dir(path, context=0, roi=None):
    """A model folder (preprocessing.json, model.keras) holding :func:`band_model`."""
    path.mkdir(parents=True)
    names = ["liver", "abdomen_soft", "histogram-scaled"]
    names += [f"liver, slice {o:+d}" for o in (*range(-context, 0), *range(1, context + 1))]
    prep = {"windows": BAND_WINDOWS, "bins": list(np.linspace(-200, 200, 30)), "size": 32,
            "jpeg_quality": 90, "channels": names, "context": context, "roi": roi}
    (path / "preprocessing.json").write_text(json.dumps(prep))
    band_model(len(names)).save(path / "model.keras")
    return path


def cascade_volume():
    """(P, L, S) HU: fat, a liver with a large and a tiny tumor, a bright island and a
    tumor-like blob apart from the liver."""
    ct = np.full((64, 56, 14), -100, np.int16)
    truth = np.zeros(ct.shape, np.uint8)
    truth[14:44, 6:34, 2:12] = 1
    truth[22:32, 12:22, 4:9] = 2  # 10 x 10 x 5 voxels
    truth[38:40, 28:30, 10:11] = 2  # 4 voxels: below the minimum volume
    ct[truth == 1], ct[truth == 2] = 110, 45
    ct[4:10, 44:52, 5:9] = 110  # a bright island: stage 1 calls it liver
    ct[50:56, 44:50, 5:9] = 45  # a tumor-like blob outside the liver
    return ct, truth
