"""Which axial slices of a label map to look at: the largest liver or tumor section, and a few
slices spread over the liver. Label maps are (P, L, S) arrays (:mod:`livertumor.data.volumes`)."""

from __future__ import annotations

import numpy as np


def largest_slice(mask: np.ndarray, label: int = 1, at_least: int = 1) -> int | None:
    """Index of the axial slice with the most voxels of ``label`` (``>= label``), or None.

    For ``label=1`` the liver counts with its tumors (LiTS: liver = labels >= 1).
    """
    counts = (mask >= label).sum(axis=(0, 1)) if label == 1 else (mask == label).sum(axis=(0, 1))
    k = int(np.argmax(counts))
    return k if counts[k] >= at_least else None


def key_slices(mask: np.ndarray, n: int = 4) -> list[int]:
    """``n`` informative axial slices: the largest tumor slice (if any), then slices spread
    evenly over the liver's extent. Sorted from feet to head."""
    liver = np.flatnonzero((mask >= 1).any(axis=(0, 1)))
    if liver.size == 0:
        return list(np.linspace(0, mask.shape[2] - 1, n).astype(int))
    chosen = []
    tumor_k = largest_slice(mask, 2)
    if tumor_k is not None:
        chosen.append(tumor_k)
    for q in np.linspace(0.15, 0.85, n):
        k = int(liver[int(q * (liver.size - 1))])
        if len(chosen) < n and all(abs(k - c) > 1 for c in chosen):
            chosen.append(k)
    return sorted(chosen)
