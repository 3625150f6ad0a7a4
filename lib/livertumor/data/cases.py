"""The cases table: pair ``volume-N.nii`` with ``segmentation-N.nii`` (seed report 3.1).

The Kaggle copy of LiTS spreads volumes over ``volume_pt1`` ... ``volume_pt5`` and keeps the
masks in ``segmentations/``; :func:`find_cases` searches the whole tree, so any layout with
those file names works. Only headers are read, so building the table of all 131 LiTS cases
takes seconds.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from pathlib import Path

import pandas as pd

from ..errors import LiverTumorError
from .volumes import Geometry, grid_difference, read_geometry

_NAME = re.compile(r"^(volume|segmentation)-(\d+)\.nii(\.gz)?$")

CASE_COLUMNS = [
    "case_id", "status", "reason", "warnings", "volume_path", "mask_path",
    "rows", "columns", "slices", "spacing_row_mm", "spacing_col_mm", "slice_thickness_mm",
    "volume_axcodes", "mask_axcodes",
]
"""Columns of :func:`find_cases`, in order."""

# Plausible ranges for abdominal CT headers (mm). LiTS in-plane spacing is 0.55-1.0 mm and
# slice thickness 0.45-6 mm (Bilic et al. 2023); outside these a header is probably wrong.
IN_PLANE_MM = (0.4, 1.5)
SLICE_MM = (0.4, 8.0)
OBLIQUE_DEG = 1.0


def header_warnings(geometry: Geometry) -> list[str]:
    """Suspicious but usable header properties of a volume, as short sentences.

    Flags an identity affine (LiTS volumes 28-47 carry one: their spacing reads as 1 mm and
    every distance in mm computed from them is wrong), oblique voxel axes, spacing outside
    plausible CT ranges, and missing qform/sform codes.
    """
    out = []
    if geometry.identity_affine:
        out.append("identity affine: spacing reads as 1 mm and orientation is a guess; "
                   "distances and volumes in mm/mL from this header are unreliable")
    if geometry.obliquity_deg > OBLIQUE_DEG:
        out.append(f"oblique voxel axes ({geometry.obliquity_deg:.1f} deg); the canonical "
                   "orientation uses the nearest world axes")
    sr, sc, ss = geometry.spacing
    if not geometry.identity_affine:
        if not (IN_PLANE_MM[0] <= sr <= IN_PLANE_MM[1] and IN_PLANE_MM[0] <= sc <= IN_PLANE_MM[1]):
            out.append(f"unusual in-plane spacing {sr:.3g} x {sc:.3g} mm")
        if not SLICE_MM[0] <= ss <= SLICE_MM[1]:
            out.append(f"unusual slice thickness {ss:.3g} mm")
    _, qcode = geometry.header.get_qform(coded=True)
    _, scode = geometry.header.get_sform(coded=True)
    if not qcode and not scode:
        out.append("qform_code and sform_code are both 0: the affine is only a default")
    return out


def _scan(data_dir: Path) -> dict[int, dict[str, list[Path]]]:
    found: dict[int, dict[str, list[Path]]] = defaultdict(lambda: {"volume": [], "mask": []})
    for path in sorted(data_dir.rglob("*.nii*")):
        if any(part.startswith(".") for part in path.relative_to(data_dir).parts):
            continue  # hidden files and folders, e.g. temporary files being written
        m = _NAME.match(path.name)
        if not m or not path.is_file():
            continue
        kind = "volume" if m.group(1) == "volume" else "mask"
        found[int(m.group(2))][kind].append(path)
    return found


def _describe(case_id: int, volumes: list[Path], masks: list[Path]) -> dict:
    row = {c: None for c in CASE_COLUMNS}
    row.update(case_id=case_id, status="ok", reason="", warnings="",
               volume_path=str(volumes[0]) if volumes else None,
               mask_path=str(masks[0]) if masks else None)
    for kind, paths in (("volume", volumes), ("segmentation", masks)):
        if len(paths) > 1:
            row.update(status="bad", reason=f"{kind}-{case_id} found {len(paths)} times: "
                       + ", ".join(map(str, paths)))
            return row
    if not volumes or not masks:
        missing = f"volume-{case_id}.nii" if not volumes else f"segmentation-{case_id}.nii"
        row.update(status="unpaired", reason=f"no {missing} found for this case")
    geo_v = geo_m = None
    for kind, paths in (("volume", volumes), ("mask", masks)):
        if not paths:
            continue
        try:
            geo = read_geometry(paths[0])
        except LiverTumorError as err:
            row.update(status="bad", reason=str(err))
            return row
        if kind == "volume":
            geo_v = geo
        else:
            geo_m = geo
    ref = geo_v or geo_m
    row.update(
        rows=ref.canonical_shape[0], columns=ref.canonical_shape[1],
        slices=ref.canonical_shape[2], spacing_row_mm=ref.spacing[0],
        spacing_col_mm=ref.spacing[1], slice_thickness_mm=ref.spacing[2],
        volume_axcodes="".join(geo_v.axcodes) if geo_v else None,
        mask_axcodes="".join(geo_m.axcodes) if geo_m else None,
        warnings="; ".join(header_warnings(ref)),
    )
    if geo_v is not None and geo_m is not None:
        diff = grid_difference(geo_v, geo_m)
        if diff is not None:
            row.update(status="bad", reason=f"{geo_m.path}: mask not on the volume's grid: {diff}")
    return row


def find_cases(data_dir: str | Path) -> pd.DataFrame:
    """Find every case under ``data_dir`` and check its headers.

    One row per case id seen anywhere below ``data_dir`` (any depth), from files named
    ``volume-N.nii[.gz]`` and ``segmentation-N.nii[.gz]``. Only headers are read.

    Parameters
    ----------
    data_dir : str or Path

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CASE_COLUMNS`, sorted by ``case_id``:

        - ``status``: ``ok`` (a readable 3-D volume and mask on the same world grid),
          ``bad`` (unreadable, not 3-D, truncated, grid mismatch, duplicate ids) or
          ``unpaired`` (a volume without a mask, or a mask without a volume);
        - ``reason``: why a case is not ``ok``, naming the file;
        - ``warnings``: suspicious headers (identity affine, odd spacing...), ``ok`` cases too;
        - shape and spacing of the canonical ``('P', 'L', 'S')`` array (rows, columns, slices).

    Raises
    ------
    LiverTumorError
        If ``data_dir`` is not a directory.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise LiverTumorError("data directory not found", data_dir)
    rows = [_describe(cid, f["volume"], f["mask"]) for cid, f in sorted(_scan(data_dir).items())]
    table = pd.DataFrame(rows, columns=CASE_COLUMNS)
    for col in ("rows", "columns", "slices"):
        table[col] = table[col].astype("Int64")
    for col in ("spacing_row_mm", "spacing_col_mm", "slice_thickness_mm"):
        table[col] = table[col].astype("float64")
    return table


def summarize_cases(table: pd.DataFrame) -> str:
    """One line: how many cases are ok, bad and unpaired, and how many carry warnings."""
    counts = table["status"].value_counts()
    n_warn = int((table["warnings"].fillna("") != "").sum())
    return (f"{len(table)} cases: {counts.get('ok', 0)} ok, {counts.get('bad', 0)} bad, "
            f"{counts.get('unpaired', 0)} unpaired; {n_warn} with header warnings")


def select_case(table: pd.DataFrame, case_id: int = -1, prefer_tumor: bool = True) -> pd.Series:
    """Pick one ``ok`` case of a cases table.

    Parameters
    ----------
    table : DataFrame from :func:`find_cases`
    case_id : int
        The case to take; ``-1`` picks the first ``ok`` case (with a tumor, when
        ``prefer_tumor`` and one exists; masks are read one by one until one has label 2).

    Raises
    ------
    LiverTumorError
        No ``ok`` case, or ``case_id`` is not an ``ok`` case (the message gives its reason).
    """
    from .volumes import read_mask

    ok = table[table["status"] == "ok"]
    if case_id != -1:
        row = table[table["case_id"] == case_id]
        if row.empty:
            raise LiverTumorError(f"case {case_id} is not in the table")
        if row.iloc[0]["status"] != "ok":
            raise LiverTumorError(f"case {case_id} is {row.iloc[0]['status']}: "
                                  f"{row.iloc[0]['reason']}")
        return row.iloc[0]
    if ok.empty:
        raise LiverTumorError("no usable (ok) case in the table")
    if prefer_tumor:
        for _, row in ok.iterrows():
            if (read_mask(row["mask_path"]) == 2).any():
                return row
    return ok.iloc[0]


def case_statistics(ct, mask, spacing) -> pd.DataFrame:
    """Voxel counts, volumes (mL) and HU statistics of each label of one case.

    Parameters
    ----------
    ct : ndarray, (rows, columns, slices), HU
    mask : ndarray, same shape, uint8 labels 0/1/2
    spacing : (row, column, slice) voxel size in mm

    Returns
    -------
    DataFrame indexed by label name: ``voxels``, ``volume_ml``, ``hu_mean``, ``hu_std``,
    ``hu_p5``, ``hu_p95``, ``slices`` (axial slices that contain the label). The row
    ``liver (1+2)`` counts the liver with its tumors, as LiTS scores the liver.
    """
    import numpy as np

    from .volumes import LABELS

    voxel_ml = float(np.prod(spacing)) / 1000.0
    rows = {}
    selections = {f"{k} {name}": mask == k for k, name in LABELS.items()}
    selections["liver (1+2)"] = mask >= 1
    for name, sel in selections.items():
        values = ct[sel]
        n = int(values.size)
        rows[name] = {
            "voxels": n,
            "volume_ml": n * voxel_ml,
            "hu_mean": float(values.mean()) if n else float("nan"),
            "hu_std": float(values.std()) if n else float("nan"),
            "hu_p5": float(np.percentile(values, 5)) if n else float("nan"),
            "hu_p95": float(np.percentile(values, 95)) if n else float("nan"),
            "slices": int(sel.any(axis=(0, 1)).sum()),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def data_fingerprint(data_dir: str | Path) -> str:
    """A cheap, copy-independent fingerprint of a LiTS folder (hex sha256).

    Hashes, for every ``*.nii*`` file in sorted relative-path order: the relative path, the
    size in bytes and the first 64 KiB (the header and the start of the data). It changes when
    files are added, removed, resized or re-headed; it does not read whole volumes (LiTS is
    ~50 GB), so a change confined to the middle of a volume's data goes unnoticed.
    """
    data_dir = Path(data_dir)
    digest = hashlib.sha256()
    for path in sorted(data_dir.rglob("*.nii*")):
        rel = path.relative_to(data_dir)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        digest.update(f"{rel.as_posix()}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as fh:
            digest.update(fh.read(1 << 16))
    return digest.hexdigest()
