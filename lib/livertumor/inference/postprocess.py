"""Post-processing a radiologist would expect of a label map: one liver, tumors only inside
it (connected to it), no tumor specks below a minimum volume, no tube-shaped "tumors"
(vessels), and no tumor the model itself was unsure of.

Every rule takes and returns a canonical uint8 label map (0 background, 1 liver, 2 tumor) of
shape (rows, columns, slices); the rules are in :class:`PostProcessing`, whose effect on the
scores the evaluation measures one rule at a time. The confidence rule also needs the model's
tumor probability (:class:`TumorProbability`).
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
    min_tumor_confidence : float
        Tumor components (3-D, face connectivity) whose mean tumor probability over their
        voxels is below this become liver (0: keep all, else in (0, 1]); needs the
        probability (:func:`postprocess`'s ``probability``). A voxel is tumor when the tumor
        class wins the argmax, at a probability as low as 1/3; a component whose voxels the
        model gave tumor barely is a guess. On the demo cascade's patients every found tumor
        averaged 0.78 or more, while most false-positive components averaged 0.5-0.75.
    """

    largest_liver: bool = False
    min_tumor_ml: float = 0.0
    max_tumor_elongation: float = 0.0
    elongation_below_ml: float = 0.0
    min_tumor_confidence: float = 0.0

    def __post_init__(self):
        if not self.min_tumor_ml >= 0:
            raise ValueError(f"min_tumor_ml must be >= 0, got {self.min_tumor_ml}")
        if not (self.max_tumor_elongation == 0 or self.max_tumor_elongation >= 1):
            raise ValueError("max_tumor_elongation must be 0 (off) or >= 1, got "
                             f"{self.max_tumor_elongation}")
        if not self.elongation_below_ml >= 0:
            raise ValueError(f"elongation_below_ml must be >= 0, got {self.elongation_below_ml}")
        if not 0 <= self.min_tumor_confidence <= 1:
            raise ValueError("min_tumor_confidence must be in [0, 1], got "
                             f"{self.min_tumor_confidence}")

    @property
    def any(self) -> bool:
        return (self.largest_liver or self.min_tumor_ml > 0 or self.max_tumor_elongation > 0
                or self.min_tumor_confidence > 0)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TumorProbability:
    """A model's tumor probability over part of a volume: what the confidence rule averages.

    Attributes
    ----------
    values : float16 or float32 (rows, columns, slices) of the part ``index`` selects
    index : (slice, slice, slice) into the canonical volume (a liver box's ``index``), or
        None: ``values`` covers the whole volume
    """

    values: np.ndarray
    index: tuple[slice, slice, slice] | None = None

    def component_means(self, components: np.ndarray, n: int) -> np.ndarray:
        """Mean probability (float64 (n,)) of each labelled component 1..n over its voxels
        inside the part; 0 for a component wholly outside it (no evidence: dropped by any
        limit)."""
        part = components if self.index is None else components[self.index]
        if part.shape != self.values.shape:
            raise ValueError(f"tumor probability of shape {self.values.shape} does not fit "
                             f"the labels' part of shape {part.shape}")
        ids = part.ravel()
        sums = np.bincount(ids, self.values.ravel().astype(np.float64), n + 1)[1:]
        counts = np.bincount(ids, minlength=n + 1)[1:]
        return sums / np.maximum(counts, 1)


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


def drop_unconfident_tumors(labels: np.ndarray, probability: TumorProbability,
                            min_confidence: float) -> np.ndarray:
    """Tumor components (label 2, face connectivity) whose mean tumor probability
    (:meth:`TumorProbability.component_means`) is below ``min_confidence`` become liver (1);
    0 keeps all.

    Examples
    --------
    >>> m = np.ones((10, 10, 10), np.uint8); m[1:3, 1:3, 1:3] = 2; m[5:8, 5:8, 5:8] = 2
    >>> p = np.where(m == 2, 0.9, 0.0); p[1:3, 1:3, 1:3] = 0.55  # the small one barely won
    >>> out = drop_unconfident_tumors(m, TumorProbability(p), 0.8)
    >>> int(out[1, 1, 1]), int((out == 2).sum())
    (1, 27)
    """
    if min_confidence <= 0:
        return labels.copy()
    return _tumors_to_liver(labels, _less_confident(min_confidence, probability))


def _less_confident(min_confidence: float, probability: TumorProbability | None):
    """A ``select`` for :func:`_tumors_to_liver`: components whose mean tumor probability is
    below ``min_confidence`` (called only when there are components)."""
    def select(components, n):
        if probability is None:
            raise ValueError("min_tumor_confidence needs the model's tumor probability")
        return probability.component_means(components, n) < min_confidence
    return select


def postprocess(labels: np.ndarray, spacing, rules: PostProcessing,
                probability: TumorProbability | None = None) -> np.ndarray:
    """Apply ``rules`` to a label map (a copy; the input is not changed), in the order of
    :class:`PostProcessing`'s fields.

    The tumor rules are tested on the same components (labelled once): turning one tumor
    component into liver changes no other, so this equals applying them one after another.
    ``probability`` (the tumor probability the labels came from) is needed by
    ``min_tumor_confidence`` only.

    Raises
    ------
    ValueError
        ``min_tumor_confidence`` without ``probability``, or a probability that does not fit
        the labels.
    """
    out = largest_liver_component(labels) if rules.largest_liver else labels.copy()
    tests = []
    if rules.min_tumor_confidence > 0:
        tests.append(_less_confident(rules.min_tumor_confidence, probability))
    if rules.min_tumor_ml > 0:
        tests.append(_smaller_than(rules.min_tumor_ml, spacing))
    if rules.max_tumor_elongation > 0:
        tests.append(_longer_than(rules.max_tumor_elongation, spacing,
                                  rules.elongation_below_ml))
    if not tests:
        return out
    return _tumors_to_liver(out, lambda components, n: np.logical_or.reduce(
        [test(components, n) for test in tests]))
