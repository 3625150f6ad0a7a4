"""Figures about tumors one by one: detection by lesion size, and a gallery of found, missed
and false-positive lesions with the reference and predicted outlines, so that what the
detection numbers count can be seen."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..data.volumes import read_geometry, read_mask, read_nii
from ..data.windowing import resolve_windows, windowed
from .figures import LABEL_COLORS

TUMOR_RGB = np.asarray(LABEL_COLORS[2]) / 255
LIVER_RGB = np.asarray(LABEL_COLORS[1]) / 255


def detection_figure(detections: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Lesion recall and precision by size class, one bar per model.

    Parameters
    ----------
    detections : model name -> :func:`livertumor.evaluation.lesions.detection_by_size` table
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    names = list(detections)
    width = 0.8 / max(len(names), 1)
    for ax, (measure, count, total) in zip(axes, (("recall", "found", "reference"),
                                                  ("precision", "true", "predicted")),
                                           strict=True):
        for i, name in enumerate(names):
            table = detections[name]
            x = np.arange(len(table)) + (i - (len(names) - 1) / 2) * width
            values = table[measure].fillna(0).to_numpy()
            bars = ax.bar(x, values, width, label=name)
            for bar, n, d in zip(bars, table[count], table[total], strict=True):
                ax.annotate(f"{int(n)}/{int(d)}", (bar.get_x() + bar.get_width() / 2,
                                                    bar.get_height()),
                            ha="center", va="bottom", fontsize=7)
        ax.set_xticks(np.arange(len(table)), table.index)
        ax.set_title(f"lesion {measure} ({count} / {total})", fontsize=10)
        ax.set_ylim(0, 1.12)
        ax.set_xlabel("largest axial diameter")
    axes[0].set_ylabel("fraction")
    axes[1].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def _crop(shape: tuple[int, int], row: float, col: float, half: int
          ) -> tuple[slice, slice]:
    """A square window of side ``2 * half`` around (row, col), kept inside ``shape``."""
    out = []
    for centre, size in zip((row, col), shape, strict=True):
        side = min(2 * half, size)
        lo = int(round(centre)) - side // 2
        lo = min(max(lo, 0), size - side)
        out.append(slice(lo, lo + side))
    return out[0], out[1]


def gallery_volumes(tiles: pd.DataFrame, per_case: pd.DataFrame) -> dict[int, tuple]:
    """The ``volumes`` argument of :func:`lesion_gallery` for the cases of ``tiles``, each
    volume read once.

    Parameters
    ----------
    tiles : lesion rows to show (``case_id``)
    per_case : the evaluation's per-case table (``case_id``, ``volume_path``, ``mask_path``,
        ``prediction_path``)
    """
    paths = per_case.set_index("case_id")
    volumes = {}
    for case_id in dict.fromkeys(tiles["case_id"]):
        row = paths.loc[case_id]
        spacing = read_geometry(row["volume_path"]).spacing[:2]
        volumes[int(case_id)] = (read_nii(row["volume_path"]), read_mask(row["mask_path"]),
                                 read_mask(row["prediction_path"]), spacing)
    return volumes


def lesion_gallery(lesions: pd.DataFrame, volumes: Mapping[int, tuple], spacing_mm: float = 60,
                   window: str | tuple[float, float] = "liver", columns: int = 6,
                   title: str = "") -> plt.Figure:
    """Tiles of individual lesions: the CT around each, at its largest slice, with the
    reference tumor dashed and the predicted tumor solid (the liver thin), captioned with
    the case, the diameter and what the matching said.

    Parameters
    ----------
    lesions : rows of the evaluation's ``lesions`` table to show (``case_id``, ``kind``,
        ``row``, ``column``, ``largest_slice``, ``diameter_mm``, ``detected``)
    volumes : case id -> (ct HU (rows, columns, slices), reference labels, predicted labels,
        in-plane spacing (row, column) in mm)
    spacing_mm : side of each tile in mm
    window : CT window of the tiles
    """
    n = len(lesions)
    columns = max(1, min(columns, n))
    rows = max(1, int(np.ceil(n / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.6 * rows + 0.4),
                             squeeze=False)
    (w, level), = resolve_windows([window])
    for ax in axes.ravel():
        ax.axis("off")
    for ax, lesion in zip(axes.ravel(), lesions.itertuples(), strict=False):
        ct, truth, pred, (sr, sc) = volumes[int(lesion.case_id)]
        k = int(lesion.largest_slice)
        half = int(round(spacing_mm / 2 / min(sr, sc)))
        rs, cs = _crop(ct.shape[:2], lesion.row, lesion.column, half)
        ax.imshow(windowed(ct[rs, cs, k], w, level), cmap="gray", vmin=0, vmax=1,
                  aspect=sr / sc)
        for labels, style in ((truth, "--"), (pred, "-")):
            part = labels[rs, cs, k]
            for mask, colour, lw in ((part >= 1, LIVER_RGB, 0.6), (part == 2, TUMOR_RGB, 1.2)):
                if mask.any() and not mask.all():
                    ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour],
                               linestyles=style, linewidths=lw)
        if lesion.kind == "reference":
            verdict = "found" if lesion.detected else "missed"
        else:
            verdict = "false positive"
        ax.set_title(f"case {lesion.case_id}, {lesion.diameter_mm:.0f} mm\n{verdict}",
                     fontsize=8, color="black" if verdict == "found" else "firebrick")
    handles = [plt.Line2D([], [], color=TUMOR_RGB, ls="--", label="tumor, reference"),
               plt.Line2D([], [], color=TUMOR_RGB, ls="-", label="tumor, predicted"),
               plt.Line2D([], [], color=LIVER_RGB, ls="-", lw=0.6, label="liver")]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95 if title else 1))
    return fig


def gallery_lesions(lesions: pd.DataFrame, per_kind: int = 6) -> pd.DataFrame:
    """Up to ``per_kind`` missed reference lesions, found ones and false positives (largest
    first among the missed and the false positives, a spread of sizes among the found)."""
    ref = lesions[lesions["kind"] == "reference"]
    missed = ref[~ref["detected"]].sort_values("diameter_mm", ascending=False)
    found = ref[ref["detected"]].sort_values("diameter_mm")
    if len(found) > per_kind:
        found = found.iloc[np.linspace(0, len(found) - 1, per_kind).round().astype(int)]
    pred = lesions[lesions["kind"] == "prediction"]
    false = pred[~pred["detected"]].sort_values("diameter_mm", ascending=False)
    return pd.concat([missed.head(per_kind), found, false.head(per_kind)])
