"""The liver box of the cascade: where it is, and that crop and paste are exact inverses on
the file's own voxels whatever the stored orientation."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from livertumor import read_geometry, read_mask, write_like
from livertumor.data.roi import Box, crop, liver_box, paste
from livertumor.data.volumes import canonical_affine_for, reorient_image

ORIENTATIONS = [
    ("P", "L", "S"), ("L", "P", "S"), ("R", "A", "S"), ("L", "P", "I"),
    ("A", "R", "I"), ("S", "R", "P"), ("I", "A", "L"),
]


def _liver(shape=(60, 70, 20)):
    m = np.zeros(shape, np.uint8)
    m[20:35, 10:40, 5:12] = 1
    m[24:28, 15:19, 7:9] = 2
    return m


def test_box_holds_the_liver_with_its_margin_in_millimetres():
    labels = _liver()
    box = liver_box(labels, (1.0, 1.0, 2.5), margin_mm=5, square=False)
    # 5 mm: 5 voxels in-plane, 2 slices of 2.5 mm
    assert box == Box(15, 40, 5, 45, 3, 14)
    assert (labels[box.index] >= 1).sum() == (labels >= 1).sum()


def test_box_is_square_in_millimetres_with_anisotropic_pixels():
    labels = _liver()
    box = liver_box(labels, (0.5, 1.0, 2.5), margin_mm=0)
    rows, cols, _ = box.shape
    assert rows * 0.5 == pytest.approx(cols * 1.0, abs=0.5)
    assert (labels[box.index] >= 1).sum() == (labels >= 1).sum()


def test_box_stays_inside_the_volume_and_keeps_its_size_at_an_edge():
    labels = np.zeros((50, 50, 6), np.uint8)
    labels[0:10, 40:50, 0:6] = 1  # liver against two edges
    box = liver_box(labels, (1.0, 1.0, 1.0), margin_mm=4)
    assert (box.row0, box.col1, box.slice0, box.slice1) == (0, 50, 0, 6)
    assert box.shape[0] == box.shape[1] == 14  # 10 + 4 on the open side, shifted inside
    whole = liver_box(labels, (1.0, 1.0, 1.0), margin_mm=100)
    assert whole.shape == labels.shape


def test_docstring_example_runs():
    import doctest

    import livertumor.data.roi as roi

    assert doctest.testmod(roi).failed == 0


def test_no_liver_has_no_box_and_bad_boxes_are_refused():
    assert liver_box(np.zeros((8, 8, 3), np.uint8), (1, 1, 1)) is None
    with pytest.raises(ValueError):
        Box(5, 5, 0, 3, 0, 1)
    assert Box.from_dict(Box(1, 4, 2, 6, 0, 3).as_dict()) == Box(1, 4, 2, 6, 0, 3)


def test_paste_inverts_crop_with_channels_and_fill():
    rng = np.random.default_rng(0)
    probs = rng.uniform(size=(30, 40, 3)).astype(np.float32)
    box = Box(5, 17, 8, 30, 0, 1)
    back = paste(crop(probs, box).copy(), box, (30, 40), fill=[1.0, 0.0, 0.0])
    np.testing.assert_array_equal(back[box.plane], probs[box.plane])
    outside = np.ones((30, 40), bool)
    outside[box.plane] = False
    np.testing.assert_array_equal(back[outside], np.tile([1.0, 0.0, 0.0], (outside.sum(), 1)))
    with pytest.raises(ValueError, match="does not fit"):
        paste(probs[:3, :3], box, (30, 40))


@pytest.mark.parametrize("axcodes", ORIENTATIONS, ids=["".join(a) for a in ORIENTATIONS])
def test_a_box_cropped_and_pasted_back_lands_on_the_same_file_voxels(tmp_path, axcodes):
    labels = _liver()
    spacing = (0.8, 0.7, 2.0)
    path = tmp_path / "segmentation-0.nii"
    nib.save(reorient_image(labels, canonical_affine_for(spacing, (10.0, -20.0, 5.0)),
                            axcodes), path)
    geometry = read_geometry(path)
    canonical = read_mask(path)
    box = liver_box(canonical, geometry.spacing, margin_mm=3)
    pasted = np.zeros_like(canonical)
    for k in range(box.slice0, box.slice1):
        pasted[:, :, k] = paste(crop(canonical[:, :, k], box).copy(), box, canonical.shape[:2])
    out = write_like(pasted, geometry, tmp_path / "pasted.nii")
    stored = np.asarray(nib.load(path).dataobj)
    written = np.asarray(nib.load(out).dataobj)
    in_box = np.zeros(canonical.shape, bool)
    in_box[box.index] = True
    in_box_stored = np.asarray(geometry.from_canonical(in_box))
    np.testing.assert_array_equal(written[in_box_stored], stored[in_box_stored])
    assert not written[~in_box_stored].any()
    np.testing.assert_array_equal(written, stored)  # the whole liver was inside the box
    np.testing.assert_allclose(nib.load(out).affine, nib.load(path).affine)
