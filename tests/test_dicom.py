"""DICOM in and out: series written with pydicom from volumes of known geometry read back
voxel for voxel as their NIfTI twins, convert, DICOM-SEG over its series, and every refusal."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGLSLossless

from livertumor import LiverTumorError, read_mask, read_nii, segment
from livertumor.data.dicom import (
    DicomReadError,
    DicomVolume,
    convert_dicom,
    list_series,
    open_volume,
    read_dicom_series,
)
from livertumor.data.dicom_seg import SEGMENTS, read_dicom_seg_labels, write_dicom_seg
from livertumor.data.volumes import NiftiVolume, canonical_affine_for, check_same_grid
from livertumor.demo.dicom_series import write_dicom_series
from livertumor.inference import PostProcessing, write_cascade

from conftest import ORIGIN, anatomy, band_model_dir, cascade_volume, write_case

SPACING = (0.7, 0.8, 2.5)


def _rotation_z(degrees: float) -> np.ndarray:
    t = np.radians(degrees)
    r = np.eye(4)
    r[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    return r


def _stored(variant: str, ct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(array, RAS affine) of the same anatomy stored as a scanner might write it."""
    affine = canonical_affine_for(SPACING, ORIGIN)
    if variant in ("head_first", "shuffled", "compressed"):
        return ct, affine  # rows A->P, columns R->L, slices feet->head
    flip = np.eye(4)
    if variant == "feet_first":  # columns run from the patient's left to right
        flip[1, 1], flip[1, 3] = -1, ct.shape[1] - 1
        return ct[:, ::-1], affine @ flip
    if variant == "head_to_feet":  # slices stored from the head down
        flip[2, 2], flip[2, 3] = -1, ct.shape[2] - 1
        return ct[:, :, ::-1], affine @ flip
    if variant == "oblique":  # the slice planes turned 15 degrees about the body axis
        return ct, _rotation_z(15) @ affine
    raise ValueError(variant)


VARIANTS = ["head_first", "feet_first", "head_to_feet", "shuffled", "oblique", "compressed"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_series_reads_as_its_nifti_twin_voxel_for_voxel(variant, tmp_path):
    ct, _ = anatomy(shape=(24, 20, 9))
    stored, affine = _stored(variant, ct)
    nifti = tmp_path / "volume.nii"
    img = nib.Nifti1Image(np.ascontiguousarray(stored), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, nifti)
    write_dicom_series(stored, affine, tmp_path / "dicom", shuffle=variant == "shuffled",
                       transfer_syntax=JPEGLSLossless if variant == "compressed" else None)
    if variant == "compressed":
        ds = pydicom.dcmread(next((tmp_path / "dicom").iterdir()))
        assert ds.file_meta.TransferSyntaxUID == JPEGLSLossless
    dicom = DicomVolume(tmp_path / "dicom")
    reference = NiftiVolume(nifti)
    check_same_grid(reference.geometry, dicom.geometry)  # same world grid, canonical
    np.testing.assert_allclose(dicom.geometry.canonical_affine,
                               reference.geometry.canonical_affine, atol=1e-4)
    hu = read_dicom_series(tmp_path / "dicom")
    assert hu.dtype == np.float32 and np.array_equal(hu, read_nii(nifti))
    if variant != "oblique":  # the anatomy itself, in the canonical orientation
        assert np.array_equal(hu, ct)


def test_convert_gives_back_the_series_and_its_world_grid(tmp_path):
    ct, mask = anatomy(shape=(24, 20, 9))
    vpath, _ = write_case(tmp_path / "lits", 0, ct, mask, axcodes=("L", "A", "S"))
    source = NiftiVolume(vpath)
    write_dicom_series(source.read(), source.geometry.canonical_affine, tmp_path / "dicom",
                       shuffle=True)
    out = convert_dicom(tmp_path / "dicom", tmp_path / "volume-0.nii.gz")
    back = NiftiVolume(out)
    assert back.stored_dtype == np.int16
    check_same_grid(source.geometry, back.geometry)
    assert np.array_equal(read_nii(out), read_nii(vpath))
    assert np.array_equal(read_nii(out), read_dicom_series(tmp_path / "dicom"))
    # the converted file takes the original's mask: a LiTS-layout case again
    assert np.array_equal(read_mask(tmp_path / "lits/segmentations/segmentation-0.nii",
                                    like=back.geometry), mask)


def test_a_dicom_seg_puts_each_segment_on_the_source_frames_and_pixels(tmp_path):
    import highdicom as hd

    ct, mask = anatomy(shape=(24, 20, 9))
    stored, affine = _stored("feet_first", ct)  # in-plane flip: frame pixels must follow
    write_dicom_series(stored, affine, tmp_path / "dicom", shuffle=True)
    volume = DicomVolume(tmp_path / "dicom")
    labels = mask.copy()
    labels[:, :, 0] = 0  # an empty frame: omitted from the SEG, still read back as zeros
    path = write_dicom_seg(labels, volume, tmp_path / "seg.dcm", algorithm="test", version="1")
    seg = hd.seg.segread(path)
    assert seg.SeriesInstanceUID != volume.series.uid
    referenced = {str(item.ReferencedSOPInstanceUID) for series in
                  seg.ReferencedSeriesSequence if series.SeriesInstanceUID == volume.series.uid
                  for item in series.ReferencedInstanceSequence}
    assert referenced == {str(h.SOPInstanceUID) for h in volume.series.headers}
    descriptions = {int(s.SegmentNumber): s for s in seg.SegmentSequence}
    for spec in SEGMENTS:
        s = descriptions[spec["number"]]
        assert s.SegmentLabel == spec["label"]
        assert s.SegmentedPropertyTypeCodeSequence[0].CodeValue == spec["type"][0]
        assert s.SegmentedPropertyCategoryCodeSequence[0].CodeValue == spec["category"][0]
        assert s.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
        rgb = hd.color.CIELabColor.from_dicom_value(s.RecommendedDisplayCIELabValue).to_rgb()
        assert np.abs(np.subtract(rgb, spec["rgb"])).max() <= 2
    assert np.array_equal(read_dicom_seg_labels(path, volume), labels)
    # frame by frame, against the files themselves: each source image's own pixels
    stored_labels = volume.geometry.from_canonical(labels)
    for k, header in enumerate(volume.series.headers):
        for spec in SEGMENTS:
            frame = seg.get_pixels_by_source_instance(
                [str(header.SOPInstanceUID)], segment_numbers=[spec["number"]],
                assert_missing_frames_are_empty=True)[0, :, :, 0]
            assert np.array_equal(frame, stored_labels[:, :, k] == spec["number"])
    # read once more without highdicom's reader: the frames' own source references
    from livertumor.viz.dicom_figures import dicom_seg_figure, read_seg_frames

    frames, colours = read_seg_frames(path)
    assert {n: label for n, (label, _) in colours.items()} == {1: "Liver", 2: "Liver tumor"}
    for k, header in enumerate(volume.series.headers):
        got = frames.get(str(header.SOPInstanceUID), {})
        for spec in SEGMENTS:
            want = stored_labels[:, :, k] == spec["number"]
            assert np.array_equal(got.get(spec["number"], np.zeros_like(want)), want)
    fig = dicom_seg_figure(path, tmp_path / "dicom", n_images=3)
    assert len(fig.axes) == 3 and all("Liver" in ax.get_title() for ax in fig.axes)


def test_segment_reads_a_dicom_folder_and_writes_nifti_and_dicom_seg(tmp_path):
    liver = band_model_dir(tmp_path / "liver")
    tumor = band_model_dir(tmp_path / "tumor", context=1, roi={"margin_mm": 4.0})
    cascade = write_cascade(tmp_path / "cascade", liver, tumor,
                            PostProcessing(largest_liver=True, min_tumor_ml=0.05))
    ct, truth = cascade_volume()
    vpath, _ = write_case(tmp_path / "lits", 0, ct, truth, spacing=(1.5, 1.5, 2.5))
    stored, affine = ct[:, ::-1, ::-1], canonical_affine_for((1.5, 1.5, 2.5), ORIGIN)
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    flip[1, 3], flip[2, 3] = ct.shape[1] - 1, ct.shape[2] - 1
    write_dicom_series(stored, affine @ flip, tmp_path / "dicom" / "study" / "ct", shuffle=True)
    from_nifti = segment(cascade.parent, vpath, tmp_path / "a.nii.gz", progress=False)
    from_dicom = segment(cascade.parent, tmp_path / "dicom", tmp_path / "b.nii.gz",
                         progress=False, dicom_seg_path=tmp_path / "b.dcm")
    labels = read_mask(from_nifti)
    assert (labels == 2).any() and (labels == 1).any()
    assert np.array_equal(read_mask(from_dicom), labels)  # same labels, canonical
    volume = DicomVolume(tmp_path / "dicom")
    assert nib.load(from_dicom).shape == volume.geometry.shape
    np.testing.assert_allclose(nib.load(from_dicom).affine, volume.geometry.affine)
    assert np.array_equal(read_dicom_seg_labels(tmp_path / "b.dcm", volume), labels)
    with pytest.raises(LiverTumorError, match="DICOM-SEG output needs a DICOM series"):
        segment(cascade.parent, vpath, tmp_path / "c.nii.gz", dicom_seg_path=tmp_path / "c.dcm")
    assert not (tmp_path / "c.nii.gz").exists() and not (tmp_path / "c.dcm").exists()


def test_convert_and_demo_dicom_commands(tmp_path):
    ct, mask = anatomy(shape=(24, 20, 9))
    vpath, _ = write_case(tmp_path / "lits", 0, ct, mask)
    run = [sys.executable, "-m", "livertumor"]
    env = {"PATH": "/usr/bin:/bin"}
    res = subprocess.run(run + ["demo-dicom", str(vpath), str(tmp_path / "dicom"), "--shuffle"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert len(list((tmp_path / "dicom").iterdir())) == 9
    out = tmp_path / "back.nii.gz"
    res = subprocess.run(run + ["convert", str(tmp_path / "dicom"), str(out)],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert np.array_equal(read_nii(out), ct)
    write_dicom_series(ct, canonical_affine_for(SPACING, ORIGIN), tmp_path / "dicom" / "more",
                       series_description="second series")
    res = subprocess.run(run + ["convert", str(tmp_path / "dicom"), str(tmp_path / "x.nii")],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "holds 2 series" in res.stderr
    assert "second series" in res.stderr and "9 files" in res.stderr
    assert not (tmp_path / "x.nii").exists()
    uid = list_series(tmp_path / "dicom")[0].uid
    res = subprocess.run(run + ["convert", str(tmp_path / "dicom"), str(tmp_path / "x.nii"),
                                "--series", uid], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr


# -- refusals ---------------------------------------------------------------------------------

@pytest.fixture
def series(tmp_path):
    """A valid 9-slice series (files in slice order) and its folder."""
    ct, _ = anatomy(shape=(24, 20, 9))
    paths = write_dicom_series(ct, canonical_affine_for(SPACING, ORIGIN), tmp_path / "series")
    return tmp_path / "series", paths


def _edit(path, **values):
    ds = pydicom.dcmread(path)
    for key, value in values.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path)


def _refused(folder, match, names=None):
    with pytest.raises(DicomReadError, match=match) as err:
        DicomVolume(folder)
    if names is not None:  # the message names the file(s)
        assert all(n in str(err.value) for n in names), str(err.value)
    out = folder.parent / "out.nii.gz"
    with pytest.raises(DicomReadError):
        convert_dicom(folder, out)
    assert not out.exists()
    return err.value


def test_mixed_series_are_refused_with_a_listing_unless_one_is_chosen(series, tmp_path):
    folder, _ = series
    ct, _ = anatomy(shape=(24, 20, 5), seed=1)
    write_dicom_series(ct, canonical_affine_for(SPACING, ORIGIN), folder / "sub" / "other",
                       series_description="arterial phase")
    err = _refused(folder, "holds 2 series; choose one with --series")
    assert "9 files" in str(err) and "5 files  arterial phase" in str(err)
    other = [s for s in list_series(folder) if s.description == "arterial phase"][0]
    assert DicomVolume(folder, other.uid).geometry.canonical_shape == (24, 20, 5)
    with pytest.raises(DicomReadError, match="no series 1.2.3"):
        DicomVolume(folder, "1.2.3")


def test_a_non_ct_modality_is_refused(series):
    folder, paths = series
    _edit(paths[4], Modality="MR")
    _refused(folder, "modality MR, not CT", [paths[4].name])


def test_slices_of_different_size_or_orientation_are_refused(series):
    folder, paths = series
    ds = pydicom.dcmread(paths[2])
    frame = ds.pixel_array[:, :18].copy()
    ds.Columns, ds.PixelData = 18, frame.tobytes()
    ds.save_as(paths[2])
    _refused(folder, "slice of 24x18 pixels in a series of 24x20", [paths[2].name])
    ds.Columns, ds.PixelData = 20, pydicom.dcmread(paths[3]).PixelData
    ds.ImageOrientationPatient = [0.99, 0.1411, 0, -0.1411, 0.99, 0]
    ds.save_as(paths[2])
    _refused(folder, "not parallel", [paths[2].name])


def test_a_missing_slice_is_refused(series):
    folder, paths = series
    paths[5].unlink()
    _refused(folder, r"a gap of 5.00 mm .* about 1 slice\(s\) missing",
             [paths[4].name, paths[6].name])


def test_non_uniform_spacing_is_refused(series):
    folder, paths = series
    position = [float(v) for v in pydicom.dcmread(paths[5]).ImagePositionPatient]
    _edit(paths[5], ImagePositionPatient=[position[0], position[1], position[2] + 0.6])
    _refused(folder, "non-uniform slice spacing")


def test_gantry_tilt_is_refused(tmp_path):
    ct, _ = anatomy(shape=(24, 20, 9))
    affine = canonical_affine_for(SPACING, ORIGIN)
    affine[1, 2] = 2.5 * np.tan(np.radians(12))  # each slice shifted along y: a tilted stack
    write_dicom_series(ct, affine, tmp_path / "tilted")
    _refused(tmp_path / "tilted", r"gantry tilt: the slices are stacked 12.00 degrees")


def test_truncated_unreadable_and_pixelless_files_are_refused(series):
    folder, paths = series
    data = paths[3].read_bytes()
    paths[3].write_bytes(data[: len(data) - 300])
    _refused(folder, "truncated or corrupt", [paths[3].name])
    paths[3].write_bytes(data[:200])  # cut inside the header
    _refused(folder, "header is incomplete", [paths[3].name])
    paths[3].write_bytes(data)
    _edit(paths[6], PixelData=None)
    _refused(folder, "no pixel data", [paths[6].name])


def test_a_syntax_without_a_decoder_is_named(series):
    from pydicom.encaps import encapsulate

    folder, paths = series
    ds = pydicom.dcmread(paths[1])
    # JPEG 2000 Part 2 multi-component: a standard syntax no installed plugin decodes
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.92"
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(28)])
    ds["PixelData"].VR = "OB"
    ds.save_as(paths[1], enforce_file_format=True)
    _refused(folder, r"transfer syntax JPEG 2000 Part 2 Multi-component Image Compression "
             r"\(Lossless Only\) \(1\.2\.840\.10008\.1\.2\.4\.92\) cannot be decoded",
             [paths[1].name])


def test_folders_without_dicom_and_other_files_beside_a_series(series, tmp_path):
    folder, _ = series
    (folder / "README.txt").write_text("not DICOM")
    assert DicomVolume(folder).geometry.canonical_shape == (24, 20, 9)  # passed over
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DicomReadError, match="no DICOM files"):
        DicomVolume(tmp_path / "empty")
    with pytest.raises(DicomReadError, match="folder not found"):
        DicomVolume(tmp_path / "nowhere")
    assert isinstance(open_volume(folder), DicomVolume)
    with pytest.raises(DicomReadError, match="not a DICOM folder"):
        open_volume(folder / "README.txt", series_uid="1.2")


def test_report_identifiers_hold_no_patient_name(series):
    folder, _ = series
    volume = DicomVolume(folder)
    ids = volume.series.identifiers()
    assert ids["PatientID"] == "DEMO-0" and ids["Modality"] == "CT"
    assert ids["StudyDate"] == "2026-01-01"
    text = json.dumps(ids)
    assert "SYNTHETIC" not in text and "PatientName" not in text
    assert volume.series.case_id.startswith("series-") and "DEMO" not in volume.series.case_id


def test_signed_pixels_and_per_file_rescale_give_hounsfield_units(tmp_path):
    ct, _ = anatomy(shape=(24, 20, 5))
    ct[:3] = -2048  # padding outside the field of view: stored signed, intercept 0
    paths = write_dicom_series(ct, canonical_affine_for(SPACING, ORIGIN), tmp_path / "signed")
    assert pydicom.dcmread(paths[0]).PixelRepresentation == 1
    assert np.array_equal(read_dicom_series(tmp_path / "signed"), ct)
    ds = pydicom.dcmread(paths[2])  # one file stores HU / 2 with slope 2, intercept -10
    hu = ds.pixel_array.astype(np.int32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    stored = np.round((hu + 10) / 2).astype(np.int16)
    ds.PixelData, ds.RescaleSlope, ds.RescaleIntercept = stored.tobytes(), "2", "-10"
    ds.save_as(paths[2])
    back = read_dicom_series(tmp_path / "signed")
    np.testing.assert_array_equal(back[:, :, 2], stored.astype(np.float32) * 2 - 10)
    assert np.array_equal(back[:, :, [0, 1, 3, 4]], ct[:, :, [0, 1, 3, 4]])
