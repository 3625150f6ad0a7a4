"""Exports for the cascade: liver-box crops (``roi``) and neighbouring-slice channels
(``context``), made by the one preprocessing definition that inference uses too."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from livertumor import NiftiVolume, read_mask
from livertumor.data.preprocessing import (
    context_indices,
    context_planes,
    jpeg_bytes,
    resize_mask,
    slice_channels,
    untile,
)
from livertumor.data.roi import Box, crop, liver_box
from livertumor.demo import make_demo_dataset
from livertumor.export import export_slices

ARGS = dict(size=48, test_fraction=0.25, seed=3, progress=False, workers=1)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, n_cases=5, seed=0, size=64, progress=False)
    return root


@pytest.fixture(scope="module")
def whole(demo_dir, tmp_path_factory):
    return export_slices(demo_dir, tmp_path_factory.mktemp("whole") / "out", every=2, **ARGS)


@pytest.fixture(scope="module")
def roi(demo_dir, tmp_path_factory):
    return export_slices(demo_dir, tmp_path_factory.mktemp("roi") / "out", every=2, roi=True,
                         roi_margin_mm=8.0, context=1, **ARGS)


def _case(result, case_id):
    row = result.cases.set_index("case_id").loc[case_id]
    return NiftiVolume(row["volume_path"]), read_mask(row["mask_path"])


def test_roi_export_keeps_the_patient_split_of_the_whole_slice_export(whole, roi):
    a = whole.cases.set_index("case_id")["split"]
    b = roi.cases.set_index("case_id")["split"]
    assert a.equals(b)
    assert set(roi.manifest["case_id"]) == set(whole.manifest["case_id"])


def test_roi_crops_are_the_liver_box_of_the_reference_through_the_one_definition(roi, whole):
    prep = roi.preprocessing
    assert prep["roi"]["margin_mm"] == 8.0 and prep["context"] == 1
    assert prep["channels"][3:] == ["liver, slice -1", "liver, slice +1"]
    for case_id, rows in roi.manifest.groupby("case_id"):
        vol, mask = _case(roi, case_id)
        box = liver_box(mask, vol.geometry.spacing, 8.0)
        spans = set(range(box.slice0, box.slice1))
        assert set(rows["slice_index"]) == {k for k in spans if k % 2 == 0}
        stored = Box(*rows.iloc[0][["row0", "row1", "col0", "col1"]], 0, 1)
        assert stored.plane == box.plane
        for row in rows.sample(min(3, len(rows)), random_state=0).itertuples():
            hu = crop(vol.hu_slice(row.slice_index), box)
            expected = jpeg_bytes(slice_channels(hu, prep), 90)
            assert (roi.out_dir / row.image).read_bytes() == expected
            with Image.open(roi.out_dir / row.mask) as im:
                np.testing.assert_array_equal(
                    np.asarray(im), resize_mask(crop(mask[:, :, row.slice_index], box), 48))
    # the same slices, cropped to the box, show the liver at a larger scale
    keys = ["case_id", "slice_index"]
    both = roi.manifest.merge(whole.manifest, on=keys, suffixes=("_roi", "_whole"))
    assert len(both) > 10
    assert both["liver_pixels_roi"].sum() > 2.5 * both["liver_pixels_whole"].sum()


def _context_of(result, case_id, k):
    row = result.manifest.set_index(["case_id", "slice_index"]).loc[(case_id, k)]
    with Image.open(result.out_dir / row["context"]) as im:
        return untile(np.asarray(im), 2 * result.preprocessing["context"])


def test_context_channels_are_the_clamped_neighbours_at_the_first_and_last_slice(demo_dir,
                                                                              tmp_path):
    result = export_slices(demo_dir, tmp_path / "ctx", every=1, context=2, **ARGS)
    prep = result.preprocessing
    case_id = int(result.manifest["case_id"].iloc[0])
    vol, _ = _case(result, case_id)
    n = vol.geometry.canonical_shape[2]
    for k in (0, 1, n - 1):
        neighbours = context_indices(k, n, 2)
        got = _context_of(result, case_id, k)
        assert got.shape == (48, 48, 4)
        expected = context_planes([vol.hu_slice(j) for j in neighbours], prep)
        np.testing.assert_array_equal(got, expected)
    assert context_indices(0, n, 2) == [0, 0, 1, 2]
    assert context_indices(n - 1, n, 2) == [n - 3, n - 2, n - 1, n - 1]
    # the first window of slice 0 itself is what the slices below it repeat
    own = slice_channels(vol.hu_slice(0), prep)[..., 0]
    first = _context_of(result, case_id, 0)[..., 0]
    assert np.abs(first.astype(int) - own).mean() < 2  # equal up to the JPEG round trip


def test_training_inputs_equal_the_inputs_inference_makes_from_the_volume(roi):
    """The tf.data pipeline (JPEG files) and inference (the volume) give the model the same
    numbers: same crop, same context channels, same JPEG decoding."""
    from livertumor.data.roi import Box
    from livertumor.inference.inputs import SliceInputs
    from livertumor.training import load_manifest, make_dataset

    rows = load_manifest(roi.out_dir)
    rows = rows[rows["tumor_pixels"] > 0].head(3)
    x, _ = next(iter(make_dataset(rows, len(rows), 48)))
    for i, row in enumerate(rows.itertuples()):
        vol, _ = _case(roi, row.case_id)
        box = Box(row.row0, row.row1, row.col0, row.col1, 0, vol.geometry.canonical_shape[2])
        inputs = SliceInputs(vol, roi.preprocessing, 48, box)
        np.testing.assert_array_equal(inputs.batch([row.slice_index])[0], x.numpy()[i])
