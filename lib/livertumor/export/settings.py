"""The arguments that define an export (:class:`ExportSettings`), checked, and saved with it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..data.windowing import resolve_windows

FORMAT_VERSION = 2
"""Version of the export's layout, saved in ``.export/settings.json`` and
``preprocessing.json``."""


@dataclass(frozen=True)
class ExportSettings:
    """The arguments that define an export (saved; a re-run must use the same ones).

    Attributes
    ----------
    every : int
        Export slice indices 0, every, 2 * every, ... (canonical, from the feet up).
    size : int
        Side of the square output images in pixels (0: keep the slice's own size).
    windows : two window names (:data:`livertumor.WINDOWS`) or ``(width, level)`` pairs
        One channel each (red, green); the histogram-equalised channel is the third (blue).
        A comma-separated string (``"liver,abdomen_soft"``) is accepted too.
    test_fraction : float in [0, 1)
        Share of the patients (in each tumor / no-tumor group) in the test split.
    seed : int
        Seed of the split.
    n_bins : int
        Histogram breaks (``freqhist_bins``).
    jpeg_quality : int
        JPEG quality of the images (fastai's ``save_jpg`` uses 90).
    roi : bool
        Export crops of the liver's box (:func:`livertumor.data.roi.liver_box` of the
        reference mask) instead of whole slices, only of the slices the box spans: the
        training data of the cascade's tumor stage. The box goes into the manifest.
    roi_margin_mm : float
        The box's margin around the liver (mm).
    context : int
        Neighbouring slices per side added as channels (2.5-D input; 0: none): the first
        window of slices ``i - context .. i - 1`` and ``i + 1 .. i + context``, stored in
        ``{split}/context/`` (:mod:`livertumor.data.preprocessing`).

    Raises
    ------
    ValueError
        Unknown window name, not exactly two windows, ``every < 1``, ``size`` below 16 (but
        not 0), ``test_fraction`` outside [0, 1), ``context`` outside 0..4, a negative
        ``roi_margin_mm``.
    """

    every: int = 2
    size: int = 256
    windows: tuple = ("liver", "abdomen_soft")
    test_fraction: float = 0.2
    seed: int = 0
    n_bins: int = 100
    jpeg_quality: int = 90
    roi: bool = False
    roi_margin_mm: float = 10.0
    context: int = 0

    def __post_init__(self):
        windows = self.windows
        if isinstance(windows, str):
            windows = [w.strip() for w in windows.split(",") if w.strip()]
        windows = tuple(w if isinstance(w, str) else tuple(float(v) for v in w)
                        for w in windows)
        object.__setattr__(self, "windows", windows)
        resolve_windows(windows)
        if len(windows) != 2:
            raise ValueError("the exported JPEG images are RGB: give exactly 2 windows (the "
                             f"third channel is the histogram-equalised image), got {windows}")
        for name in ("every", "size", "seed", "n_bins", "jpeg_quality", "context"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.every < 1:
            raise ValueError(f"every must be at least 1, got {self.every}")
        if self.size < 0 or 0 < self.size < 16:
            raise ValueError(f"size must be 0 (original) or at least 16 pixels, got {self.size}")
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in 1..95, got {self.jpeg_quality}")
        if self.n_bins < 1:
            raise ValueError(f"n_bins must be at least 1, got {self.n_bins}")
        if not 0 <= self.context <= 4:
            raise ValueError(f"context must be 0 to 4 slices per side, got {self.context}")
        if not self.roi_margin_mm >= 0:
            raise ValueError(f"roi_margin_mm must be >= 0, got {self.roi_margin_mm}")
        object.__setattr__(self, "roi", bool(self.roi))
        object.__setattr__(self, "roi_margin_mm", float(self.roi_margin_mm))

    def as_json(self) -> dict:
        """The settings as JSON-ready values (windows as names or ``[width, level]``)."""
        d = asdict(self)
        d["windows"] = [w if isinstance(w, str) else list(w) for w in self.windows]
        d["test_fraction"] = float(self.test_fraction)
        return d
