"""Post-processing a radiologist would expect of a label map: one liver, tumors only inside
it (connected to it), no tumor specks below a minimum volume, and no tube-shaped "tumors"
(vessels).

Every rule takes and returns a canonical uint8 label map (0 background, 1 liver, 2 tumor) of
shape (rows, columns, slices); the rules are in :class:`PostProcessing`, whose effect on the
scores the evaluation measures one rule at a time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class PostProcessing:
    """Which rules :func:`postprocess` applies, in this order.

    Attributes
    ----------
    largest_liver : bool
        Keep the largest 3-D connected liver region (labels >= 1, face connectivity) and
        drop everything outside it, its tumors included.
    min_tumor_ml : float
        Tumor components (3-D, face connectivity) smaller than this volume in mL become liver
        (0: keep all). LiTS lesions start at a few tenths of a mL (a 5 mm sphere is 0.065 mL).
    max_tumor_elongation : float
        Tumor components (3-D, face connectivity) whose longest principal axis is more than
        this many times their shortest (:func:`tumor_elongation`, in mm) become liver (0: keep
        all, else >= 1). Liver tumors are round to oval; a component three times as long as
        it is wide is a vessel or a fissure followed by the model.
    elongation_below_ml : float
        The elongation limit applies only to tumor components smaller than this volume in mL
        (0: to all). Vessel segments a model takes for tumors are small (on the demo's
        validation patients all such false positives were below 3 mL), while a large tumor
        may be lobulated or follow the liver's edge (a found 17 mL tumor was 2.8 times as
        long as wide).
    """

    largest_liver: bool = False
    min_tumor_ml: float = 0.0
    max_tumor_elongation: float = 0.0
    elongation_below_ml: float = 0.0

    def __post_init__(self):
        if not self.min_tumor_ml >= 0:
            raise ValueError(f"min_tumor_ml must be >= 0, got {self.min_tumor_ml}")
        if not (self.max_tumor_elongation == 0 or self.max_tumor_elongation >= 1):
            raise ValueError("max_tumor_elongation must be 0 (off) or >= 1, got "
                             f"{self.max_tumor_elongation}")
        if not self.elongation_below_ml >= 0:
            raise ValueError(f"elongation_below_ml must be >= 0, got {self.elongation_below_ml}")

    @property
    def any(self) -> bool:
        return self.largest_liver or self.min_tumor_ml > 0 or self.max_tumor_elongation > 0

    def as_dict(self) -> dict:
        return asdict(self)


def largest_liver_component(labels: np.ndarray) -> np.ndarray:
    """Keep the largest 3-D connected liver region (labels >= 1, face connectivity) and drop
    everything outside it, tumor included (tumors lie in the liver).

    Parameters
    ----------
    labels : uint8 (rows, columns, slices)

    Returns
    -------
    uint8 labels of the same shape.
    """
    liver = labels >= 1
    components, n = ndimage.label(liver)
    if n <= 1:
        return labels.copy()
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    keep = components == int(np.argmax(sizes))
    return np.where(keep, labels, 0).astype(np.uint8)


def liver_and_tumor(liver: np.ndarray, tumor: np.ndarray) -> np.ndarray:
    """One label map from a liver mask and a tumor mask: the liver holds its tumors.

    Parameters
    ----------
    liver, tumor : bool (rows, columns, slices)

    Returns
    -------
    uint8 labels: 2 where ``tumor``, 1 where ``liver`` only, 0 elsewhere. A tumor at the
    liver's edge (or one the liver mask left out) enlarges the liver, as the LiTS labels do
    (liver = labels >= 1); :func:`largest_liver_component` then removes whatever is not
    connected to the liver, tumors included.
    """
    return np.where(tumor, 2, liver.astype(np.uint8)).astype(np.uint8)


def _tumors_to_liver(labels: np.ndarray, select) -> np.ndarray:
    """Tumor components (label 2, face connectivity) chosen by ``select`` become liver (1).

    ``select(components, n)`` gets the labelled components (int array of ``labels``' shape,
    0 outside the tumors, 1..n) and returns a bool array (n,): True for those to drop. The
    tumors are labelled once, whatever ``select`` tests (volume, shape or both).
    """
    components, n = ndimage.label(labels == 2)
    out = labels.copy()
    if n == 0:
        return out
    drop = np.concatenate([[False], np.asarray(select(components, n), bool)])
    out[drop[components]] = 1
    return out


def _smaller_than(min_ml: float, spacing):
    """A ``select`` for :func:`_tumors_to_liver`: components below ``min_ml`` mL."""
    voxel_ml = float(np.prod(spacing)) / 1000.0

    def select(components, n):
        return np.bincount(components.ravel(), minlength=n + 1)[1:] * voxel_ml < min_ml
    return select


def _longer_than(max_elongation: float, spacing, below_ml: float = 0.0):
    """A ``select`` for :func:`_tumors_to_liver`: components more elongated than
    ``max_elongation`` (:func:`tumor_elongation`), only those below ``below_ml`` mL if it is
    > 0."""
    def select(components, n):
        longer = tumor_elongation(components, n, spacing) > max_elongation
        if below_ml > 0:
            longer &= _smaller_than(below_ml, spacing)(components, n)
        return longer
    return select


def drop_small_tumors(labels: np.ndarray, spacing, min_ml: float) -> np.ndarray:
    """Tumor components (label 2, face connectivity) below ``min_ml`` mL become liver (1).

    Parameters
    ----------
    labels : uint8 (rows, columns, slices)
    spacing : (row, column, slice) voxel size in mm
    min_ml : float, mL (1 mL = 1000 mm³)

    Examples
    --------
    >>> m = np.ones((10, 10, 10), np.uint8); m[1, 1, 1] = 2; m[4:8, 4:8, 4:8] = 2
    >>> out = drop_small_tumors(m, (1, 1, 1), min_ml=0.01)  # 10 voxels of 1 mm³
    >>> int(out[1, 1, 1]), int((out == 2).sum())
    (1, 64)
    """
    if min_ml <= 0:
        return labels.copy()
    return _tumors_to_liver(labels, _smaller_than(min_ml, spacing))


def tumor_elongation(components: np.ndarray, n: int, spacing) -> np.ndarray:
    """Elongation of each labelled component: the ratio of the longest to the shortest axis
    of the ellipsoid with the component's second moments, in mm.

    The component is taken as the solid union of its voxel boxes, so its covariance is the
    covariance of the voxel centres plus ``diag(spacing**2 / 12)`` (the variance of a uniform
    box of each side): a single voxel, a cube or a ball is 1, a one-slice-thick disc stays
    finite, and a tube of length L and width w is about L / w. The axes are the square roots
    of the covariance's eigenvalues.

    Parameters
    ----------
    components : int (rows, columns, slices), 0 background, 1..n components
    n : int, number of components
    spacing : (row, column, slice) voxel size in mm

    Returns
    -------
    float64 (n,): elongation of components 1..n, each >= 1.

    Examples
    --------
    >>> c = np.zeros((20, 20, 20), int); c[2:5, 2:5, 2:5] = 1; c[10, 2:18, 10] = 2
    >>> np.round(tumor_elongation(c, 2, (1, 1, 1)), 1)  # a cube; a 16-voxel line
    array([ 1., 16.])
    """
    if n == 0:
        return np.zeros(0)
    index = np.nonzero(components)
    ids = components[index]
    xyz = np.stack(index, axis=1) * np.asarray(spacing, float)  # voxel centres in mm
    count = np.bincount(ids, minlength=n + 1)[1:].astype(float)
    mean = np.stack([np.bincount(ids, xyz[:, a], n + 1)[1:] for a in range(3)], 1) / count[:, None]
    centred = xyz - mean[ids - 1]
    cov = np.empty((n, 3, 3))
    for a in range(3):
        for b in range(a, 3):
            cov[:, a, b] = cov[:, b, a] = np.bincount(
                ids, centred[:, a] * centred[:, b], n + 1)[1:] / count
    cov += np.diag(np.asarray(spacing, float) ** 2 / 12)
    eig = np.linalg.eigvalsh(cov)  # ascending, all > 0
    return np.sqrt(eig[:, -1] / eig[:, 0])


def drop_elongated_tumors(labels: np.ndarray, spacing, max_elongation: float,
                          below_ml: float = 0.0) -> np.ndarray:
    """Tumor components (label 2, face connectivity) more elongated than ``max_elongation``
    (:func:`tumor_elongation`) become liver (1); 0 keeps all. With ``below_ml`` > 0 only
    components smaller than that many mL are tested (larger ones stay, whatever their shape).

    Examples
    --------
    >>> m = np.ones((20, 20, 20), np.uint8); m[2:6, 2:6, 2:6] = 2; m[10, 2:18, 9:11] = 2
    >>> out = drop_elongated_tumors(m, (1, 1, 1), 3.0)  # the cube stays, the tube goes
    >>> int((out[2:6, 2:6, 2:6] == 2).sum()), int((out == 2).sum())
    (64, 64)
    """
    if max_elongation <= 0:
        return labels.copy()
    return _tumors_to_liver(labels, _longer_than(max_elongation, spacing, below_ml))


def postprocess(labels: np.ndarray, spacing, rules: PostProcessing) -> np.ndarray:
    """Apply ``rules`` to a label map (a copy; the input is not changed), in the order of
    :class:`PostProcessing`'s fields.

    The tumor rules are tested on the same components (labelled once): turning one tumor
    component into liver changes no other, so this equals applying them one after another.
    """
    out = largest_liver_component(labels) if rules.largest_liver else labels.copy()
    tests = []
    if rules.min_tumor_ml > 0:
        tests.append(_smaller_than(rules.min_tumor_ml, spacing))
    if rules.max_tumor_elongation > 0:
        tests.append(_longer_than(rules.max_tumor_elongation, spacing,
                                  rules.elongation_below_ml))
    if not tests:
        return out
    return _tumors_to_liver(out, lambda components, n: np.logical_or.reduce(
        [test(components, n) for test in tests]))
