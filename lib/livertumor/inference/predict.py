"""Whole-volume prediction with one trained model, written back on the scan's own grid.

:func:`predict_volume` turns every axial slice (or the slices of a liver box) into the model's
input exactly as the training images were made (:mod:`.inputs`), predicts in batches (with
``tta``, also on zoomed copies, averaged), resizes the class probabilities back to the slice's
(or box's) size, takes the argmax and applies the post-processing rules (:mod:`.postprocess`).
:func:`segment` does it for a model folder or a cascade (:mod:`.cascade`) and writes a uint8
label map (0 background, 1 liver, 2 tumor) with the input file's shape, affine, qform and
sform, so it opens aligned with the scan in any viewer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.roi import Box
from ..data.volumes import NiftiVolume, save_atomic, write_like
from ..errors import LiverTumorError
from .inputs import SliceInputs, check_model_fits
from .postprocess import ClassProbability, PostProcessing
from .postprocess import postprocess as apply_rules

TTA_SCALES = (0.9, 1.0, 1.1)
"""Zoom factors of test-time augmentation, within the training augmentation's +-10 %. No
flips: the models never see mirrored anatomy (the liver is on the patient's right)."""


@dataclass
class Segmentation:
    """The result of :func:`predict_volume`, in the canonical orientation.

    Attributes
    ----------
    labels : uint8 (rows, columns, slices), 0/1/2
    probabilities : float32 (rows, columns, slices, 3) or None (``keep_probabilities=False``)
    geometry : the input file's :class:`~livertumor.data.volumes.Geometry`
    box : the liver box the (tumor) model looked at, or None (whole slices)
    tumor_probability : the model's tumor probability where it looked (the box, or the
        whole volume), or None when neither asked for nor needed by the rules
    liver_probability : likewise its liver probability (classes 1 and 2), or None
    """

    labels: np.ndarray
    probabilities: np.ndarray | None
    geometry: object
    box: Box | None = None
    tumor_probability: ClassProbability | None = None
    liver_probability: ClassProbability | None = None


def load_preprocessing(model_dir: str | Path) -> dict:
    """The model folder's ``preprocessing.json`` (written by the export, copied by training)."""
    path = Path(model_dir) / "preprocessing.json"
    if not path.exists():
        raise LiverTumorError("no preprocessing.json: not a model folder written by "
                              "livertumor train", Path(model_dir))
    return json.loads(path.read_text())


def model_side(model, prep: dict) -> int:
    """The side of the slices ``model`` predicts: its input side, or for a fully convolutional
    model (trained on patches, input side ``None``) the export's size in ``prep``.

    Raises
    ------
    LiverTumorError
        A fully convolutional model whose export kept the original size (no fixed side).
    """
    side = model.input_shape[1]
    if side is None:
        side = int(prep.get("size") or 0)
        if not side:
            raise LiverTumorError("the model takes any input size and its export kept the "
                                  "slices' own size: no side to predict at")
    return int(side)


def rules_of(postprocess) -> PostProcessing:
    """``postprocess`` as :class:`PostProcessing`: True means the largest liver component."""
    if isinstance(postprocess, PostProcessing):
        return postprocess
    return PostProcessing(largest_liver=bool(postprocess))


def _zoom(batch: np.ndarray, scale: float, order: int) -> np.ndarray:
    """Zoom (B, S, S, C) images about their centre by ``scale`` (> 1 magnifies); pixels that
    fall outside the input are 0. One ``scipy.ndimage.affine_transform`` over the batch (the
    identity on the batch and channel axes)."""
    from scipy.ndimage import affine_transform

    if scale == 1.0:
        return batch
    centre = (batch.shape[1] - 1) / 2
    shift = centre - centre / scale
    return affine_transform(batch, [1.0, 1 / scale, 1 / scale, 1.0],
                            offset=[0.0, shift, shift, 0.0], order=order, mode="constant",
                            cval=0.0)


def predict_probabilities(model, x: np.ndarray, tta: bool = False) -> np.ndarray:
    """Class probabilities float32 (B, S, S, 3) of a batch of model inputs; with ``tta`` the
    mean over :data:`TTA_SCALES`, each zoomed back, weighted by where it saw the image."""
    if not tta:
        return np.asarray(model.predict_on_batch(x), np.float32)
    total = np.zeros(x.shape[:3] + (3,), np.float32)
    weight = np.zeros(x.shape[:3] + (1,), np.float32)
    for scale in TTA_SCALES:
        p = np.asarray(model.predict_on_batch(_zoom(x, scale, order=1)), np.float32)
        seen = _zoom(np.ones(x.shape[:3] + (1,), np.float32), 1 / scale, order=0)
        total += _zoom(p, 1 / scale, order=1) * seen
        weight += seen
    return total / np.maximum(weight, 1e-6)


def predict_volume(
    model,
    volume: str | Path | NiftiVolume,
    prep: dict,
    batch_size: int = 16,
    keep_probabilities: bool = False,
    postprocess: PostProcessing | bool = False,
    progress: bool = True,
    box: Box | None = None,
    tta: bool = False,
    keep_tumor_probability: bool = False,
    keep_liver_probability: bool = False,
) -> Segmentation:
    """Predict every axial slice of a volume (or, with ``box``, the box's part of its slices).

    Memory: the int16 volume (memory-mapped for ``.nii``), one batch of model inputs and
    outputs, and the uint8 label volume; with ``keep_probabilities`` also float32 class
    probabilities (12 bytes per voxel); with ``keep_tumor_probability`` (or a confidence rule)
    the float32 tumor probability of the box (4 bytes per voxel of the box, or of the volume),
    with ``keep_liver_probability`` the float16 liver probability (2 bytes per voxel).

    Parameters
    ----------
    model : a Keras model with input (S, S, C) and a 3-class softmax output (a fully
        convolutional one, input (None, None, C), predicts at the export's size: :func:`model_side`)
    volume : path or opened :class:`NiftiVolume`
    prep : the preprocessing dict of the model (:func:`load_preprocessing`)
    postprocess : :class:`PostProcessing` rules, or True for the largest liver component
    box : predict only inside this liver box (a model trained on a ROI export); outside it
        the labels are 0 and the probabilities (1, 0, 0)
    tta : test-time augmentation over :data:`TTA_SCALES` (three times the model's work)
    keep_tumor_probability : return the tumor probability where the model looked
        (:attr:`Segmentation.tumor_probability`), as a cascade's confidence rule needs it
    keep_liver_probability : return the liver probability (classes 1 and 2) where the model
        looked (:attr:`Segmentation.liver_probability`), as a cascade that takes the mean of
        its two stages' liver inside the box needs it

    Returns
    -------
    :class:`Segmentation`

    Raises
    ------
    LiverTumorError
        The model's input channels differ from what ``prep`` makes.
    """
    from tqdm.auto import tqdm

    vol = volume if isinstance(volume, NiftiVolume) else NiftiVolume(volume)
    check_model_fits(model, prep, vol.path)
    rows, cols, n_slices = vol.geometry.canonical_shape
    inputs = SliceInputs(vol, prep, model_side(model, prep), box)
    ks_all = range(box.slice0, box.slice1) if box is not None else range(n_slices)
    rules = rules_of(postprocess)
    out = _Outputs((rows, cols, n_slices), box, keep_probabilities,
                   keep_tumor_probability or rules.min_tumor_confidence > 0,
                   keep_liver_probability)
    batches = [ks_all[s:s + batch_size] for s in range(0, len(ks_all), batch_size)]
    for ks, x in tqdm(zip(batches, _prefetched(inputs.batch, batches), strict=True),
                      total=len(batches), desc=vol.path.name, unit="batch",
                      disable=not progress, leave=False):
        out.add(predict_probabilities(model, x, tta), ks)  # (B, S, S, 3)
    tumor, liver = out.kept()
    labels = out.labels
    if rules.any:
        labels = apply_rules(labels, vol.geometry.spacing, rules, tumor)
    return Segmentation(labels, out.probabilities, vol.geometry, box, tumor, liver)


class _Outputs:
    """What :func:`predict_volume` makes of the model's batches: the uint8 labels on the
    volume's grid (0 outside the box), and what it was asked to keep: all class probabilities
    (float32, the whole grid; (1, 0, 0) outside the box), or the tumor (float32) and liver
    (float16, classes 1 and 2) probabilities of the part it predicts (the box, or the
    volume)."""

    def __init__(self, shape: tuple[int, int, int], box: Box | None, keep_all: bool,
                 keep_tumor: bool, keep_liver: bool):
        self.box = box
        self.plane = box.plane if box is not None else (slice(None), slice(None))
        self.plane_shape = box.shape[:2] if box is not None else shape[:2]
        self.first = box.slice0 if box is not None else 0
        self.keep_liver = keep_liver
        self.labels = np.zeros(shape, np.uint8)
        self.probabilities = self.tumor = self.liver = None
        part = box.shape if box is not None else shape
        if keep_all:
            self.probabilities = np.zeros(shape + (3,), np.float32)
            self.probabilities[..., 0] = 1.0
        else:
            self.tumor = np.zeros(part, np.float32) if keep_tumor else None
            self.liver = np.zeros(part, np.float16) if keep_liver else None

    def add(self, p: np.ndarray, ks) -> None:
        """Class probabilities (B, S, S, 3) of the slices ``ks`` (consecutive)."""
        at = self.plane + (slice(ks[0], ks[-1] + 1),)
        if self.probabilities is not None:
            p = resize_probabilities(p, self.plane_shape)
            self.labels[at] = labels_of(p).transpose(1, 2, 0)
            self.probabilities[at] = p.transpose(1, 2, 0, 3)
            return
        self.labels[at] = resized_labels(p, self.plane_shape)
        if self.tumor is None and self.liver is None:
            return
        fg = resize_probabilities(p[..., 1:], self.plane_shape).transpose(1, 2, 0, 3)
        local = slice(ks[0] - self.first, ks[-1] + 1 - self.first)
        if self.tumor is not None:
            self.tumor[..., local] = fg[..., 1]
        if self.liver is not None:
            self.liver[..., local] = fg[..., 0] + fg[..., 1]

    def kept(self) -> tuple[ClassProbability | None, ClassProbability | None]:
        """The tumor and liver probabilities of the part predicted (None where not kept;
        with all class probabilities kept, the tumor's always)."""
        index = self.box.index if self.box is not None else None
        tumor, liver = self.tumor, self.liver
        if self.probabilities is not None:
            part = self.probabilities if index is None else self.probabilities[index]
            tumor = part[..., 2]
            liver = liver_probability(part) if self.keep_liver else None
        return (ClassProbability(tumor, index) if tumor is not None else None,
                ClassProbability(liver, index) if liver is not None else None)


def _prefetched(make, items):
    """Yield ``make(item)`` for each item, making the next one in a background thread while
    the caller works on the current one (the model runs while the next batch's images are
    made; both release the GIL). One item ahead: memory holds two batches of inputs."""
    from concurrent.futures import ThreadPoolExecutor

    if not items:
        return
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(make, items[0])
        for item in items[1:]:
            ready = pending.result()
            pending = pool.submit(make, item)
            yield ready
        yield pending.result()


def resize_probabilities(p: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of class probabilities (B, S, S, C) to (B, rows, columns, C), float32.

    Resizing probabilities before the argmax gives smooth boundaries at the original
    resolution (resizing the label map would give blocky ones). One batched
    ``tf.image.resize`` (half-pixel centres; antialiased where it shrinks): the same values
    as Pillow's ``BILINEAR`` resize of each channel, to float32 rounding (tested).
    """
    import tensorflow as tf

    p = np.asarray(p, np.float32)
    if tuple(p.shape[1:3]) == tuple(shape):
        return p
    return _resize(tf.constant(p), shape).numpy()


def _resize(p, shape: tuple[int, int]):
    """``tf.image.resize`` of a (B, S, S, C) tensor as :func:`resize_probabilities` does it."""
    import tensorflow as tf

    shrinks = shape[0] < p.shape[1] or shape[1] < p.shape[2]
    return tf.image.resize(p, shape, method="bilinear", antialias=shrinks)


def resized_labels(p: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """uint8 labels (rows, columns, B) of class probabilities (B, S, S, 3) resized to
    ``shape``: the argmax of :func:`resize_probabilities` (the first class on ties), without
    making the resized probabilities.

    The resize is linear, so it resizes the two differences p1 - p0 and p2 - p0 instead of
    three channels: class 1 wins where p1 - p0 > 0, class 2 where p2 - p0 > max(0, p1 - p0).
    Equal to ``labels_of(resize_probabilities(p, shape))`` up to float rounding at exact ties
    (tested); the comparisons and the transpose run in TensorFlow, on all cores.
    """
    import tensorflow as tf

    p = np.asarray(p, np.float32)
    d = tf.constant(p[..., 1:] - p[..., :1])
    if tuple(p.shape[1:3]) != tuple(shape):
        d = _resize(d, shape)
    d1, d2 = d[..., 0], d[..., 1]
    labels = tf.where(d2 > tf.maximum(d1, 0.0), tf.constant(2, tf.uint8),
                      tf.cast(d1 > 0, tf.uint8))
    return tf.transpose(labels, (1, 2, 0)).numpy()


def liver_probability(p: np.ndarray) -> np.ndarray:
    """The liver's probability, classes 1 and 2 (the liver with its tumors, as LiTS counts
    the liver), of class probabilities (..., 3): (...), their dtype."""
    return p[..., 1] + p[..., 2]


def labels_of(p: np.ndarray) -> np.ndarray:
    """uint8 argmax over the last axis of probabilities (..., C): ``np.argmax`` (the first
    class on ties) on a C-contiguous array, where it is fastest."""
    return np.ascontiguousarray(p).argmax(-1).astype(np.uint8)


def segment(
    model_dir: str | Path,
    volume_path: str | Path,
    out_path: str | Path,
    probabilities_path: str | Path | None = None,
    batch_size: int = 16,
    postprocess: PostProcessing | bool | None = None,
    progress: bool = True,
    tta: bool = False,
    series_uid: str | None = None,
    dicom_seg_path: str | Path | None = None,
) -> Path:
    """Segment a CT volume and write the label map on its original grid.

    Parameters
    ----------
    model_dir : a folder written by ``livertumor train`` (``model.keras``,
        ``preprocessing.json``), or a cascade: a folder holding ``cascade.json`` or that file
        (:mod:`.cascade`)
    volume_path : the CT: a ``.nii`` or ``.nii.gz`` file, or a folder holding a DICOM CT
        series (any depth; :mod:`livertumor.data.dicom`)
    out_path : where to write the uint8 label map (``.nii.gz`` recommended); for a DICOM
        series, on the series' grid with its RAS+ affine
    probabilities_path : optional; writes liver and tumor probabilities as a 4-D uint8 NIfTI
        (last axis: liver, tumor; value / 255 = probability) on the same grid
    postprocess : :class:`PostProcessing` rules, True (the largest liver component), or None
        (a cascade's own rules; none for a single model)
    tta : test-time augmentation (:data:`TTA_SCALES`)
    series_uid : the DICOM series to read when the folder holds several
    dicom_seg_path : DICOM input only: also write the labels as a DICOM-SEG object that
        references the series (:mod:`livertumor.data.dicom_seg`)

    Returns
    -------
    Path of the label map. Nothing is written when an error is raised.

    Raises
    ------
    LiverTumorError (and subclasses), naming the file: missing or broken model folder or
    volume.
    """
    from ..data.dicom import DicomVolume, open_volume
    from .cascade import load_predictor

    predictor = load_predictor(model_dir, postprocess, batch_size, tta)
    volume = open_volume(volume_path, series_uid)
    if dicom_seg_path is not None and not isinstance(volume, DicomVolume):
        raise LiverTumorError("a DICOM-SEG output needs a DICOM series as input (a folder)",
                              volume_path)
    result = predictor.predict(volume, keep_probabilities=probabilities_path is not None,
                               progress=progress)
    seg = None
    if dicom_seg_path is not None:  # made before anything is written
        from ..data.dicom_seg import make_dicom_seg, save_dicom_seg
        from ..provenance import package_versions

        seg = make_dicom_seg(result.labels, volume, algorithm=f"livertumor {Path(model_dir).name}",
                             version=package_versions(["livertumor"]).get("livertumor", "0"))
    out = write_like(result.labels, result.geometry, out_path)
    if seg is not None:
        save_dicom_seg(seg, dicom_seg_path)
    if probabilities_path is not None:
        write_probabilities(result, probabilities_path)
    return out


def write_probabilities(result: Segmentation, path: str | Path) -> Path:
    """Liver (classes 1 + 2) and tumor probabilities as a 4-D uint8 NIfTI on the input grid."""
    import nibabel as nib

    g = result.geometry
    p = result.probabilities
    liver, tumor = liver_probability(p), p[..., 2]
    disk = np.stack([g.from_canonical(liver), g.from_canonical(tumor)], axis=-1)
    header = g.header.copy()
    header.set_data_dtype(np.uint8)  # nibabel picks scl_slope so that [0, 1] fits in uint8
    img = nib.Nifti1Image(disk.astype(np.float32), g.affine, header=header)
    img.header.set_intent("estimate", name="liver,tumor prob")
    return save_atomic(img, path)
