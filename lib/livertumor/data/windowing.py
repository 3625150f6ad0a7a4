"""Window/level, histogram equalisation and multi-channel images (the seed report's 3.3-3.6).

These reproduce the semantics of the fastai medical-imaging functions that the seed pipeline
names (``fastai/medical/imaging.py``: ``windowed``, ``freqhist_bins``, ``hist_scaled``,
``to_nchan``, ``save_jpg``), on numpy arrays, vectorised, in float32, with two deliberate
differences that are documented where they apply: channels are stacked LAST (H, W, C), and the
histogram-breaks index is computed in exact arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import atomic_path

WINDOWS: Mapping[str, tuple[float, float]] = {
    # name: (width, level) in HU. Values from fastai's ``dicom_windows`` table; ``liver_wide`` is
    # the custom (200, 60) window of the Kaggle notebook the seed report builds on.
    "liver": (150, 30),
    "liver_wide": (200, 60),
    "abdomen_soft": (400, 50),
    "mediastinum": (350, 50),
    "spine_bone": (1800, 400),
    "lungs": (1500, -600),
}
"""Standard CT windows as ``(width, level)`` in Hounsfield units."""

FREQHIST_FRACTIONS_ENDS = (0.001, 0.999)


def resolve_windows(windows: Iterable[str | tuple[float, float]]) -> list[tuple[float, float]]:
    """Turn window names (keys of :data:`WINDOWS`) and ``(w, l)`` pairs into ``(w, l)`` pairs.

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    out = []
    for win in windows:
        if isinstance(win, str):
            if win not in WINDOWS:
                raise ValueError(f"unknown window {win!r}; known: {', '.join(WINDOWS)}")
            out.append(tuple(float(v) for v in WINDOWS[win]))
        else:
            w, level = win
            if not w > 0:
                raise ValueError(f"window width must be positive, got {w}")
            out.append((float(w), float(level)))
    return out


def windowed(x: np.ndarray, w: float, l: float) -> np.ndarray:  # noqa: E741 (fastai's name)
    """Clip to a CT window and scale it to [0, 1].

    The window spans ``[l - w // 2, l + w // 2]`` (floor division, as fastai's ``windowed``).

    Parameters
    ----------
    x : ndarray, any shape, Hounsfield units
    w, l : float
        Window width and level (centre), HU.

    Returns
    -------
    ndarray, float32, same shape as ``x``, values in [0, 1]

    Examples
    --------
    >>> windowed(np.array([-100.0, 30.0, 200.0]), 150, 30)
    array([0. , 0.5, 1. ], dtype=float32)
    """
    lo = l - w // 2
    hi = l + w // 2
    if not hi > lo:
        raise ValueError(f"window ({w}, {l}) is empty: w // 2 must be positive")
    out = np.clip(np.asarray(x, dtype=np.float32), lo, hi)
    out -= np.float32(lo)
    out /= np.float32(hi - lo)
    return out


def freqhist_fractions(n_bins: int = 100) -> np.ndarray:
    """Fractions of the sorted voxels at which :func:`freqhist_bins` takes its breaks.

    ``[0.001, 0.5/n, 1.5/n, ..., (n - 0.5)/n, 0.999]``, float64, length ``n_bins + 2``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    return np.concatenate(
        [[FREQHIST_FRACTIONS_ENDS[0]], (np.arange(n_bins) + 0.5) / n_bins,
         [FREQHIST_FRACTIONS_ENDS[1]]]
    )


def freqhist_bins(x: np.ndarray, n_bins: int = 100) -> np.ndarray:
    """Intensity breaks that split the voxels into groups of about equal count.

    Takes the sorted voxel values at index ``floor(N * f)`` for the fractions ``f`` of
    :func:`freqhist_fractions` (N voxels), and removes duplicates. The sort runs in the input's
    own dtype (int16 or float32 for CT), never on a float64 copy. (fastai's tensor version
    computes the index in float32 and truncates; this one computes ``floor(N * f)`` in
    float64, which can differ by one rank for huge N.)

    Parameters
    ----------
    x : ndarray, any shape (a slice or a whole volume; NaN not allowed)
    n_bins : int, default 100

    Returns
    -------
    ndarray, float32, 1-D, sorted, unique, at most ``n_bins + 2`` values
    """
    flat = np.asarray(x).reshape(-1)
    n = flat.size
    if n == 0:
        raise ValueError("freqhist_bins needs at least one value")
    idx = np.floor(n * freqhist_fractions(n_bins)).astype(np.int64)
    idx = np.minimum(idx, n - 1)
    return np.unique(np.sort(flat)[idx]).astype(np.float32)


def hist_scaled(x: np.ndarray, brks: np.ndarray | None = None, chunk: int = 1 << 20) -> np.ndarray:
    """Equalise intensities through histogram breaks onto [0, 1].

    Piecewise-linear map sending ``brks[i]`` to ``i / (len(brks) - 1)`` (``np.interp``; values
    outside the breaks map to 0 or 1), then clipped to [0, 1]. CT values are integers (int16
    on disk), so for integral input the map is evaluated once per distinct integer and applied
    as a lookup table: the same numbers as interpolating every voxel, several times faster.

    Parameters
    ----------
    x : ndarray, any shape, HU
    brks : ndarray, 1-D, increasing, optional
        Breaks from :func:`freqhist_bins`; computed from ``x`` itself when None. For training
        data, compute them once over the training cases and pass them in.
    chunk : int
        Voxels interpolated at a time (non-integral input), so a whole volume never gets a
        float64 copy.

    Returns
    -------
    ndarray, float32, same shape as ``x``, values in [0, 1]
    """
    x = np.asarray(x)
    if brks is None:
        brks = freqhist_bins(x)
    brks = np.asarray(brks, dtype=np.float64).reshape(-1)
    if brks.size == 0:
        raise ValueError("hist_scaled needs at least one break")
    if brks.size > 1 and np.any(np.diff(brks) <= 0):
        raise ValueError("histogram breaks must be strictly increasing")
    ys = np.linspace(0.0, 1.0, brks.size)
    if x.size == 0:
        return np.zeros(x.shape, np.float32)
    lo, hi = x.min(), x.max()
    integral = np.issubdtype(x.dtype, np.integer) or (
        np.isfinite(lo) and np.isfinite(hi) and bool(np.all(x == np.floor(x))))
    if integral and hi - lo <= 1 << 16:
        lo = int(lo)
        lut = np.interp(np.arange(lo, int(hi) + 1, dtype=np.float64), brks, ys)
        lut = np.clip(lut, 0.0, 1.0).astype(np.float32)
        index = x.astype(np.int32) if x.dtype != np.int32 else x.copy()
        index -= lo
        return lut[index]
    flat = x.reshape(-1)
    out = np.empty(flat.shape, dtype=np.float32)
    for start in range(0, flat.size, chunk):
        stop = start + chunk
        out[start:stop] = np.interp(flat[start:stop], brks, ys)
    np.clip(out, 0.0, 1.0, out=out)
    return out.reshape(x.shape)


def to_nchan(
    x: np.ndarray,
    wins: Iterable[str | tuple[float, float]],
    bins: np.ndarray | int | None = None,
) -> np.ndarray:
    """Stack several windows of an image, and its histogram-scaled version, as channels.

    Parameters
    ----------
    x : ndarray, shape (H, W) or any shape, HU
    wins : iterable of window names or ``(width, level)`` pairs
    bins : None, 0, a positive int, or ndarray of breaks
        ``None``: equalise with breaks from ``x`` itself; ``0``: no histogram channel; a positive
        int ``n``: breaks from ``freqhist_bins(x, n)``; an array: those breaks.

    Returns
    -------
    ndarray, float32, shape ``x.shape + (C,)`` (channels LAST), values in [0, 1]
        ``C = len(wins) + (bins is not 0)``.
    """
    channels = [windowed(x, w, level) for w, level in resolve_windows(wins)]
    if isinstance(bins, int | np.integer) and not isinstance(bins, bool):
        if bins < 0:
            raise ValueError(f"bins must be 0, a positive int or an array of breaks, got {bins}")
        if bins > 0:
            channels.append(hist_scaled(x, freqhist_bins(x, int(bins))))
    else:
        channels.append(hist_scaled(x, bins))
    if not channels:
        raise ValueError("to_nchan needs at least one window or a histogram channel")
    return np.stack(channels, axis=-1)


def to_uint8(channels: np.ndarray) -> np.ndarray:
    """Scale [0, 1] floats to 8 bits as fastai's ``save_jpg`` does: ``(x * 255)`` truncated."""
    return (np.asarray(channels, dtype=np.float32) * np.float32(255)).astype(np.uint8)


_PIL_MODES = {1: "L", 3: "RGB", 4: "CMYK"}


def save_jpg(
    x: np.ndarray,
    path: str | Path,
    wins: Iterable[str | tuple[float, float]],
    bins: np.ndarray | int | None = None,
    quality: int = 90,
) -> Path:
    """Write ``to_nchan(x, wins, bins)`` as an 8-bit JPEG (3 channels RGB, 4 CMYK, 1 grey).

    The suffix is forced to ``.jpg`` as in fastai. The file is written to a temporary name and
    renamed into place, so a reader never sees half a file.

    Parameters
    ----------
    x : ndarray, shape (H, W), HU
    path : str or Path
    wins, bins : see :func:`to_nchan`
    quality : int, 1-95, JPEG quality (default 90, fastai's)

    Returns
    -------
    Path of the written file.
    """
    img = to_uint8(to_nchan(x, wins, bins))
    if img.ndim != 3:
        raise ValueError(f"save_jpg needs one 2-D slice, got shape {np.shape(x)}")
    channels = img.shape[-1]
    if channels not in _PIL_MODES:
        raise ValueError(f"JPEG needs 1, 3 or 4 channels, to_nchan gave {channels}")
    fn = Path(path).with_suffix(".jpg")
    if channels == 4:
        pil = Image.frombytes("CMYK", (img.shape[1], img.shape[0]), img.tobytes())
    else:
        pil = Image.fromarray(img[..., 0] if channels == 1 else img)
    with atomic_path(fn) as tmp:
        pil.save(tmp, format="JPEG", quality=quality)
    return fn


def freqhist_bins_from_counts(values: np.ndarray, counts: np.ndarray,
                              n_bins: int = 100) -> np.ndarray:
    """:func:`freqhist_bins` of a multiset given as distinct values and their counts.

    The same breaks as ``freqhist_bins(np.repeat(values, counts), n_bins)``, without building
    that array: the sorted value at rank r is the first value whose cumulative count exceeds
    r. Used to pool the histograms of many CT volumes (integer HU) into one set of breaks.

    Parameters
    ----------
    values : 1-D, increasing
    counts : 1-D non-negative integers, same length

    Returns
    -------
    ndarray, float32, 1-D, sorted, unique
    """
    values = np.asarray(values)
    cum = np.cumsum(np.asarray(counts, dtype=np.int64))
    n = int(cum[-1]) if cum.size else 0
    if n == 0:
        raise ValueError("freqhist_bins_from_counts needs at least one value")
    idx = np.minimum(np.floor(n * freqhist_fractions(n_bins)).astype(np.int64), n - 1)
    return np.unique(values[np.searchsorted(cum, idx, side="right")]).astype(np.float32)
