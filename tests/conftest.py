"""Shared fixtures: small synthetic NIfTI files built by the tests themselves."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from livertumor.data.volumes import canonical_affine_for, reorient_image

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
