"""read_nii / read_mask / write_like: orientation invariants, inverse mapping, named errors."""

from __future__ import annotations

import gzip
import struct

import nibabel as nib
import numpy as np
import pytest

from livertumor import (
    GridMismatchError,
    LabelError,
    NiftiReadError,
    NiftiVolume,
    read_geometry,
    read_mask,
    read_nii,
    write_like,
)
from livertumor.data.volumes import canonical_affine_for, reorient_image

from conftest import ORIGIN, SPACING, anatomy, write_case

# A spread of on-disk orientations: LiTS-like (LPS, RAS, reversed slices) and permutations.
ORIENTATIONS = [
    ("P", "L", "S"), ("L", "P", "S"), ("R", "A", "S"), ("L", "P", "I"),
    ("A", "R", "I"), ("S", "R", "P"), ("I", "A", "L"),
]


@pytest.mark.parametrize("axcodes", ORIENTATIONS, ids=["".join(a) for a in ORIENTATIONS])
@pytest.mark.parametrize("gz", [False, True], ids=["nii", "nii.gz"])
def test_same_anatomy_in_any_stored_orientation_reads_identically(tmp_path, axcodes, gz):
    ct, mask = anatomy()
    vpath, mpath = write_case(tmp_path, 0, ct, mask, axcodes=axcodes, gz=gz)
    assert nib.aff2axcodes(nib.load(vpath).affine) == axcodes
    got = read_nii(vpath)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ct.astype(np.float32))
    np.testing.assert_array_equal(read_mask(mpath), mask)
    geo = read_geometry(vpath)
    np.testing.assert_allclose(geo.spacing, SPACING, rtol=1e-6)
    np.testing.assert_allclose(geo.canonical_affine, canonical_affine_for(SPACING, ORIGIN),
                               atol=1e-5)


def test_canonical_orientation_is_radiological_view():
    # Row index grows towards posterior (-y), column index towards the patient's left (-x),
    # slice index towards the head (+z) in the RAS+ world.
    affine = canonical_affine_for((0.7, 0.7, 2.0), (0, 0, 0))
    origin = affine @ [0, 0, 0, 1]
    assert (affine @ [1, 0, 0, 1])[1] < origin[1]   # next row: more posterior
    assert (affine @ [0, 1, 0, 1])[0] < origin[0]   # next column: more to the left
    assert (affine @ [0, 0, 1, 1])[2] > origin[2]   # next slice: more superior
    assert nib.aff2axcodes(affine) == ("P", "L", "S")


@pytest.mark.parametrize("axcodes", ORIENTATIONS[1:], ids=["".join(a) for a in ORIENTATIONS[1:]])
def test_from_canonical_inverts_to_canonical_on_the_stored_array(tmp_path, axcodes):
    ct, _ = anatomy()
    vpath, _ = write_case(tmp_path, 0, ct, None, axcodes=axcodes)
    stored = np.asanyarray(nib.load(vpath).dataobj)
    geo = read_geometry(vpath)
    np.testing.assert_array_equal(geo.to_canonical(stored), ct)
    np.testing.assert_array_equal(geo.from_canonical(geo.to_canonical(stored)), stored)


@pytest.mark.parametrize("axcodes", [("L", "P", "S"), ("A", "R", "I")], ids=["LPS", "ARI"])
def test_write_like_puts_a_prediction_on_the_original_grid(tmp_path, axcodes):
    ct, mask = anatomy()
    vpath, _ = write_case(tmp_path, 0, ct, mask, axcodes=axcodes, gz=True)
    src = nib.load(vpath)
    geo = read_geometry(vpath)
    out = write_like(mask, geo, tmp_path / "pred.nii.gz")
    img = nib.load(out)
    assert img.shape == src.shape
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(img.affine, src.affine)
    np.testing.assert_allclose(img.get_qform(), src.get_qform())
    assert int(img.header["qform_code"]) == int(src.header["qform_code"])
    assert int(img.header["sform_code"]) == int(src.header["sform_code"])
    np.testing.assert_array_equal(read_mask(out, like=geo), mask)
    assert not list(tmp_path.glob(".*part*")), "temporary file left behind"


def test_scaling_is_applied_in_float32(tmp_path):
    ct, _ = anatomy()
    raw = ((ct.astype(np.int32) + 1024) // 2).astype(np.int16)
    path = tmp_path / "scaled.nii"
    nib.save(nib.Nifti1Image(raw, canonical_affine_for(SPACING)), path)
    # nibabel recomputes scaling on save, so patch scl_slope / scl_inter (header bytes 112-119).
    with open(path, "r+b") as fh:
        fh.seek(112)
        fh.write(struct.pack("<ff", 2.0, -1024.0))
    assert (nib.load(path).dataobj.slope, nib.load(path).dataobj.inter) == (2.0, -1024.0)
    got = read_nii(path)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, raw.astype(np.float32) * 2 - 1024)


def test_hu_slice_equals_the_slice_of_the_whole_volume(tmp_path):
    ct, _ = anatomy()
    vpath, _ = write_case(tmp_path, 0, ct, None, axcodes=("L", "P", "I"))
    vol = NiftiVolume(vpath)
    whole = vol.read()
    for k in (0, 5, ct.shape[2] - 1):
        np.testing.assert_array_equal(vol.hu_slice(k), whole[:, :, k])


# ---- bad files: each raises a named error that names the file -------------------------------

def _save(tmp_path, name, data, affine=None):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(NiftiReadError, match="file not found") as err:
        read_nii(tmp_path / "volume-9.nii")
    assert "volume-9.nii" in str(err.value)


def test_empty_file(tmp_path):
    path = tmp_path / "volume-1.nii"
    path.write_bytes(b"")
    with pytest.raises(NiftiReadError, match="empty") as err:
        read_nii(path)
    assert str(path) in str(err.value)


def test_not_nifti(tmp_path):
    path = tmp_path / "volume-1.nii"
    path.write_bytes(b"this is a text file, not an image\n" * 20)
    with pytest.raises(NiftiReadError, match="not a readable NIfTI") as err:
        read_nii(path)
    assert err.value.path == path


def test_truncated_uncompressed(tmp_path):
    path = _save(tmp_path, "volume-1.nii", np.zeros((16, 16, 8), np.int16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NiftiReadError, match="truncated"):
        read_nii(path)
    with pytest.raises(NiftiReadError, match="truncated"):
        read_geometry(path)


def test_truncated_gzip(tmp_path):
    path = _save(tmp_path, "volume-1.nii.gz", np.arange(32 * 32 * 8, dtype=np.int16)
                 .reshape(32, 32, 8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(NiftiReadError, match="truncated or corrupt") as err:
        read_nii(path)
    assert "volume-1.nii.gz" in str(err.value)


def test_gzip_of_garbage(tmp_path):
    path = tmp_path / "volume-2.nii.gz"
    path.write_bytes(gzip.compress(b"\x00garbage" * 100))
    with pytest.raises(NiftiReadError):
        read_nii(path)


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 4, 2)], ids=["2-D", "4-D"])
def test_not_3d(tmp_path, shape):
    path = _save(tmp_path, "volume-1.nii", np.zeros(shape, np.int16))
    with pytest.raises(NiftiReadError, match="not 3-D"):
        read_nii(path)


def test_nan_voxels(tmp_path):
    data = np.zeros((8, 8, 4), np.float32)
    data[1, 2, 3] = np.nan
    data[0, 0, 0] = np.inf
    path = _save(tmp_path, "volume-1.nii", data)
    with pytest.raises(NiftiReadError, match="2 voxels are NaN or infinite"):
        read_nii(path)


def test_unexpected_labels_are_named(tmp_path):
    data = np.zeros((8, 8, 4), np.uint8)
    data[0, 0, :] = 7
    path = _save(tmp_path, "segmentation-1.nii", data)
    with pytest.raises(LabelError, match="unexpected label values 7 in 4 voxels") as err:
        read_mask(path)
    assert "segmentation-1.nii" in str(err.value)


def test_float_mask_with_fractional_values_is_rejected(tmp_path):
    data = np.zeros((8, 8, 4), np.float32)
    data[1, 1, 1] = 0.5
    with pytest.raises(LabelError, match="0.5"):
        read_mask(_save(tmp_path, "segmentation-1.nii", data))


def test_float_mask_with_integral_values_is_accepted(tmp_path):
    _, mask = anatomy()
    img = reorient_image(mask.astype(np.float64), canonical_affine_for(SPACING), ("L", "P", "S"))
    path = tmp_path / "segmentation-1.nii"
    nib.save(img, path)
    np.testing.assert_array_equal(read_mask(path), mask)


def test_mask_on_another_grid_is_a_grid_mismatch(tmp_path):
    ct, mask = anatomy()
    vpath, _ = write_case(tmp_path, 0, ct, None)
    shifted = tmp_path / "segmentation-0.nii"
    nib.save(reorient_image(mask, canonical_affine_for(SPACING, (0, 0, 0)), ("P", "L", "S")),
             shifted)
    with pytest.raises(GridMismatchError, match="origin") as err:
        read_mask(shifted, like=read_geometry(vpath))
    assert "segmentation-0.nii" in str(err.value)


def test_mask_in_other_orientation_on_the_same_grid_is_accepted(tmp_path):
    ct, mask = anatomy()
    for codes in [("R", "A", "I"), ("S", "L", "P"), ("L", "P", "S")]:
        vpath, mpath = write_case(tmp_path, 0, ct, mask, axcodes=("L", "P", "S"),
                                  mask_axcodes=codes)
        assert nib.aff2axcodes(nib.load(mpath).affine) == codes
        np.testing.assert_array_equal(read_mask(mpath, like=read_geometry(vpath)), mask)


@pytest.mark.parametrize("gz", [False, True], ids=["nii", "nii.gz"])
def test_reading_holds_the_result_plus_one_slab_and_no_float64_copy(tmp_path, gz):
    import tracemalloc

    ct = np.random.default_rng(0).integers(-1000, 1000, (128, 128, 64)).astype(np.int16)
    vpath, _ = write_case(tmp_path, 0, ct, None, axcodes=("L", "P", "I"), gz=gz)
    vol = NiftiVolume(vpath)
    tracemalloc.start()
    arr = vol.read(slab_mib=0.25)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_array_equal(arr, ct)
    # float32 result = 4 bytes/voxel; a float64 copy would add 8 more.
    limit = 5.5 if not gz else 7.0
    assert peak < arr.size * limit, f"peak {peak / arr.size:.1f} bytes per voxel"


def test_axial_slices_of_a_read_volume_are_contiguous(tmp_path):
    ct, _ = anatomy()
    vpath, _ = write_case(tmp_path, 0, ct, None, axcodes=("S", "R", "A"))
    arr = read_nii(vpath)
    assert arr[:, :, 3].flags["C_CONTIGUOUS"]
