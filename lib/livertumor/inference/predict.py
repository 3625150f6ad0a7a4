"""Whole-volume segmentation with a trained model, written back on the scan's own grid.

``segment(model_dir, volume, out)`` reads a CT volume, turns every axial slice into the model's
input exactly as the training slices were made (the model folder's ``preprocessing.json``:
windows, histogram breaks, export size, JPEG round trip; then the training pipeline's resize),
predicts in batches, resizes the class probabilities back to the original in-plane size, takes
the argmax, and writes a uint8 label map (0 background, 1 liver, 2 tumor) with the input
file's shape, affine, qform and sform, so it opens aligned with the scan in any viewer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..data.volumes import NiftiVolume, save_atomic, write_like
from ..errors import LiverTumorError


@dataclass
class Segmentation:
    """The result of :func:`predict_volume`, in the canonical orientation.

    Attributes
    ----------
    labels : uint8 (rows, columns, slices), 0/1/2
    probabilities : float32 (rows, columns, slices, 3) or None (``keep_probabilities=False``)
    geometry : the input file's :class:`~livertumor.data.volumes.Geometry`
    """

    labels: np.ndarray
    probabilities: np.ndarray | None
    geometry: object


def load_preprocessing(model_dir: str | Path) -> dict:
    """The model folder's ``preprocessing.json`` (written by the export, copied by training)."""
    path = Path(model_dir) / "preprocessing.json"
    if not path.exists():
        raise LiverTumorError("no preprocessing.json: not a model folder written by "
                              "livertumor train", Path(model_dir))
    return json.loads(path.read_text())


def _model_inputs(hu_slices: list[np.ndarray], prep: dict, image_size: int) -> np.ndarray:
    from ..data.preprocessing import slice_to_jpeg_array
    from ..training.dataset import resize_for_model

    arrays = [slice_to_jpeg_array(hu, prep) for hu in hu_slices]
    return resize_for_model(np.stack(arrays), image_size)


def largest_liver_component(labels: np.ndarray) -> np.ndarray:
    """Post-processing: keep the largest 3-D connected liver region (labels >= 1, face
    connectivity) and drop everything outside it, tumor included (tumors lie in the liver).

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


def predict_volume(
    model,
    volume: str | Path | NiftiVolume,
    prep: dict,
    batch_size: int = 16,
    keep_probabilities: bool = False,
    postprocess: bool = False,
    progress: bool = True,
) -> Segmentation:
    """Predict every axial slice of a volume.

    Memory: the int16 volume (memory-mapped for ``.nii``), one batch of model inputs and
    outputs, and the uint8 label volume; with ``keep_probabilities`` also float32 class
    probabilities (12 bytes per voxel).

    Parameters
    ----------
    model : a Keras model with input (S, S, 3) and a 3-class softmax output
    volume : path or opened :class:`NiftiVolume`
    prep : the preprocessing dict of the model (:func:`load_preprocessing`)
    postprocess : keep only the largest liver component (:func:`largest_liver_component`)

    Returns
    -------
    :class:`Segmentation`
    """
    from tqdm.auto import tqdm

    vol = volume if isinstance(volume, NiftiVolume) else NiftiVolume(volume)
    rows, cols, n_slices = vol.geometry.canonical_shape
    image_size = int(model.input_shape[1])
    labels = np.zeros((rows, cols, n_slices), np.uint8)
    probs = np.zeros((rows, cols, n_slices, 3), np.float32) if keep_probabilities else None
    for start in tqdm(range(0, n_slices, batch_size), desc=vol.path.name, unit="batch",
                      disable=not progress, leave=False):
        ks = range(start, min(start + batch_size, n_slices))
        x = _model_inputs([vol.hu_slice(k) for k in ks], prep, image_size)
        p = np.asarray(model.predict_on_batch(x), np.float32)
        p_full = resize_probabilities(p, (rows, cols))
        labels[:, :, start:start + len(ks)] = p_full.argmax(-1).astype(np.uint8).transpose(1, 2, 0)
        if probs is not None:
            probs[:, :, start:start + len(ks)] = p_full.transpose(1, 2, 0, 3)
    if postprocess:
        labels = largest_liver_component(labels)
    return Segmentation(labels, probs, vol.geometry)


def resize_probabilities(p: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of class probabilities (B, S, S, C) to (B, rows, columns, C), float32.

    Resizing probabilities before the argmax gives smooth boundaries at the original
    resolution (resizing the label map would give blocky ones).
    """
    from PIL import Image

    b, _, _, c = p.shape
    out = np.empty((b, shape[0], shape[1], c), np.float32)
    for i in range(b):
        for j in range(c):
            img = Image.fromarray(np.ascontiguousarray(p[i, :, :, j]))
            out[i, :, :, j] = np.asarray(img.resize((shape[1], shape[0]), Image.BILINEAR))
    return out


def segment(
    model_dir: str | Path,
    volume_path: str | Path,
    out_path: str | Path,
    probabilities_path: str | Path | None = None,
    batch_size: int = 16,
    postprocess: bool = False,
    progress: bool = True,
) -> Path:
    """Segment a CT volume and write the label map on its original grid.

    Parameters
    ----------
    model_dir : a folder written by ``livertumor train`` (``model.keras``,
        ``preprocessing.json``)
    volume_path : the CT, ``.nii`` or ``.nii.gz``
    out_path : where to write the uint8 label map (``.nii.gz`` recommended)
    probabilities_path : optional; writes liver and tumor probabilities as a 4-D uint8 NIfTI
        (last axis: liver, tumor; value / 255 = probability) on the same grid
    postprocess : keep only the largest connected liver region

    Returns
    -------
    Path of the label map. Nothing is written when an error is raised.

    Raises
    ------
    LiverTumorError (and subclasses), naming the file: missing or broken model folder or
    volume.
    """
    from ..training import load_model

    model_dir = Path(model_dir)
    prep = load_preprocessing(model_dir)
    model = load_model(model_dir / "model.keras", compile=False)
    result = predict_volume(model, volume_path, prep, batch_size,
                            keep_probabilities=probabilities_path is not None,
                            postprocess=postprocess, progress=progress)
    out = write_like(result.labels, result.geometry, out_path)
    if probabilities_path is not None:
        write_probabilities(result, probabilities_path)
    return out


def write_probabilities(result: Segmentation, path: str | Path) -> Path:
    """Liver (classes 1 + 2) and tumor probabilities as a 4-D uint8 NIfTI on the input grid."""
    import nibabel as nib

    g = result.geometry
    p = result.probabilities
    liver, tumor = p[..., 1] + p[..., 2], p[..., 2]
    disk = np.stack([g.from_canonical(liver), g.from_canonical(tumor)], axis=-1)
    header = g.header.copy()
    header.set_data_dtype(np.uint8)  # nibabel picks scl_slope so that [0, 1] fits in uint8
    img = nib.Nifti1Image(disk.astype(np.float32), g.affine, header=header)
    img.header.set_intent("estimate", name="liver,tumor prob")
    return save_atomic(img, path)
