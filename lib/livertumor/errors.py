"""Typed exceptions of the package.

Every error raised on bad input names the file (when there is one), says what is wrong and,
where it can, how to fix it. All derive from :class:`LiverTumorError`, so a caller that
processes many cases can catch one type, record ``str(err)`` and go on with the next case.
"""

from __future__ import annotations

from pathlib import Path


class LiverTumorError(Exception):
    """Base class of every error this package raises on bad input.

    Parameters
    ----------
    problem : str
        What is wrong, as a sentence fragment ("file is truncated: ...").
    path : str or Path, optional
        The file the problem was found in; it leads the message.
    """

    def __init__(self, problem: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class NiftiReadError(LiverTumorError):
    """The file is missing, not NIfTI, truncated, empty, not 3-D, or holds NaN voxels."""


class GridMismatchError(LiverTumorError):
    """A mask (or prediction) is not on the voxel grid of its volume."""


class LabelError(LiverTumorError):
    """A label map holds values other than 0 (background), 1 (liver), 2 (tumor)."""


class PairingError(LiverTumorError):
    """A volume has no mask, a mask has no volume, or a case id appears twice."""


class EncoderWeightsError(LiverTumorError):
    """Requested encoder weights are not on disk or do not fit a ResNet-50 without its top."""


class DicomReadError(LiverTumorError):
    """A DICOM folder holds no usable CT series, several without a choice, or a series that
    cannot be put on one regular grid (gaps, tilt, mixed sizes), or a file that cannot be
    read or decoded."""
