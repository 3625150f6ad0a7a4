"""Post-processing a radiologist would expect of a label map: one liver, tumors only inside
it (connected to it, and for a cascade mostly inside its liver stage's liver), no tumor specks
below a minimum volume, no tube-shaped "tumors" (vessels), and no tumor the model itself was
unsure of.

Every rule takes and returns a canonical uint8 label map (0 background, 1 liver, 2 tumor) of
shape (rows, columns, slices); the rules are in :class:`PostProcessing`, whose effect on the
scores the evaluation measures one rule at a time. The confidence rule also needs the model's
tumor probability (:class:`ClassProbability`), the in-liver rule a cascade's liver-stage mask.
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
    min_tumor_in_liver : float
        A cascade's tumor components (3-D, face connectivity) with less than this share of
        their voxels inside its liver stage's liver (labels >= 1 of the whole-slice model,
        which sees the whole abdomen) are not liver tumors: their voxels take the liver
        stage's label (liver where it saw liver, else background). 0: off, else in (0, 1];
        0.5: at least half of a tumor must lie in the liver the liver stage found. Needs that
        mask (:func:`postprocess`'s ``liver``); without it (a single model, whose tumors lie
        in its own liver) it drops nothing. The tumor stage sees only the liver's box and
        takes dark structures beside the liver (gallbladder, bowel) for tumors at times.
    """

    largest_liver: bool = False
    min_tumor_ml: float = 0.0
    max_tumor_elongation: float = 0.0
    elongation_below_ml: float = 0.0
    min_tumor_confidence: float = 0.0
    min_tumor_in_liver: float = 0.0

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
        if not 0 <= self.min_tumor_in_liver <= 1:
            raise ValueError("min_tumor_in_liver must be in [0, 1], got "
                             f"{self.min_tumor_in_liver}")

    @property
    def any(self) -> bool:
        return self.largest_liver or self.any_tumor_rule

    @property
    def any_tumor_rule(self) -> bool:
        """Whether any rule on tumor components is on."""
        return (self.min_tumor_ml > 0 or self.max_tumor_elongation > 0
                or self.min_tumor_confidence > 0 or self.min_tumor_in_liver > 0)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ClassProbability:
    """One class's probability (a model's tumor or liver probability) over part of a volume,
    or all of it: the tumor probability is what the confidence rule averages.

    Attributes
    ----------
    values : float16 or float32 (rows, columns, slices) of the part ``index`` selects
    index : (slice, slice, slice) into the canonical volume (a liver box's ``index``), or
        None: ``values`` covers the whole volume
    """

    values: np.ndarray
    index: tuple[slice, slice, slice] | None = None

    def within(self, index: tuple[slice, slice, slice]) -> np.ndarray:
        """float32 values at ``index`` (a box inside the part, in volume coordinates)."""
        if self.index is None:
            return np.asarray(self.values[index], np.float32)
        local = tuple(slice(b.start - a.start, b.stop - a.start)
                      for a, b in zip(self.index, index, strict=True))
        if any(s.start < 0 or s.stop > n for s, n in zip(local, self.values.shape, strict=True)):
            raise ValueError(f"{index} is not inside the part {self.index}")
        return np.asarray(self.values[local], np.float32)

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


class TumorComponents:
    """The tumor components (label 2, face connectivity) of a label map, labelled once, with
    what the tumor rules test: volume, elongation and mean tumor probability (each computed
    when first asked for). :meth:`without` applies a rule set; trying several rule sets on
    one prediction (:func:`~livertumor.evaluation.tuning.tune_tumor_rules`) labels and
    measures the components only once.

    Parameters
    ----------
    labels : uint8 (rows, columns, slices), 0/1/2 (not changed)
    spacing : (row, column, slice) voxel size in mm
    probability : the tumor probability the labels came from (:class:`ClassProbability`),
        needed by ``min_tumor_confidence`` only
    liver : bool (rows, columns, slices), a cascade's liver-stage liver (labels >= 1), used by
        ``min_tumor_in_liver`` only (None: that rule drops nothing)
    """

    def __init__(self, labels: np.ndarray, spacing, probability: ClassProbability | None = None,
                 liver: np.ndarray | None = None):
        self.labels = labels
        self.spacing = tuple(float(x) for x in spacing)
        self.probability = probability
        if liver is not None and liver.shape != labels.shape:
            raise ValueError(f"liver mask of shape {liver.shape} does not fit the labels of "
                             f"shape {labels.shape}")
        self.liver = liver
        self.components, self.n = ndimage.label(labels == 2)
        self._elongation = self._confidence = self._liver_share = None

    @property
    def volume_ml(self) -> np.ndarray:
        """float64 (n,): volume of each component in mL."""
        voxel_ml = float(np.prod(self.spacing)) / 1000.0
        return np.bincount(self.components.ravel(), minlength=self.n + 1)[1:] * voxel_ml

    @property
    def elongation(self) -> np.ndarray:
        """float64 (n,): :func:`tumor_elongation` of each component."""
        if self._elongation is None:
            self._elongation = tumor_elongation(self.components, self.n, self.spacing)
        return self._elongation

    @property
    def confidence(self) -> np.ndarray:
        """float64 (n,): mean tumor probability of each component.

        Raises
        ------
        ValueError
            No probability was given, or it does not fit the labels.
        """
        if self._confidence is None:
            if self.probability is None:
                raise ValueError("min_tumor_confidence needs the model's tumor probability")
            self._confidence = self.probability.component_means(self.components, self.n)
        return self._confidence

    @property
    def liver_share(self) -> np.ndarray:
        """float64 (n,): share of each component's voxels inside ``liver`` (ones without it)."""
        if self._liver_share is None:
            if self.liver is None:
                self._liver_share = np.ones(self.n)
            else:
                ids = self.components.ravel()
                inside = np.bincount(ids, self.liver.ravel().astype(np.float64), self.n + 1)
                counts = np.bincount(ids, minlength=self.n + 1)
                self._liver_share = inside[1:] / np.maximum(counts[1:], 1)
        return self._liver_share

    def outside_liver(self, rules: PostProcessing) -> np.ndarray:
        """bool (n,): the components ``min_tumor_in_liver`` finds mostly outside the liver."""
        if rules.min_tumor_in_liver <= 0 or self.n == 0:
            return np.zeros(self.n, bool)
        return self.liver_share < rules.min_tumor_in_liver

    def dropped(self, rules: PostProcessing) -> np.ndarray:
        """bool (n,): the components the tumor rules of ``rules`` drop (any rule suffices):
        :meth:`without` turns them into liver, or into the liver stage's labels when they lie
        outside its liver."""
        drop = np.zeros(self.n, bool)
        if self.n == 0:
            return drop
        volume = self.volume_ml
        if rules.min_tumor_ml > 0:
            drop |= volume < rules.min_tumor_ml
        if rules.max_tumor_elongation > 0:
            longer = self.elongation > rules.max_tumor_elongation
            if rules.elongation_below_ml > 0:
                longer &= volume < rules.elongation_below_ml
            drop |= longer
        if rules.min_tumor_confidence > 0:
            drop |= self.confidence < rules.min_tumor_confidence
        return drop | self.outside_liver(rules)

    def without(self, rules: PostProcessing) -> np.ndarray:
        """A copy of the labels in which the components :meth:`dropped` by ``rules`` are
        liver (1), those outside the liver (:meth:`outside_liver`) the liver stage's label."""
        out = self.labels.copy()
        drop = self.dropped(rules)
        if drop.any():
            out[np.concatenate([[False], drop])[self.components]] = 1
        outside = self.outside_liver(rules)
        if outside.any():
            voxels = np.concatenate([[False], outside])[self.components]
            out[voxels] = self.liver[voxels]
        return out


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
    return TumorComponents(labels, spacing).without(PostProcessing(min_tumor_ml=max(min_ml, 0)))


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
    return TumorComponents(labels, spacing).without(PostProcessing(
        max_tumor_elongation=max_elongation, elongation_below_ml=below_ml))


def drop_unconfident_tumors(labels: np.ndarray, probability: ClassProbability,
                            min_confidence: float) -> np.ndarray:
    """Tumor components (label 2, face connectivity) whose mean tumor probability
    (:meth:`ClassProbability.component_means`) is below ``min_confidence`` become liver (1);
    0 keeps all.

    Examples
    --------
    >>> m = np.ones((10, 10, 10), np.uint8); m[1:3, 1:3, 1:3] = 2; m[5:8, 5:8, 5:8] = 2
    >>> p = np.where(m == 2, 0.9, 0.0); p[1:3, 1:3, 1:3] = 0.55  # the small one barely won
    >>> out = drop_unconfident_tumors(m, ClassProbability(p), 0.8)
    >>> int(out[1, 1, 1]), int((out == 2).sum())
    (1, 27)
    """
    if min_confidence <= 0:
        return labels.copy()
    # the voxel size does not matter to this rule
    return TumorComponents(labels, (1, 1, 1), probability).without(
        PostProcessing(min_tumor_confidence=min_confidence))


def postprocess(labels: np.ndarray, spacing, rules: PostProcessing,
                probability: ClassProbability | None = None,
                liver: np.ndarray | None = None) -> np.ndarray:
    """Apply ``rules`` to a label map (a copy; the input is not changed), in the order of
    :class:`PostProcessing`'s fields.

    The tumor rules are tested on the same components (labelled once): turning one tumor
    component into liver changes no other, so this equals applying them one after another.
    ``probability`` (the tumor probability the labels came from) is needed by
    ``min_tumor_confidence`` only; ``liver`` (a cascade's liver-stage liver, bool) is used by
    ``min_tumor_in_liver`` only.

    Raises
    ------
    ValueError
        ``min_tumor_confidence`` without ``probability``, or a probability that does not fit
        the labels.
    """
    out = largest_liver_component(labels) if rules.largest_liver else labels
    if not rules.any_tumor_rule:
        return out.copy() if out is labels else out
    return TumorComponents(out, spacing, probability, liver).without(rules)
