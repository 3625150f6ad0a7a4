"""Reading a CT series stored as DICOM files, in the package's canonical orientation.

A clinical scan comes as a folder of DICOM files, one file per axial slice, often with other
series beside it. :class:`DicomVolume` reads one CT series from such a folder and presents it
exactly as :class:`~.volumes.NiftiVolume` presents a NIfTI file: the same ``('P', 'L', 'S')``
Hounsfield array and a :class:`~.volumes.Geometry` with a RAS+ affine, so that every later
step (inference, the cascade, scoring, figures, the report) is unchanged, and a label map is
written back with :func:`~.volumes.write_like` as a NIfTI file on the series' grid (or as a
DICOM-SEG object with :func:`.dicom_seg.write_dicom_seg`).

Reading rules (DICOM PS3.3 C.7.6.2, Image Plane Module, and C.11.1, Modality LUT Module):

- Files are found at any depth; only DICOM Part 10 files (the ``DICM`` marker after the
  128-byte preamble) are read, other files (a README, a DICOMDIR index) are passed over.
- Slices are ordered by their position along the slice normal (the cross product of the two
  direction cosines of Image Orientation (Patient)), never by file name or InstanceNumber.
- Hounsfield units are ``RescaleSlope * stored + RescaleIntercept``, per file.
- The slice spacing comes from the positions, never from SliceThickness (which is the
  reconstructed thickness and may differ from the spacing).
- DICOM's patient coordinates are LPS+ (x to the patient's left, y to posterior, z to the
  head); the affine is turned into nibabel's RAS+ by negating x and y.

Refused, each with a :class:`DicomReadError` naming the folder or file and the problem:
several series without a chosen one, a modality other than CT, slices of different size,
spacing or orientation, a gap (missing slices), non-uniform spacing beyond
:data:`SPACING_TOLERANCE`, gantry tilt (the stack is not perpendicular to its slices, beyond
:data:`TILT_TOLERANCE_DEG`), multi-frame images, a truncated or unreadable file, a file without
pixel data, and a compressed transfer syntax for which no decoder is installed.

Compressed transfer syntaxes are decoded by pydicom's own decoders (RLE Lossless, deflate)
and by the pinned plugins of the ``dicom`` extra: pylibjpeg-libjpeg (JPEG baseline, extended
and lossless), pylibjpeg-openjpeg (JPEG 2000, HTJ2K), pyjpegls (JPEG-LS).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation

from ..errors import DicomReadError
from .volumes import NiftiVolume, _geometry, save_atomic

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
"""SOP Class UID of (single-frame) CT Image Storage."""

SPACING_TOLERANCE = 0.01
"""Largest relative difference between a slice step and the median step (1 %)."""

TILT_TOLERANCE_DEG = 0.1
"""Largest angle between the stack direction and the slices' normal (degrees)."""

ORIENTATION_TOLERANCE = 1e-4
"""Largest difference between two files' direction cosines."""

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# What a report may show about a study: no patient name, birth date or address.
REPORT_IDENTIFIERS = ("PatientID", "AccessionNumber", "StudyDate", "StudyDescription",
                      "SeriesNumber", "SeriesDescription", "Modality", "Manufacturer")


def _pydicom():
    try:
        import pydicom
    except ImportError:  # pragma: no cover - the dicom extra is part of make install
        raise DicomReadError("reading DICOM needs pydicom: pip install 'livertumor[dicom]'") \
            from None
    return pydicom


def _is_part10(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


@dataclass(frozen=True)
class SeriesInfo:
    """One series found in a folder.

    Attributes
    ----------
    uid : SeriesInstanceUID
    description : SeriesDescription ("" when absent)
    modality : Modality ("" when absent)
    files : the series' files, in the order they were found
    """

    uid: str
    description: str
    modality: str
    files: tuple[Path, ...] = field(repr=False)

    def line(self) -> str:
        """One line for an error message or a listing."""
        return (f"{self.uid}  {self.modality or '?'}  {len(self.files)} files  "
                f"{self.description or '(no description)'}")


def _headers(folder: Path) -> list[tuple[Path, object]]:
    """(path, header without pixel data) of every Part 10 file under ``folder``."""
    pydicom = _pydicom()
    if not folder.exists():
        raise DicomReadError("folder not found", folder)
    if not folder.is_dir():
        raise DicomReadError("not a folder (a DICOM series is read from its folder)", folder)
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if not _is_part10(path):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as err:  # pydicom raises several types on damaged files
            raise DicomReadError(f"unreadable DICOM file ({type(err).__name__}: {err})",
                                 path) from None
        if str(getattr(ds.file_meta, "MediaStorageSOPClassUID", "")) == "1.2.840.10008.1.3.10":
            continue  # a DICOMDIR index
        if not str(getattr(ds, "SeriesInstanceUID", "") or ""):
            raise DicomReadError("no SeriesInstanceUID: the header is incomplete (a truncated "
                                 "file?) or not that of an image", path)
        out.append((path, ds))
    if not out:
        raise DicomReadError("no DICOM files (Part 10, with the DICM marker) found at any depth",
                             folder)
    return out


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """The series in a folder (any depth), largest first.

    Raises
    ------
    DicomReadError
        Missing folder, no DICOM file, an unreadable DICOM file.
    """
    groups: dict[str, list] = {}
    for path, ds in _headers(Path(folder)):
        groups.setdefault(str(getattr(ds, "SeriesInstanceUID", "")), []).append((path, ds))
    series = [SeriesInfo(uid, str(getattr(items[0][1], "SeriesDescription", "")),
                         str(getattr(items[0][1], "Modality", "")),
                         tuple(p for p, _ in items)) for uid, items in groups.items()]
    return sorted(series, key=lambda s: (-len(s.files), s.uid))


def _choose(folder: Path, headers: list, series_uid: str | None) -> list:
    groups: dict[str, list] = {}
    for path, ds in headers:
        groups.setdefault(str(getattr(ds, "SeriesInstanceUID", "")), []).append((path, ds))
    if series_uid is None and len(groups) == 1:
        return next(iter(groups.values()))
    if series_uid is not None and series_uid in groups:
        return groups[series_uid]
    listing = "\n".join("  " + s.line() for s in list_series(folder))
    if series_uid is None:
        raise DicomReadError(f"holds {len(groups)} series; choose one with --series UID "
                             f"(series_uid=...):\n{listing}", folder)
    raise DicomReadError(f"no series {series_uid}; the folder holds:\n{listing}", folder)


def _floats(ds, keyword: str, n: int, path: Path) -> np.ndarray:
    value = getattr(ds, keyword, None)
    try:
        arr = np.asarray([float(v) for v in value], np.float64)
    except (TypeError, ValueError):
        arr = np.empty(0)
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise DicomReadError(f"{keyword} is missing or malformed ({value!r}); the slice cannot "
                             "be placed in space", path)
    return arr


@dataclass
class _Plane:
    path: Path
    header: object
    position: np.ndarray  # ImagePositionPatient, LPS mm
    distance: float = 0.0  # along the normal


def _check_series(folder: Path, items: list) -> tuple[list[_Plane], np.ndarray, np.ndarray]:
    """Validate one series; return its planes in order along the normal, the direction
    cosines (row, column) and the pixel spacing (between rows, between columns)."""
    first_path, first = items[0]
    for path, ds in items:
        modality = str(getattr(ds, "Modality", ""))
        if modality != "CT":
            raise DicomReadError(f"modality {modality or '(none)'}, not CT: this package "
                                 "segments CT series only", path)
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            raise DicomReadError("a multi-frame (enhanced) image; only single-frame CT series "
                                 "are read", path)
    size = (int(getattr(first, "Rows", 0)), int(getattr(first, "Columns", 0)))
    cosines = _floats(first, "ImageOrientationPatient", 6, first_path)
    spacing = _floats(first, "PixelSpacing", 2, first_path)
    planes = []
    for path, ds in items:
        other = (int(getattr(ds, "Rows", 0)), int(getattr(ds, "Columns", 0)))
        if other != size:
            raise DicomReadError(f"slice of {other[0]}x{other[1]} pixels in a series of "
                                 f"{size[0]}x{size[1]} ({first_path.name})", path)
        if np.abs(_floats(ds, "ImageOrientationPatient", 6, path) - cosines).max() \
                > ORIENTATION_TOLERANCE:
            raise DicomReadError(f"ImageOrientationPatient differs from that of "
                                 f"{first_path.name}: the slices are not parallel", path)
        if np.abs(_floats(ds, "PixelSpacing", 2, path) - spacing).max() > 1e-4:
            raise DicomReadError(f"PixelSpacing differs from that of {first_path.name}", path)
        planes.append(_Plane(path, ds, _floats(ds, "ImagePositionPatient", 3, path)))
    row, col = cosines[:3], cosines[3:]
    normal = np.cross(row, col)
    if abs(np.linalg.norm(normal) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise DicomReadError(f"ImageOrientationPatient {cosines.tolist()} is not two "
                             "orthogonal unit vectors", first_path)
    if len(planes) < 2:
        raise DicomReadError("the series has one slice; a volume needs at least two", folder)
    for p in planes:
        p.distance = float(p.position @ normal)
    planes.sort(key=lambda p: p.distance)
    _check_stack(folder, planes, normal)
    return planes, cosines, spacing


def _check_stack(folder: Path, planes: list[_Plane], normal: np.ndarray) -> None:
    """Duplicates, gaps, non-uniform spacing and gantry tilt, from the positions alone."""
    d = np.diff([p.distance for p in planes])
    k = int(np.argmin(d))
    if d[k] < 1e-3:
        raise DicomReadError(f"two slices at the same position ({planes[k].path.name} and "
                             f"{planes[k + 1].path.name}): two acquisitions mixed in one "
                             "series?", folder)
    step = float(np.median(d))
    k = int(np.argmax(d))
    if d[k] > 1.5 * step:
        missing = int(round(d[k] / step)) - 1
        raise DicomReadError(
            f"a gap of {d[k]:.2f} mm between {planes[k].path.name} and "
            f"{planes[k + 1].path.name} (spacing {step:.3f} mm): about {missing} slice(s) "
            "missing", folder)
    worst = int(np.argmax(np.abs(d - step)))
    if abs(d[worst] - step) > SPACING_TOLERANCE * step + 1e-3:
        raise DicomReadError(
            f"non-uniform slice spacing: {d[worst]:.3f} mm between {planes[worst].path.name} "
            f"and {planes[worst + 1].path.name}, {step:.3f} mm elsewhere (tolerance "
            f"{100 * SPACING_TOLERANCE:g} %)", folder)
    stack = planes[-1].position - planes[0].position
    along = float(stack @ normal)
    tilt = float(np.degrees(np.arctan2(np.linalg.norm(stack - along * normal), abs(along))))
    if tilt > TILT_TOLERANCE_DEG:
        raise DicomReadError(f"gantry tilt: the slices are stacked {tilt:.2f} degrees off their "
                             "normal (an oblique stack); resample the series to an orthogonal "
                             "grid first", folder)


def _hu_frame(path: Path) -> np.ndarray:
    """Hounsfield units of one file, float32 (rows, columns)."""
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(path)
    except Exception as err:
        raise DicomReadError(f"unreadable DICOM file ({type(err).__name__}: {err})",
                             path) from None
    if "PixelData" not in ds:
        raise DicomReadError("no pixel data in the file", path)
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        stored = ds.pixel_array
    except NotImplementedError:
        raise DicomReadError(
            f"transfer syntax {syntax.name} ({syntax}) cannot be decoded: no decoder for it is "
            "installed (the dicom extra decodes RLE, JPEG, JPEG-LS and JPEG 2000)",
            path) from None
    except Exception as err:  # truncated data, broken codestreams
        raise DicomReadError(f"pixel data cannot be decoded, the file is truncated or corrupt "
                             f"({syntax.name}; {type(err).__name__}: {err})", path) from None
    if stored.shape != (int(ds.Rows), int(ds.Columns)):
        raise DicomReadError(f"pixel data of shape {stored.shape}, not one grey slice of "
                             f"{ds.Rows}x{ds.Columns}", path)
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    return stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)


@dataclass(frozen=True)
class DicomSeries:
    """One CT series, checked and ordered.

    Attributes
    ----------
    folder : the folder it was read from
    uid : SeriesInstanceUID
    headers : the files' headers (pydicom Datasets without pixel data), in slice order along
        the normal; frame ``k`` of the stored array below is ``headers[k]``
    paths : the files, in the same order
    affine : (4, 4) float64 voxel-to-world (RAS+, mm) of the stored array
        ``(rows, columns, slices)``: rows along the column direction cosine, columns along the
        row direction cosine (DICOM's naming), slices along the normal
    """

    folder: Path
    uid: str
    headers: tuple = field(repr=False)
    paths: tuple[Path, ...] = field(repr=False)
    affine: np.ndarray = field(repr=False)

    def identifiers(self) -> dict[str, str]:
        """The study and series identifiers a report may show (:data:`REPORT_IDENTIFIERS`):
        no patient name, birth date or address."""
        ds = self.headers[0]
        out = {k: str(getattr(ds, k)) for k in REPORT_IDENTIFIERS
               if str(getattr(ds, k, "") or "")}
        date = out.get("StudyDate", "")
        if len(date) == 8 and date.isdigit():  # DICOM DA: YYYYMMDD
            out["StudyDate"] = f"{date[:4]}-{date[4:6]}-{date[6:]}"
        return out

    @property
    def case_id(self) -> str:
        """A name for files and figures that holds no patient data: ``series-`` and the first
        8 hex digits of the SHA-256 of the SeriesInstanceUID."""
        return "series-" + hashlib.sha256(self.uid.encode()).hexdigest()[:8]


def read_series_headers(folder: str | Path, series_uid: str | None = None) -> DicomSeries:
    """Find, choose and check one CT series (headers only; no pixel data is decoded).

    Raises
    ------
    DicomReadError
        Every refusal of the module's reading rules, naming the folder or the file.
    """
    folder = Path(folder)
    items = _choose(folder, _headers(folder), series_uid)
    planes, cosines, spacing = _check_series(folder, items)
    row, col = cosines[:3], cosines[3:]
    lps = np.eye(4)
    lps[:3, 0] = col * spacing[0]  # next row: along the column cosine, PixelSpacing[0] apart
    lps[:3, 1] = row * spacing[1]  # next column: along the row cosine, PixelSpacing[1] apart
    lps[:3, 2] = (planes[-1].position - planes[0].position) / (len(planes) - 1)
    lps[:3, 3] = planes[0].position
    return DicomSeries(folder, str(getattr(planes[0].header, "SeriesInstanceUID", "")),
                       tuple(p.header for p in planes), tuple(p.path for p in planes),
                       _LPS_TO_RAS @ lps)


class DicomVolume(NiftiVolume):
    """A CT series from a DICOM folder, with the interface of :class:`~.volumes.NiftiVolume`.

    The series is decoded once, on opening, into an array on its own grid (int16 when every
    Hounsfield value is a whole number in int16's range, else float32); ``geometry`` describes
    that grid (``geometry.path`` is the folder), ``raw`` / ``read`` / ``hu_slice`` give the
    canonical Hounsfield array, and ``series`` keeps the headers for a DICOM-SEG.

    Parameters
    ----------
    folder : a folder holding the series' files (at any depth)
    series_uid : the SeriesInstanceUID to read when the folder holds several series
    """

    def __init__(self, folder: str | Path, series_uid: str | None = None):
        self.series = read_series_headers(folder, series_uid)
        frames = np.stack([_hu_frame(p) for p in self.series.paths], axis=-1)
        if not np.all(np.isfinite(frames)):
            raise DicomReadError("the series holds NaN or infinite values", self.series.folder)
        whole = np.all(frames == np.round(frames)) and frames.min() >= -32768 \
            and frames.max() <= 32767
        stored = frames.astype(np.int16) if whole else frames
        img = nib.Nifti1Image(stored, self.series.affine)
        img.set_qform(self.series.affine, code=1)  # scanner coordinates
        img.set_sform(self.series.affine, code=1)
        img.header.set_slope_inter(1.0, 0.0)
        self.path, self._img = self.series.folder, img
        self.geometry = _geometry(self.path, img)
        self.slope = self.inter = None
        self._raw = apply_orientation(stored, self.geometry._to_canonical)

    def raw(self) -> np.ndarray:
        """Hounsfield units (int16 or float32), canonical: a view of the decoded series."""
        return self._raw

    def read(self, dtype: np.dtype = np.float32, slab_mib: float = 16.0) -> np.ndarray:
        """The whole series in Hounsfield units, canonical orientation; each axial slice
        C-contiguous (as :meth:`NiftiVolume.read`). ``slab_mib`` is accepted and unused."""
        rows, cols, n_slices = self.geometry.canonical_shape
        buf = np.empty((n_slices, rows, cols), dtype=np.dtype(dtype))
        out = buf.transpose(1, 2, 0)
        out[...] = self._raw
        return out

    def to_nifti(self, out_path: str | Path) -> Path:
        """Write the series as a NIfTI file on its own grid, atomically."""
        return save_atomic(self._img, out_path)

    def __repr__(self) -> str:
        g = self.geometry
        return (f"DicomVolume({str(self.path)!r}, series={self.series.uid}, "
                f"canonical_shape={g.canonical_shape}, "
                f"spacing={tuple(round(s, 3) for s in g.spacing)})")


def read_dicom_series(folder: str | Path, series_uid: str | None = None,
                      dtype: np.dtype = np.float32) -> np.ndarray:
    """Read one CT series in Hounsfield units, in the canonical ``('P', 'L', 'S')`` orientation.

    The DICOM counterpart of :func:`~.volumes.read_nii`: the same scan stored as NIfTI gives
    the same array, and ``DicomVolume(folder).geometry`` the same world grid.

    Parameters
    ----------
    folder : a folder (any depth) holding the series
    series_uid : SeriesInstanceUID; needed when the folder holds several series
    dtype : numpy dtype, default float32

    Returns
    -------
    ndarray, ``dtype``, shape (rows, columns, slices)

    Raises
    ------
    DicomReadError
        See the module's reading rules.
    """
    return DicomVolume(folder, series_uid).read(dtype)


def convert_dicom(folder: str | Path, out_path: str | Path,
                  series_uid: str | None = None) -> Path:
    """Write one CT series as a NIfTI file (int16 Hounsfield units where they are whole
    numbers) with its affine, so that it can join a LiTS-layout folder. Nothing is written
    when the series is refused."""
    return DicomVolume(folder, series_uid).to_nifti(out_path)


def open_volume(path: str | Path, series_uid: str | None = None) -> NiftiVolume:
    """A :class:`DicomVolume` for a folder, a :class:`~.volumes.NiftiVolume` for a file."""
    path = Path(path)
    if path.is_dir():
        return DicomVolume(path, series_uid)
    if series_uid is not None:
        raise DicomReadError("a series UID was given, but this is a file, not a DICOM folder",
                             path)
    return NiftiVolume(path)
