"""Static figures (matplotlib) and the slice rendering that the interactive viewers share.

All images are canonical ``('P', 'L', 'S')`` arrays, so an axial slice ``ct[:, :, k]`` is shown
as is: anterior at the top, the patient's right on the image's left (radiological convention),
which every figure states in a corner tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..atomic import atomic_path
from ..data.volumes import LABELS
from ..data.windowing import WINDOWS, freqhist_bins, hist_scaled, resolve_windows, windowed

LABEL_COLORS: dict[int, tuple[int, int, int]] = {1: (40, 200, 90), 2: (255, 70, 40)}
"""Overlay colour (RGB, 0-255) of each label: liver green, tumor red-orange."""

LABEL_ALPHA: dict[int, float] = {1: 0.35, 2: 0.6}


def render_slice(
    hu: np.ndarray,
    mask: np.ndarray | None = None,
    window: str | tuple[float, float] = "abdomen_soft",
    alpha: float = 1.0,
) -> np.ndarray:
    """A windowed grey CT slice with the labels blended in colour.

    Parameters
    ----------
    hu : ndarray, (H, W), Hounsfield units
    mask : ndarray, (H, W), uint8 labels, optional
    window : window name or ``(width, level)``
    alpha : float
        Scales the per-label opacities of :data:`LABEL_ALPHA` (0 hides the overlay).

    Returns
    -------
    ndarray, uint8, (H, W, 3), RGB
    """
    (w, level), = resolve_windows([window])
    grey = windowed(hu, w, level)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    if mask is not None and alpha > 0:
        for label, colour in LABEL_COLORS.items():
            sel = mask == label
            if sel.any():
                a = np.float32(min(1.0, LABEL_ALPHA[label] * alpha))
                rgb[sel] = (1 - a) * rgb[sel] + a * (np.asarray(colour, np.float32) / 255)
    return (rgb * 255 + 0.5).astype(np.uint8)


def label_legend_handles() -> list[Patch]:
    """Legend patches for the overlay colours."""
    return [Patch(color=np.asarray(LABEL_COLORS[k]) / 255, label=f"{k} {LABELS[k]}")
            for k in LABEL_COLORS]


def _orient_tags(ax) -> None:
    kw = dict(transform=ax.transAxes, color="yellow", fontsize=8, alpha=0.8)
    ax.text(0.02, 0.5, "R", va="center", ha="left", **kw)
    ax.text(0.98, 0.5, "L", va="center", ha="right", **kw)
    ax.text(0.5, 0.98, "A", va="top", ha="center", **kw)


def overlay_figure(
    ct: np.ndarray,
    mask: np.ndarray,
    slices: Sequence[int],
    spacing: Sequence[float] | None = None,
    window: str | tuple[float, float] = "abdomen_soft",
    title: str = "",
    coronal: bool = True,
) -> plt.Figure:
    """Axial slices with the mask overlaid, plus a coronal reformat through the liver.

    Parameters
    ----------
    ct : ndarray, (rows, columns, slices), HU, canonical
    mask : ndarray, same shape, uint8 labels
    slices : axial indices to show
    spacing : (row, column, slice) mm, for the coronal aspect ratio and the captions
    """
    n = len(slices) + int(coronal)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.8), squeeze=False)
    axes = axes[0]
    ss = spacing[2] if spacing is not None else 1.0
    for ax, k in zip(axes, slices, strict=False):
        ax.imshow(render_slice(ct[:, :, k], mask[:, :, k], window), interpolation="nearest")
        liver = int((mask[:, :, k] >= 1).sum())
        tumor = int((mask[:, :, k] == 2).sum())
        cap = f"slice {k}"
        if spacing is not None:
            px_cm2 = spacing[0] * spacing[1] / 100
            cap += (f" (z {k * ss:.0f} mm)\n"
                    f"liver {liver * px_cm2:.0f} cm², tumor {tumor * px_cm2:.1f} cm²")
        ax.set_title(cap, fontsize=9)
        _orient_tags(ax)
        ax.axis("off")
    if coronal:
        ax = axes[-1]
        row = int(np.argmax((mask >= 1).sum(axis=(1, 2)))) if mask.any() else ct.shape[0] // 2
        img = render_slice(ct[row, :, :].T[::-1], mask[row, :, :].T[::-1], window)
        aspect = ss / (spacing[1] if spacing is not None else 1.0)
        ax.imshow(img, aspect=aspect, interpolation="nearest")
        for k in slices:
            ax.axhline(ct.shape[2] - 1 - k, color="yellow", lw=0.6, ls=":")
        ax.set_title(f"coronal reformat (row {row})\ndotted: axial slices shown", fontsize=9)
        kw = dict(transform=ax.transAxes, color="yellow", fontsize=8, alpha=0.8)
        ax.text(0.02, 0.5, "R", va="center", **kw)
        ax.text(0.5, 0.98, "S", va="top", ha="center", **kw)
        ax.axis("off")
    fig.legend(handles=label_legend_handles(), loc="lower center", ncol=2, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.94 if title else 1))
    return fig


def window_comparison_figure(
    hu: np.ndarray,
    windows: Iterable[str | tuple[float, float]] = ("abdomen_soft", "liver", "liver_wide",
                                                     "spine_bone", "lungs"),
    title: str = "",
) -> plt.Figure:
    """One axial slice without windowing (full HU range) and under several windows."""
    names = list(windows)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.0 * (len(names) + 1), 3.4))
    axes[0].imshow(hu, cmap="gray", vmin=float(hu.min()), vmax=float(hu.max()))
    axes[0].set_title(f"full range\n[{hu.min():.0f}, {hu.max():.0f}] HU", fontsize=9)
    for ax, name, (w, level) in zip(axes[1:], names, resolve_windows(names), strict=True):
        ax.imshow(windowed(hu, w, level), cmap="gray", vmin=0, vmax=1)
        label = name if isinstance(name, str) else "custom"
        ax.set_title(f"{label}: W {w:g} / L {level:g}\n[{level - w // 2:g}, {level + w // 2:g}] HU",
                     fontsize=9)
    for ax in axes:
        _orient_tags(ax)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.92 if title else 1))
    return fig


def hu_histogram_figure(
    ct: np.ndarray,
    mask: np.ndarray | None = None,
    windows: Iterable[str] = ("liver", "abdomen_soft"),
    bins: int = 200,
    hu_range: tuple[float, float] = (-1100, 1300),
) -> plt.Figure:
    """HU histogram of the volume (log scale) and, if a mask is given, of liver and tumor
    voxels, with the windows shaded."""
    import seaborn as sns

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 3.8))
    edges = np.linspace(*hu_range, bins + 1)
    counts, _ = np.histogram(ct, edges)
    ax0.stairs(counts, edges, fill=True, color="0.4")
    ax0.set_yscale("log")
    ax0.set(xlabel="Hounsfield units", ylabel="voxels (log)", title="whole volume")
    for name, colour in zip(windows, sns.color_palette("Set2"), strict=False):
        w, level = WINDOWS[name]
        for ax in (ax0, ax1):
            ax.axvspan(level - w // 2, level + w // 2, color=colour, alpha=0.25,
                       label=f"{name} window")
    ax0.legend(fontsize=8)
    if mask is not None:
        fine = np.linspace(-200, 400, 121)
        for label, colour in LABEL_COLORS.items():
            sel = ct[mask == label]
            if sel.size:
                ax1.hist(sel, fine, density=True, histtype="stepfilled", alpha=0.55,
                         color=np.asarray(colour) / 255,
                         label=f"{LABELS[label]} (median {np.median(sel):.0f} HU)")
        ax1.set(xlabel="Hounsfield units", ylabel="density",
                title="inside the masks", xlim=(fine[0], fine[-1]))
        ax1.legend(fontsize=8)
    else:
        ax1.axis("off")
    fig.tight_layout()
    return fig


def freqhist_figure(hu: np.ndarray, n_bins: int = 100) -> plt.Figure:
    """How ``freqhist_bins`` / ``hist_scaled`` equalise a slice: the breaks on the sorted
    intensities, the mapping they define, and the equalised image next to the original."""
    brks = freqhist_bins(hu, n_bins)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    sorted_hu = np.sort(hu.ravel())
    frac = np.linspace(0, 1, sorted_hu.size)
    axes[0].plot(frac, sorted_hu, color="0.3", lw=1)
    axes[0].plot(np.linspace(0, 1, brks.size), brks, ".", color="C3", ms=4,
                 label=f"{brks.size} unique breaks")
    axes[0].set(xlabel="fraction of pixels", ylabel="HU", title="sorted intensities")
    axes[0].legend(fontsize=8)
    grid = np.linspace(hu.min(), hu.max(), 512)
    axes[1].plot(grid, hist_scaled(grid, brks), color="C3")
    axes[1].plot(grid, windowed(grid, *WINDOWS["abdomen_soft"]), color="C0", ls="--",
                 label="abdomen window")
    axes[1].set(xlabel="HU", ylabel="output", title="hist_scaled mapping")
    axes[1].legend(fontsize=8)
    axes[2].imshow(windowed(hu, *WINDOWS["abdomen_soft"]), cmap="gray")
    axes[2].set_title("abdomen window", fontsize=9)
    axes[3].imshow(hist_scaled(hu, brks), cmap="gray", vmin=0, vmax=1)
    axes[3].set_title("histogram-equalised (hist_scaled)", fontsize=9)
    for ax in axes[2:]:
        _orient_tags(ax)
        ax.axis("off")
    fig.tight_layout()
    return fig


def channels_figure(nchan: np.ndarray, names: Sequence[str],
                    composite: str = "as saved (RGB)") -> plt.Figure:
    """The channels of a ``to_nchan`` image side by side, and their RGB composite (titled
    ``composite`` when there are three channels)."""
    c = nchan.shape[-1]
    fig, axes = plt.subplots(1, c + 1, figsize=(3.2 * (c + 1), 3.5))
    for i in range(c):
        axes[i].imshow(nchan[..., i], cmap="gray", vmin=0, vmax=1)
        axes[i].set_title(f"channel {i}: {names[i]}", fontsize=9)
    if c in (1, 3):
        axes[c].imshow(nchan if c == 3 else nchan[..., 0], cmap=None if c == 3 else "gray")
        axes[c].set_title(composite if c == 3 else "as saved", fontsize=9)
    else:
        axes[c].imshow(nchan[..., :3])
        axes[c].set_title("first three channels as RGB", fontsize=9)
    for ax in axes:
        _orient_tags(ax)
        ax.axis("off")
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save a figure as PNG atomically (temporary name, then rename) and return its path."""
    path = Path(path)
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", facecolor="white")
    return path


def _mask_rgb(mask: np.ndarray) -> np.ndarray:
    rgb = np.zeros(mask.shape + (3,), np.uint8)
    for label, colour in LABEL_COLORS.items():
        rgb[mask == label] = colour
    return rgb


def batch_figure(images: np.ndarray, masks: np.ndarray, n: int = 8,
                 title: str = "") -> plt.Figure:
    """Model inputs with the outlines of their labels (e.g. a batch after augmentation).

    The inputs are bright false-colour images (the ``to_nchan`` channels as RGB), on which a
    filled overlay would tint rather than show; liver (labels >= 1) and tumor are drawn as
    outlines in the label colours instead.

    Parameters
    ----------
    images : float (B, H, W, 3) in [0, 1], the ``to_nchan`` channels as RGB
    masks : uint8 (B, H, W) labels
    """
    n = min(n, len(images))
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, ax in enumerate(axes.ravel()[:n]):
        img = np.asarray(images[i], np.float32)
        m = np.asarray(masks[i])
        ax.imshow(np.clip(img, 0, 1))
        for label, region in ((1, m >= 1), (2, m == 2)):
            if region.any():
                ax.contour(region, levels=[0.5], colors=[np.asarray(LABEL_COLORS[label]) / 255],
                           linewidths=1.2)
        ax.set_title(f"liver {int((m >= 1).sum())} px, tumor {int((m == 2).sum())} px",
                     fontsize=8)
    fig.legend(handles=label_legend_handles(), loc="lower center", ncol=2, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95 if title else 1))
    return fig


def history_figure(history, title: str = "") -> plt.Figure:
    """Training and validation curves per epoch: loss, liver Dice, tumor Dice.

    Parameters
    ----------
    history : DataFrame with ``epoch`` and Keras log columns (``loss``, ``val_loss``,
        ``liver_dice``, ``val_liver_dice``, ...), e.g. ``training.read_history``.
    """
    panels = [("loss", "loss (cross-entropy + Dice)"), ("liver_dice", "liver Dice"),
              ("tumor_dice", "tumor Dice")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    epochs = np.asarray(history["epoch"]) + 1
    for ax, (key, label) in zip(axes, panels, strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            col = prefix + key
            if col in history:
                ax.plot(epochs, history[col], style, marker="o", ms=3,
                        label="validation" if prefix else "training")
        ax.set(xlabel="epoch", title=label)
        if key != "loss":
            ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.92 if title else 1))
    return fig


def prediction_figure(images: np.ndarray, truths: np.ndarray, preds: np.ndarray,
                      captions: Sequence[str] | None = None, title: str = "") -> plt.Figure:
    """Original / true / predicted, one row per slice (the seed report's Figures 1-2).

    Parameters
    ----------
    images : (N, H, W, 3) float in [0, 1] or (N, H, W) HU-windowed grey in [0, 1]
    truths, preds : (N, H, W) uint8 labels
    captions : one string per row (shown over the original)
    """
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(9.0, 3.0 * n), squeeze=False)
    for i in range(n):
        img = np.asarray(images[i])
        axes[i, 0].imshow(img if img.ndim == 3 else img, cmap=None if img.ndim == 3 else "gray")
        axes[i, 1].imshow(_mask_rgb(truths[i]))
        axes[i, 2].imshow(_mask_rgb(preds[i]))
        axes[i, 0].set_title(captions[i] if captions else "original", fontsize=8)
        axes[i, 1].set_title("true mask", fontsize=8)
        axes[i, 2].set_title("predicted mask", fontsize=8)
        for ax in axes[i]:
            ax.axis("off")
    fig.legend(handles=label_legend_handles(), loc="lower center", ncol=2, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.96 if title else 1))
    return fig


def roc_figure(rocs: dict, aucs: dict | None = None) -> plt.Figure:
    """Pixel-level ROC curves, one panel per structure, one line per model.

    Parameters
    ----------
    rocs : model name -> DataFrame with ``structure``, ``fpr``, ``tpr``
        (:attr:`livertumor.evaluation.held_out.EvaluationResult.roc`)
    aucs : model name -> {structure: AUC}, for the legend
    """
    structures = ("liver", "tumor")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, s in zip(axes, structures, strict=True):
        for i, (name, roc) in enumerate(rocs.items()):
            part = roc[roc["structure"] == s].sort_values("fpr")
            label = name
            if aucs and name in aucs:
                label += f" (AUC {aucs[name][s]:.3f})"
            ax.plot(part["fpr"], part["tpr"], color=f"C{i}", label=label)
        ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="chance")
        ax.set(xlabel="false positive rate", ylabel="true positive rate",
               title=f"{s} (every voxel of the test volumes)", xlim=(0, 1), ylim=(0, 1.01))
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def dice_distribution_figure(per_case: dict, per_slice: dict | None = None) -> plt.Figure:
    """Distributions of per-case Dice (liver, tumor) and per-slice Dice, per model (seaborn).

    Parameters
    ----------
    per_case : model name -> per-case DataFrame (``liver_dice``, ``tumor_dice``)
    per_slice : model name -> per-slice DataFrame (``structure``, ``dice``), optional
    """
    import pandas as pd
    import seaborn as sns

    long = pd.concat([
        pd.DataFrame({"model": name, "structure": s, "Dice": t[f"{s}_dice"].to_numpy()})
        for name, t in per_case.items() for s in ("liver", "tumor")], ignore_index=True)
    n = 2 if per_slice else 1
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 4), squeeze=False)
    sns.boxplot(long, x="structure", y="Dice", hue="model", ax=axes[0, 0], fliersize=0,
                boxprops={"alpha": 0.5})
    sns.stripplot(long, x="structure", y="Dice", hue="model", dodge=True, ax=axes[0, 0],
                  legend=False, size=5)
    axes[0, 0].set(title="per case (3-D)", ylim=(-0.02, 1.02))
    if per_slice:
        slices = pd.concat([t.assign(model=name) for name, t in per_slice.items()],
                           ignore_index=True).dropna(subset=["dice"])
        sns.violinplot(slices, x="structure", y="dice", hue="model", ax=axes[0, 1], cut=0,
                       inner="quart", density_norm="width", legend=False)  # colours as left
        axes[0, 1].set(title="per slice (2-D; slices without the structure left out)",
                       ylim=(-0.02, 1.02), ylabel="Dice")
    fig.tight_layout()
    return fig


def contour_figure(ct: np.ndarray, truth: np.ndarray | None, pred: np.ndarray,
                   slices: Sequence[int], spacing: Sequence[float] | None = None,
                   window: str | tuple[float, float] = "abdomen_soft",
                   title: str = "") -> plt.Figure:
    """Axial slices with reference (dashed) and predicted (solid) liver and tumor contours.

    Parameters
    ----------
    ct : (rows, columns, slices) HU; truth, pred : uint8 labels of the same shape (truth None:
        a new patient without a reference; only the predicted contours are drawn)
    """
    n = len(slices)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.9), squeeze=False)
    (w, level), = resolve_windows([window])
    for ax, k in zip(axes[0], slices, strict=True):
        ax.imshow(windowed(ct[:, :, k], w, level), cmap="gray", vmin=0, vmax=1)
        for label, colour in LABEL_COLORS.items():
            c = np.asarray(colour) / 255
            for mask, style in ((truth, "--"), (pred, "-")):
                if mask is None:
                    continue
                m = (mask[:, :, k] >= label) if label == 1 else (mask[:, :, k] == label)
                if m.any():
                    ax.contour(m.astype(np.float32), levels=[0.5], colors=[c],
                               linestyles=style, linewidths=1.1)
        cap = f"slice {k}"
        if spacing is not None:
            cap += f" (z {k * spacing[2]:.0f} mm)"
        ax.set_title(cap, fontsize=9)
        _orient_tags(ax)
        ax.axis("off")
    handles = [Line2D([], [], color=np.asarray(LABEL_COLORS[label]) / 255, ls=style,
                      label=f"{LABELS[label]}, {which}")
               for label in (1, 2) for style, which in (("--", "reference"), ("-", "predicted"))
               if truth is not None or style == "-"]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 0.93 if title else 1))
    return fig
