"""What the scanner does to the painted HU map: blur (point spread), correlated noise, the
reconstruction circle, rounding and clipping to int16 HU."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .anatomy import F32


def _gauss_norm(sigma: float) -> float:
    """Standard deviation of white noise after a 1-D Gaussian filter of ``sigma`` px."""
    r = int(4 * sigma + 0.5)
    x = np.arange(-r, r + 1)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    w /= w.sum()
    return float(np.sqrt((w * w).sum()))


def form_image(hu: np.ndarray, geo: dict, case_id: int, seed: int) -> np.ndarray:
    """Blur, add correlated noise, clip: (z, y, x) float32 HU -> int16 HU (same order).

    ``geo`` is the case's geometry (:func:`.geometry.case_geometry`): its spacing, blur and
    noise. ``hu`` is overwritten. The noise comes from ``default_rng([seed, case_id, 1])``.
    """
    sp, _, ss = geo["spacing"]
    tmp = np.empty_like(hu)
    s_xy = geo["blur_mm"] / sp
    if s_xy > 0.2:
        ndimage.gaussian_filter1d(hu, s_xy, axis=2, output=tmp, mode="nearest")
        ndimage.gaussian_filter1d(tmp, s_xy, axis=1, output=hu, mode="nearest")
    s_z = 0.35 if ss < 3 else 0.45
    if hu.shape[0] > 3:
        ndimage.gaussian_filter1d(hu, s_z, axis=0, output=tmp, mode="nearest")
        hu, tmp = tmp, hu
    rng = np.random.default_rng([seed, case_id, 1])
    noise = rng.standard_normal(hu.shape, dtype=F32)
    sn = geo["noise_corr_px"]
    ndimage.gaussian_filter1d(noise, sn, axis=2, output=tmp)
    ndimage.gaussian_filter1d(tmp, sn, axis=1, output=noise)
    noise *= F32(geo["noise_hu"] / _gauss_norm(sn) ** 2)
    hu += noise
    del noise, tmp
    if geo["fov_circle"]:
        n = hu.shape[1]
        c = (n - 1) / 2
        yy, xx = np.ogrid[:n, :n]
        out = (yy - c) ** 2 + (xx - c) ** 2 > (n / 2) ** 2
        hu[:, out] = -1024
    np.rint(hu, out=hu)
    np.clip(hu, -1024, 3071, out=hu)
    return hu.astype(np.int16)
