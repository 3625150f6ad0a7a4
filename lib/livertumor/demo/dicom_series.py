"""Synthetic CT series as DICOM files, written from a volume and its affine.

For trying the DICOM commands on the demo cases (``python -m livertumor demo-dicom``) and for
the tests of :mod:`livertumor.data.dicom`: one single-frame CT Image Storage file per slice,
with the geometry of the Image Plane Module (DICOM PS3.3 C.7.6.2) computed from the affine, so
that reading the series back gives the volume's own voxels and world coordinates. The patient
is made up ("DEMO^SYNTHETIC"): no file holds patient data.

Options mimic what real exports do to a reader: files named in random order with random
InstanceNumbers (``shuffle``), a compressed transfer syntax (``transfer_syntax``), and any
stored orientation of the array (feet-first, slices from the head down, oblique planes) by
passing a flipped or rotated (array, affine) pair.
"""

from __future__ import annotations

import copy
import datetime
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..data.dicom import CT_IMAGE_STORAGE, _pydicom
from ..data.volumes import NiftiVolume

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _uid(seed: str | None) -> str:
    """A UID: derived from ``seed`` when given (the same files for the same input)."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[seed]) if seed is not None else generate_uid()


def _series_template(patient_id: str, series_description: str, uids: dict,
                     orientation: np.ndarray, spacing: list, thickness: float,
                     shape: tuple[int, int], signed: bool, intercept: int):
    """The attributes every file of the series shares (patient, study, series, plane, pixel
    format); the writer adds the instance, its position and its pixels."""
    from pydicom.dataset import Dataset

    today = datetime.date(2026, 1, 1).strftime("%Y%m%d")
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.PatientName, ds.PatientID = "DEMO^SYNTHETIC", patient_id
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = uids["frame"], ""
    ds.StudyID, ds.StudyDate, ds.StudyTime = "1", today, "120000"
    ds.SeriesDate, ds.ContentDate, ds.ContentTime = today, today, "120000"
    ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
    ds.StudyDescription, ds.SeriesDescription = "synthetic abdomen CT", series_description
    ds.Modality, ds.Manufacturer, ds.SeriesNumber = "CT", "livertumor demo", 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PatientPosition = "FFS" if orientation[0] < 0 else "HFS"  # rows run to the right
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
    ds.PixelSpacing = [f"{v:.6f}" for v in spacing]
    ds.SliceThickness = f"{thickness:.4f}"
    ds.KVP = "120"
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = int(signed)
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = str(intercept), "1", "HU"
    ds.WindowCenter, ds.WindowWidth = "60", "400"
    return ds


def write_dicom_series(
    hu: np.ndarray,
    affine: np.ndarray,
    folder: str | Path,
    *,
    series_description: str = "synthetic CT",
    patient_id: str = "DEMO-0",
    uid_seed: str | None = None,
    transfer_syntax: str | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> list[Path]:
    """Write a volume as one DICOM file per slice of its last axis.

    Parameters
    ----------
    hu : (rows, columns, slices) Hounsfield units; whole numbers are written exactly
        (16-bit, RescaleIntercept -1024 or 0), anything else is rounded
    affine : (4, 4) voxel-to-world RAS+ affine (mm) of ``hu``; its third column must be
        perpendicular to the first two for a series a reader accepts (tests pass others on
        purpose)
    folder : created; must not hold files already
    series_description, patient_id : written into the files
    uid_seed : derive the study, series and instance UIDs from this string (same input, same
        files); random UIDs when None
    transfer_syntax : a pydicom UID (e.g. ``pydicom.uid.JPEG2000Lossless``); default Explicit
        VR Little Endian (uncompressed)
    shuffle : name the files and number the instances in a random order (``seed``)

    Returns
    -------
    The paths written, in slice order of ``hu``'s last axis.
    """
    _pydicom()  # a clear error without the dicom extra
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder}: not empty")
    hu = np.asarray(hu)
    rows, cols, n = hu.shape
    lps = _RAS_TO_LPS @ np.asarray(affine, np.float64)
    col_step, row_step = lps[:3, 0], lps[:3, 1]  # next row / next column
    spacing = [float(np.linalg.norm(col_step)), float(np.linalg.norm(row_step))]
    orientation = np.concatenate([row_step / spacing[1], col_step / spacing[0]])
    values = np.round(hu).astype(np.int32)
    signed = values.min() < -1024
    intercept = 0 if signed else -1024
    stored = (values - intercept).astype(np.int16 if signed else np.uint16)
    seed_of = (lambda what: None) if uid_seed is None else (lambda what: f"{uid_seed}/{what}")
    uids = {w: _uid(seed_of(w)) for w in ("study", "series", "frame")}
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    thickness = float(abs(np.cross(orientation[:3], orientation[3:]) @ lps[:3, 2]))
    template = _series_template(patient_id, series_description, uids, orientation, spacing,
                                thickness, (rows, cols), signed, intercept)
    tmp = Path(tempfile.mkdtemp(prefix=".dicom-", dir=folder.parent if folder.parent.exists()
                                else None))
    paths = []
    for k in range(n):
        ds = copy.deepcopy(template)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        ds.file_meta.MediaStorageSOPInstanceUID = _uid(seed_of(f"image/{k}"))
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.InstanceNumber = int(order[k]) + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in lps[:3, :3] @ [0, 0, k] + lps[:3, 3]]
        frame = np.ascontiguousarray(stored[:, :, k])
        ds.PixelData = frame.tobytes()
        if transfer_syntax is not None:
            ds.compress(transfer_syntax, frame)
        path = tmp / f"IM{int(order[k]):05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(folder / path.name)
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        shutil.move(tmp / path.name, path)
    tmp.rmdir()
    return paths


def write_demo_series(volume_path: str | Path, folder: str | Path, **kw) -> list[Path]:
    """A NIfTI CT (a demo case) as a DICOM series in the radiological convention (rows from
    anterior to posterior, columns from the patient's right to left, head-first), with the
    same world coordinates as the file. ``kw`` goes to :func:`write_dicom_series`."""
    vol = NiftiVolume(volume_path)
    g = vol.geometry
    kw.setdefault("uid_seed", f"livertumor-demo/{Path(volume_path).name}")
    kw.setdefault("series_description", f"synthetic CT from {Path(volume_path).name}")
    return write_dicom_series(vol.read(np.float32), g.canonical_affine, folder, **kw)


def write_demo_study(folder: str | Path, case_id: int, seed: int = 0, size: int = 256) -> Path:
    """A synthetic patient that is not in the demo dataset, as a DICOM CT series: the
    "new study" of the report. Generated like the demo's cases (``make_case``) with an id
    beyond them; skipped when ``folder`` already holds files.

    Returns
    -------
    ``folder``
    """
    from .generator import make_case

    folder = Path(folder)
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    case = make_case(case_id, seed, size)
    write_dicom_series(case.ct, case.affine, folder, shuffle=True, seed=seed,
                       uid_seed=f"livertumor-demo-study/{case_id}/{seed}/{size}",
                       patient_id=f"DEMO-{case_id}",
                       series_description=f"synthetic abdomen CT, {case.phase['name']} phase")
    return folder
