"""Reading and writing NIfTI volumes in one fixed orientation.

Every array this package hands around is in the *canonical* orientation, nibabel axis codes
``('P', 'L', 'S')``:

* axis 0 (rows) runs from anterior to posterior,
* axis 1 (columns) runs from the patient's right to the patient's left,
* axis 2 (slices) runs from the feet to the head.

So ``arr[:, :, k]`` shown with ``matplotlib.pyplot.imshow`` is the radiological axial view
(anterior at the top, the patient's right on the image's left), whatever axis order and flips
the file was stored with. The orientation comes from the file's affine (nibabel's
``io_orientation``), never from the array order: the LiTS files are stored in several
orientations. :class:`Geometry` keeps the file's own grid so that results can be written back
onto it (:meth:`Geometry.from_canonical`, :func:`write_like`).

Convention source: nibabel's coordinate-system documentation ("RAS+" world; an axis code names
the direction in which the voxel index increases), ``nibabel.orientations``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

from ..atomic import atomic_path
from ..errors import GridMismatchError, LabelError, NiftiReadError

CANONICAL_AXCODES: tuple[str, str, str] = ("P", "L", "S")
"""Axis codes of every array the package returns: rows A->P, columns R->L, slices I->S."""

LABELS: dict[int, str] = {0: "background", 1: "liver", 2: "tumor"}
"""The LiTS label values."""

# Tolerances for "the same world grid" (mm). The 3x3 part holds direction x spacing; 1e-4 mm per
# voxel step drifts by at most 0.05 mm over 512 voxels. The origin may differ by float32 rounding.
GRID_ATOL_LINEAR_MM = 1e-4
GRID_ATOL_ORIGIN_MM = 1e-2

_CANONICAL_ORNT = axcodes2ornt(CANONICAL_AXCODES)


@dataclass(frozen=True, eq=False)
class Geometry:
    """Where a file's voxels lie, on disk and in the canonical orientation.

    Attributes
    ----------
    path : Path
        The file.
    shape : tuple of int
        Array shape as stored on disk (3 dimensions).
    affine : ndarray, float64, (4, 4)
        Voxel-to-world (RAS+, mm) affine of the stored array.
    axcodes : tuple of str
        nibabel axis codes of the stored array, e.g. ``('L', 'P', 'S')``.
    canonical_shape : tuple of int
        ``(rows, columns, slices)`` after reorientation to ``('P', 'L', 'S')``.
    canonical_affine : ndarray, float64, (4, 4)
        Voxel-to-world affine of the canonical array.
    spacing : tuple of float
        Voxel size in mm along (rows, columns, slices) of the canonical array.
    header : nibabel.Nifti1Header
        A copy of the file's header, used to write results back on the same grid.
    """

    path: Path
    shape: tuple[int, int, int]
    affine: np.ndarray
    axcodes: tuple[str, str, str]
    canonical_shape: tuple[int, int, int]
    canonical_affine: np.ndarray
    spacing: tuple[float, float, float]
    header: nib.Nifti1Header = field(repr=False)
    _to_canonical: np.ndarray = field(repr=False)
    _from_canonical: np.ndarray = field(repr=False)

    def to_canonical(self, arr: np.ndarray) -> np.ndarray:
        """Reorient an array stored on this file's grid to ``('P', 'L', 'S')``.

        Returns a view (flips and a transpose), no copy.
        """
        _check_shape(arr, self.shape, self.path)
        return apply_orientation(arr, self._to_canonical)

    def from_canonical(self, arr: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_canonical`: put a canonical array back in the file's axis order.

        ``geometry.from_canonical(geometry.to_canonical(a))`` equals ``a``. Returns a view.
        """
        _check_shape(arr, self.canonical_shape, self.path)
        return apply_orientation(arr, self._from_canonical)

    @property
    def identity_affine(self) -> bool:
        """True when the affine is the identity (spacing then reads as 1 mm, often wrongly)."""
        return bool(np.allclose(self.affine, np.eye(4)))

    @property
    def obliquity_deg(self) -> float:
        """Largest angle (degrees) between a voxel axis and the nearest world axis."""
        return float(np.degrees(np.max(np.abs(nib.affines.obliquity(self.affine)))))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (mm^3 / 1000)."""
        return float(np.prod(self.spacing)) / 1000.0


def _check_shape(arr: np.ndarray, shape: tuple[int, ...], path: Path) -> None:
    if tuple(arr.shape[:3]) != tuple(shape):
        raise GridMismatchError(f"array of shape {arr.shape} does not fit the grid {shape}", path)


def _load_image(path: str | Path) -> tuple[Path, nib.Nifti1Image]:
    """Open a NIfTI file (header only; data stays on disk) with named errors."""
    path = Path(path)
    if not path.exists():
        raise NiftiReadError("file not found", path)
    if path.is_dir():
        raise NiftiReadError("is a directory, not a NIfTI file", path)
    size = path.stat().st_size
    if size == 0:
        raise NiftiReadError("file is empty (0 bytes)", path)
    try:
        img = nib.load(path)
    except Exception as err:  # nibabel raises several types for unreadable files
        raise NiftiReadError(
            f"not a readable NIfTI file ({type(err).__name__}: {err})", path) from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise NiftiReadError(f"not a NIfTI file (nibabel reads it as {type(img).__name__})", path)
    shape = img.shape
    if len(shape) != 3:
        raise NiftiReadError(
            f"not 3-D: shape {shape}; expected one CT volume (rows, columns, slices)", path
        )
    if min(shape) == 0:
        raise NiftiReadError(f"empty volume: shape {shape}", path)
    if not path.name.endswith(".gz"):
        needed = int(img.dataobj.offset) + int(np.prod(shape)) * img.get_data_dtype().itemsize
        if size < needed:
            raise NiftiReadError(
                f"file is truncated: {size} bytes on disk, the header needs {needed}", path
            )
    return path, img


def _geometry(path: Path, img: nib.Nifti1Image) -> Geometry:
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise NiftiReadError(f"affine is singular or not finite:\n{affine}", path)
    shape = tuple(int(s) for s in img.shape)
    ornt = io_orientation(affine)
    to_canon = ornt_transform(ornt, _CANONICAL_ORNT)
    from_canon = ornt_transform(_CANONICAL_ORNT, ornt)
    canonical_shape = tuple(shape[int(ax)] for ax in np.argsort(to_canon[:, 0]))
    canonical_affine = affine @ inv_ornt_aff(to_canon, shape)
    spacing = tuple(float(s) for s in np.sqrt((canonical_affine[:3, :3] ** 2).sum(axis=0)))
    return Geometry(
        path=path,
        shape=shape,
        affine=affine,
        axcodes=tuple(nib.aff2axcodes(affine)),
        canonical_shape=canonical_shape,
        canonical_affine=canonical_affine,
        spacing=spacing,
        header=img.header.copy(),
        _to_canonical=to_canon,
        _from_canonical=from_canon,
    )


def read_geometry(path: str | Path) -> Geometry:
    """Read only the header of a NIfTI file and describe its grid.

    Raises
    ------
    NiftiReadError
        Missing, empty, not NIfTI, not 3-D, truncated (uncompressed files), singular affine.
    """
    path, img = _load_image(path)
    return _geometry(path, img)


class NiftiVolume:
    """An opened NIfTI file, presented in the canonical orientation and read lazily.

    Uncompressed ``.nii`` files are memory-mapped, so :meth:`hu_slice` touches one slice of
    the file; ``.nii.gz`` files are decompressed once, in their stored dtype (int16 for LiTS),
    on first access. Nothing is ever converted to float64.

    Parameters
    ----------
    path : str or Path
        A 3-D NIfTI file (``.nii`` or ``.nii.gz``).
    """

    def __init__(self, path: str | Path):
        self.path, self._img = _load_image(path)
        self.geometry = _geometry(self.path, self._img)
        # nibabel moves scl_slope / scl_inter from the loaded header onto the array proxy.
        slope = float(getattr(self._img.dataobj, "slope", 1.0))
        inter = float(getattr(self._img.dataobj, "inter", 0.0))
        self.slope = None if not np.isfinite(slope) or slope in (0.0, 1.0) else slope
        self.inter = None if not np.isfinite(inter) or inter == 0.0 else inter
        self._raw: np.ndarray | None = None

    @property
    def stored_dtype(self) -> np.dtype:
        """dtype of the values on disk (before scaling)."""
        return self._img.get_data_dtype()

    def raw(self) -> np.ndarray:
        """Stored values (unscaled), reoriented to canonical: a view, not a copy.

        Shape ``geometry.canonical_shape``, dtype ``stored_dtype``.
        """
        if self._raw is None:
            try:
                data = np.asanyarray(self._img.dataobj.get_unscaled())
            except Exception as err:  # gzip/zlib/mmap errors on damaged data
                raise NiftiReadError(
                    f"data cannot be read, the file is truncated or corrupt "
                    f"({type(err).__name__}: {err})",
                    self.path,
                ) from None
            self._raw = apply_orientation(data, self.geometry._to_canonical)
        return self._raw

    def _scale(self, stored: np.ndarray, dtype: np.dtype) -> np.ndarray:
        out = np.array(stored, dtype=dtype, order="C")
        if self.slope is not None:
            out *= out.dtype.type(self.slope)
        if self.inter is not None:
            out += out.dtype.type(self.inter)
        if np.issubdtype(self.stored_dtype, np.floating) or self.slope or self.inter:
            n_nan = int(np.count_nonzero(~np.isfinite(out)))
            if n_nan:
                raise NiftiReadError(
                    f"{n_nan} voxels are NaN or infinite; the volume cannot be used as is",
                    self.path,
                )
        return out

    def read(self, dtype: np.dtype = np.float32, slab_mib: float = 16.0) -> np.ndarray:
        """The whole volume in Hounsfield units, canonical orientation.

        The file is read in slabs of about ``slab_mib`` MiB along its stored last axis (forward
        reads only, so ``.nii.gz`` is decompressed once), each slab scaled and converted into
        the result: peak memory is the result plus one slab, and no float64 volume exists.
        Each axial slice ``out[:, :, k]`` is C-contiguous in memory (the array is a
        ``(slices, rows, columns)`` buffer seen through a transpose).

        Returns
        -------
        ndarray, ``dtype`` (float32 by default), shape (rows, columns, slices)
        """
        g = self.geometry
        rows, cols, n_slices = g.canonical_shape
        buf = np.empty((n_slices, rows, cols), dtype=np.dtype(dtype))
        out = buf.transpose(1, 2, 0)
        out_stored = g.from_canonical(out)  # the same memory, indexed like the file
        try:
            # keep_file_open: one open (gzip) stream for all slabs; without it nibabel reopens
            # the file per slab and a .nii.gz is decompressed from its start each time
            proxy = nib.load(self.path, mmap=False, keep_file_open=True).dataobj
            per_slab = max(1, int(slab_mib * 2**20) // max(1, g.shape[0] * g.shape[1] * 8))
            for start in range(0, g.shape[2], per_slab):
                stop = min(start + per_slab, g.shape[2])
                out_stored[:, :, start:stop] = proxy[:, :, start:stop]
        except Exception as err:  # gzip/zlib/short-read errors on damaged data
            raise NiftiReadError(
                f"data cannot be read, the file is truncated or corrupt "
                f"({type(err).__name__}: {err})",
                self.path,
            ) from None
        if np.issubdtype(self.stored_dtype, np.floating) or self.slope or self.inter:
            n_bad = int(np.count_nonzero(~np.isfinite(buf)))
            if n_bad:
                raise NiftiReadError(
                    f"{n_bad} voxels are NaN or infinite; the volume cannot be used as is",
                    self.path,
                )
        return out

    def hu_slice(self, k: int, dtype: np.dtype = np.float32) -> np.ndarray:
        """Axial slice ``k`` (0 = most inferior) in Hounsfield units, shape (rows, columns)."""
        return self._scale(self.raw()[:, :, k], np.dtype(dtype))

    def __repr__(self) -> str:
        g = self.geometry
        return (
            f"NiftiVolume({str(self.path)!r}, canonical_shape={g.canonical_shape}, "
            f"spacing={tuple(round(s, 3) for s in g.spacing)}, stored axcodes={g.axcodes})"
        )


def read_nii(path: str | Path, dtype: np.dtype = np.float32) -> np.ndarray:
    """Read a CT volume in Hounsfield units, in the canonical ``('P', 'L', 'S')`` orientation.

    Scaling (``scl_slope``, ``scl_inter``) is applied in ``dtype``; no float64 copy of the
    volume is made. The same anatomy stored in any axis order or flip gives the same array.

    Parameters
    ----------
    path : str or Path
        ``.nii`` or ``.nii.gz`` file holding one 3-D volume.
    dtype : numpy dtype, default float32

    Returns
    -------
    ndarray, float32, shape (rows, columns, slices)
        ``arr[:, :, k]`` is the radiological axial view of slice k (k from feet to head).

    Raises
    ------
    NiftiReadError
        Missing, empty, not NIfTI, truncated, not 3-D, or NaN/infinite voxels.

    Examples
    --------
    >>> ct = read_nii("data/raw/volume_pt1/volume-0.nii")  # doctest: +SKIP
    >>> ct.dtype, ct.ndim
    (dtype('float32'), 3)
    """
    return NiftiVolume(path).read(dtype)


def read_mask(path: str | Path, like: Geometry | None = None) -> np.ndarray:
    """Read a LiTS label map (0 background, 1 liver, 2 tumor) in the canonical orientation.

    Parameters
    ----------
    path : str or Path
        The segmentation file.
    like : Geometry, optional
        The volume's geometry; the mask must lie on the same world grid (after any axis
        permutation or flip), else :class:`GridMismatchError`.

    Returns
    -------
    ndarray, uint8, shape (rows, columns, slices)

    Raises
    ------
    NiftiReadError, GridMismatchError, LabelError
    """
    vol = NiftiVolume(path)
    if like is not None:
        check_same_grid(like, vol.geometry)
    raw = vol.raw()
    if vol.slope is not None or vol.inter is not None:
        raw = vol.read(np.float32)
    if np.issubdtype(raw.dtype, np.integer):
        lo, hi = int(raw.min()), int(raw.max())
        ok = lo >= 0 and hi <= 2
    else:
        ok = bool(np.all((raw == 0) | (raw == 1) | (raw == 2)))
    if not ok:
        bad = raw[(raw != 0) & (raw != 1) & (raw != 2)]
        values = np.unique(bad)
        shown = ", ".join(f"{v:g}" for v in values[:8]) + (" ..." if values.size > 8 else "")
        raise LabelError(
            f"unexpected label values {shown} in {bad.size} voxels; "
            "LiTS masks hold only 0 (background), 1 (liver), 2 (tumor)",
            vol.path,
        )
    return np.array(raw, dtype=np.uint8, order="C")


def grid_difference(reference: Geometry, other: Geometry) -> str | None:
    """Describe how ``other``'s canonical grid differs from ``reference``'s, or None if equal.

    Grids are compared after reorientation to canonical, so the same grid stored with another
    axis order or flips counts as equal. Tolerances: ``GRID_ATOL_LINEAR_MM`` on the
    direction-times-spacing part of the affine, ``GRID_ATOL_ORIGIN_MM`` on the origin.
    """
    if reference.canonical_shape != other.canonical_shape:
        return (
            f"shape {other.canonical_shape} (canonical) differs from the volume's "
            f"{reference.canonical_shape}"
        )
    a, b = reference.canonical_affine, other.canonical_affine
    if not np.allclose(a[:3, :3], b[:3, :3], rtol=0, atol=GRID_ATOL_LINEAR_MM):
        return (
            f"voxel axes/spacing differ from the volume's: spacing {np.round(other.spacing, 4)} "
            f"vs {np.round(reference.spacing, 4)} mm, axes {other.axcodes} vs {reference.axcodes}"
        )
    if not np.allclose(a[:3, 3], b[:3, 3], rtol=0, atol=GRID_ATOL_ORIGIN_MM):
        shift = float(np.linalg.norm(a[:3, 3] - b[:3, 3]))
        return f"grid origin is {shift:.3f} mm away from the volume's"
    return None


def check_same_grid(reference: Geometry, other: Geometry) -> None:
    """Raise :class:`GridMismatchError` (naming ``other``'s file) unless the grids agree."""
    diff = grid_difference(reference, other)
    if diff is not None:
        raise GridMismatchError(f"not on the grid of {reference.path.name}: {diff}", other.path)


def write_like(
    canonical: np.ndarray,
    like: Geometry,
    out_path: str | Path,
    dtype: np.dtype = np.uint8,
) -> Path:
    """Write a canonical array onto the original grid of ``like``'s file, atomically.

    The array is put back in the file's own axis order and written with the same shape,
    affine, qform and sform (and their codes) as the reference file, so it opens aligned with
    it in any viewer. The file appears under ``out_path`` only when complete.

    Parameters
    ----------
    canonical : ndarray, shape ``like.canonical_shape``
    like : Geometry
        Geometry of the reference file (from :func:`read_geometry` or ``NiftiVolume``).
    out_path : str or Path
        ``.nii`` or ``.nii.gz``.
    dtype : numpy dtype, default uint8 (label maps)
    """
    out_path = Path(out_path)
    data = np.asarray(like.from_canonical(canonical), dtype=dtype)
    header = like.header.copy()
    header.set_data_dtype(dtype)
    img = nib.Nifti1Image(data, like.affine, header=header)
    qform, qcode = like.header.get_qform(coded=True)
    sform, scode = like.header.get_sform(coded=True)
    img.set_qform(qform if qform is not None else like.affine, code=int(qcode or 0))
    img.set_sform(sform if sform is not None else like.affine, code=int(scode or 0))
    img.header.set_slope_inter(1.0, 0.0)
    save_atomic(img, out_path)
    return out_path


def save_atomic(img: nib.Nifti1Image, out_path: str | Path) -> Path:
    """``nibabel.save`` to a temporary name in the target folder, then rename into place."""
    out_path = Path(out_path)
    with atomic_path(out_path, keep_suffix=True) as tmp:  # nibabel compresses by the suffix
        nib.save(img, tmp)
    return out_path


def canonical_affine_for(spacing: tuple[float, float, float],
                         origin: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Affine of a canonical ``('P', 'L', 'S')`` array with the given voxel spacing (mm).

    Rows step towards posterior (-y), columns towards the patient's left (-x), slices towards
    the head (+z) in the RAS+ world.
    """
    sr, sc, ss = spacing
    affine = np.array(
        [[0.0, -sc, 0.0, origin[0]],
         [-sr, 0.0, 0.0, origin[1]],
         [0.0, 0.0, ss, origin[2]],
         [0.0, 0.0, 0.0, 1.0]]
    )
    return affine


def reorient_image(canonical: np.ndarray, affine: np.ndarray,
                   axcodes: tuple[str, str, str]) -> nib.Nifti1Image:
    """A NIfTI image holding a canonical array stored with other axis codes.

    The anatomy is unchanged; only the on-disk axis order, flips and affine change, as
    between LiTS files. ``read_nii`` of the saved image gives ``canonical`` back.
    """
    img = nib.Nifti1Image(canonical, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    out = img.as_reoriented(ornt_transform(_CANONICAL_ORNT, axcodes2ornt(tuple(axcodes))))
    out.set_qform(out.affine, code=1)
    out.set_sform(out.affine, code=1)
    return out
