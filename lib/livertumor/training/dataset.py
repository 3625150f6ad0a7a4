"""Training data from an export folder: manifest -> validation split -> ``tf.data`` pipelines.

The export (``livertumor export``) writes 8-bit RGB JPEG slices, PNG label maps and
``manifest.csv``. Here they become batches of ``(image, mask)``:

* ``image``: float32 (B, S, S, C) in [0, 1] (the JPEG divided by 255: the ``to_nchan``
  channels of the export, C = 3; an export with ``context`` k adds the 2k neighbouring-slice
  channels of its ``context`` images, C = 3 + 2k), S = ``image_size``;
* ``mask``: uint8 (B, S, S) labels 0 background, 1 liver, 2 tumor.

Validation uses whole training *cases* held out from the training split, never the test split,
so no patient is on both sides. The test split is left for evaluation. TensorFlow-specific code
lives here (and in the distribution strategy); the models, loss and metrics are pure Keras.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import LiverTumorError

MANIFEST_COLUMNS = ("case_id", "split", "slice_index", "image", "mask", "tumor_pixels")


def load_manifest(export_dir: str | Path) -> pd.DataFrame:
    """Read ``export_dir/manifest.csv`` with absolute image and mask paths.

    Returns
    -------
    DataFrame with at least :data:`MANIFEST_COLUMNS`; ``image``, ``mask`` (and ``context``)
    are absolute.

    Raises
    ------
    LiverTumorError
        Missing manifest, missing columns, or an empty manifest.
    """
    export_dir = Path(export_dir)
    path = export_dir / "manifest.csv"
    if not path.exists():
        raise LiverTumorError("no manifest.csv: export the slices first "
                              "(python -m livertumor export DATA_DIR OUT_DIR)", export_dir)
    table = pd.read_csv(path)
    missing = [c for c in MANIFEST_COLUMNS if c not in table.columns]
    if missing:
        raise LiverTumorError(f"manifest lacks columns {missing}", path)
    if table.empty:
        raise LiverTumorError("manifest lists no slices", path)
    for column in ("image", "mask", "context"):
        if column in table.columns:
            table[column] = [str(export_dir / p) for p in table[column]]
    return table


def split_validation(train: pd.DataFrame, fraction: float = 0.2, seed: int = 0
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out whole training cases for validation, stratified by tumor presence.

    Cases with and without tumor are shuffled separately (numpy ``default_rng(seed)``) and
    ``round(fraction * n)`` of each group (at least one case in total when there are two or
    more cases) go to validation.

    Parameters
    ----------
    train : DataFrame
        Manifest rows of the training split.
    fraction : float in [0, 1)

    Returns
    -------
    (train_rows, validation_rows), disjoint by ``case_id``.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    per_case = train.groupby("case_id")["tumor_pixels"].sum()
    rng = np.random.default_rng(seed)
    val_cases: list = []
    for has_tumor in (True, False):
        ids = sorted(per_case.index[(per_case > 0) == has_tumor])
        rng.shuffle(ids)
        val_cases += ids[: int(round(fraction * len(ids)))]
    if fraction > 0 and not val_cases and len(per_case) >= 2:
        val_cases = [sorted(per_case.index)[int(rng.integers(len(per_case)))]]
    is_val = train["case_id"].isin(val_cases)
    return train[~is_val].reset_index(drop=True), train[is_val].reset_index(drop=True)


def every_kth_slice(rows: pd.DataFrame, k: int) -> pd.DataFrame:
    """The first, (k+1)-th, (2k+1)-th ... row of each case in slice order (``k`` = 1: all
    rows), in manifest order."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k == 1 or rows.empty:
        return rows
    rank = rows.groupby("case_id")["slice_index"].rank(method="first").astype(int) - 1
    return rows[rank % k == 0].reset_index(drop=True)


@dataclass(frozen=True)
class Augmentation:
    """Random geometric and intensity changes that keep anatomy plausible.

    No left-right (or up-down) flips: the liver is on the patient's right and the spine is
    posterior in every CT, and a model should be able to rely on that. Rotations, scaling and
    shifts stay small, like differences in patient position.

    Attributes
    ----------
    rotation_deg : maximum absolute in-plane rotation
    scale : maximum relative zoom in or out
    shift : maximum translation as a fraction of the image side
    brightness, contrast : maximum additive / relative intensity change (on [0, 1] images)
    """

    rotation_deg: float = 10.0
    scale: float = 0.1
    shift: float = 0.06
    brightness: float = 0.05
    contrast: float = 0.1


def _resize_uint8(image, size: int):
    """Bilinear (antialiased) resize of uint8 image(s) to ``size``, rounded back to uint8."""
    import tensorflow as tf

    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def resize_for_model(images: np.ndarray, size: int) -> np.ndarray:
    """Exported uint8 images (B, H, W, 3) -> model inputs float32 (B, size, size, 3) in [0, 1],
    exactly as the training pipeline makes them (used by inference)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(images, tf.uint8)
    if size and tuple(images.shape[1:3]) != (size, size):
        x = _resize_uint8(x, size)
    return (tf.cast(x, tf.float32) / 255.0).numpy()


def context_channels(rows: pd.DataFrame) -> int:
    """Context channels of an export's slices (0 without a ``context`` column): the width of
    a context image over its height (:func:`livertumor.data.preprocessing.tile`)."""
    if "context" not in rows.columns or rows.empty:
        return 0
    from PIL import Image

    with Image.open(rows["context"].iloc[0]) as im:
        width, height = im.size
    return width // height


def _untile(context, n: int):
    """uint8 (S, n * S, 1) grey context image -> (S, S, n) channels (as ``untile``)."""
    import tensorflow as tf

    rows = tf.shape(context)[0]
    planes = tf.transpose(tf.reshape(context[..., 0], (rows, n, -1)), (0, 2, 1))
    planes.set_shape([None, None, n])
    return planes


def _decode(image_path, mask_path, size: int, context_path=None, n_context: int = 0):
    """Read one JPEG image (and its context JPEG) and PNG mask, resized to ``size``; all stay
    uint8 (cache-friendly)."""
    import tensorflow as tf

    # INTEGER_ACCURATE: the IDCT of libjpeg's accurate method, as Pillow decodes at inference;
    # TensorFlow's default (INTEGER_FAST) differs by up to 5 grey levels
    image = tf.io.decode_jpeg(tf.io.read_file(image_path), channels=3,
                              dct_method="INTEGER_ACCURATE")
    if n_context:
        context = tf.io.decode_jpeg(tf.io.read_file(context_path), channels=1,
                                    dct_method="INTEGER_ACCURATE")
        image = tf.concat([image, _untile(context, n_context)], axis=-1)
    mask = tf.io.decode_png(tf.io.read_file(mask_path), channels=1)
    if size:
        image = _resize_uint8(image, size)
        mask = tf.image.resize(mask, (size, size), method="nearest")
    return image, tf.cast(mask[..., 0], tf.uint8)


def _patch(image, mask, size: int, key):
    """A random ``size`` x ``size`` patch of one uint8 slice (H, W, C) and its mask (H, W).

    On a slice with tumor, the patch holds one of its tumor pixels (drawn uniformly) at a
    uniform position inside the patch; otherwise the patch lies anywhere, uniformly. ``key``
    is a stateless seed (2,) int64: the same key gives the same patch. (nnU-Net's trainer
    forces the last third of each batch onto foreground, ``oversample_foreground_percent =
    0.33``; here the tumor slices are already drawn ``tumor_oversampling`` times as often.)
    """
    import tensorflow as tf

    keys = tf.random.experimental.stateless_split(key, 2)
    hw = tf.shape(mask)[:2]
    tumor = tf.cast(tf.where(mask == 2), tf.int32)  # (n, 2) rows and columns
    n = tf.shape(tumor)[0]
    pick = tf.random.stateless_uniform((), keys[0], 0, tf.maximum(n, 1), tf.int32)
    point = tf.concat([tumor, tf.zeros((1, 2), tf.int32)], axis=0)[pick]  # (0, 0) if none
    has_tumor = n > 0
    low = tf.where(has_tumor, tf.maximum(point - size + 1, 0), 0)
    high = tf.where(has_tumor, tf.minimum(point, hw - size), hw - size)  # inclusive
    u = tf.random.stateless_uniform((2,), keys[1])
    offset = tf.minimum(low + tf.cast(u * tf.cast(high - low + 1, tf.float32), tf.int32), high)
    image = tf.slice(image, tf.concat([offset, [0]], axis=0), [size, size, -1])
    mask = tf.slice(mask, offset, [size, size])
    image.set_shape([size, size, None])
    mask.set_shape([size, size])
    return image, mask


_PATCH_KEY_SALT = 1 << 40
"""Added to the seed in the patches' stateless keys, so that they never equal the batch keys
of the augmentation."""


def _keyed_map(ds, first: int, fn):
    """``ds`` mapped by ``fn(image, mask, key)``, one call at a time, where ``key`` =
    (``first``, the element's position in the stream) as int64: a stateless random seed that
    does not depend on timing or on how the stream is consumed."""
    import tensorflow as tf

    first = tf.constant(first, tf.int64)
    keyed = tf.data.Dataset.zip((ds, tf.data.Dataset.counter()))
    return keyed.map(lambda xy, k: fn(xy[0], xy[1], tf.stack([first, k])))


def _to_float(image, mask):
    import tensorflow as tf

    return tf.cast(image, tf.float32) / 255.0, mask


def _augment(images, masks, aug: Augmentation, seed):
    """One random affine map per slice of a batch, the same for its image (bilinear) and its
    mask (nearest neighbour), then brightness and contrast; ``images`` uint8 (B, S, S, C),
    ``masks`` uint8 (B, S, S) -> float32 images in [0, 1] and uint8 masks.

    The whole batch is warped by one ``ImageProjectiveTransformV3`` (one transform per slice),
    so the per-slice cost is the warp itself, not the dispatch of a dozen small ops.
    """
    import tensorflow as tf

    images = tf.cast(images, tf.float32) / 255.0
    n = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1], tf.float32)
    u = tf.random.stateless_uniform(tf.stack([n, 6]), seed=seed, minval=-1.0, maxval=1.0)
    angle = u[:, 0] * aug.rotation_deg * math.pi / 180
    zoom = 1.0 + u[:, 1] * aug.scale
    tx, ty = u[:, 2] * aug.shift * size, u[:, 3] * aug.shift * size
    c = (size - 1) / 2
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    zeros = tf.zeros_like(cos)
    # Output pixel (x, y) samples the input at R(x - c) + c + t (inverse map, as TF expects).
    transforms = tf.stack([cos, -sin, c - cos * c + sin * c + tx,
                           sin, cos, c - sin * c - cos * c + ty, zeros, zeros], axis=1)
    shape = tf.shape(images)[1:3]

    def warp(x, interpolation):
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=transforms, output_shape=shape, fill_value=0.0,
            interpolation=interpolation, fill_mode="CONSTANT")

    images = warp(images, "BILINEAR")
    masks = tf.cast(warp(tf.cast(masks[..., None], tf.float32), "NEAREST")[..., 0], tf.uint8)
    contrast = (1.0 + u[:, 4] * aug.contrast)[:, None, None, None]
    brightness = (u[:, 5] * aug.brightness)[:, None, None, None]
    images = (images - 0.5) * contrast + 0.5 + brightness
    return tf.clip_by_value(images, 0.0, 1.0), masks


def class_shares(rows: pd.DataFrame, pixels_per_slice: int, tumor_oversampling: float = 1.0
                 ) -> np.ndarray:
    """Each class's share of the training pixels as the stream draws the slices (a slice with
    tumor ``tumor_oversampling`` times as often as one without: :func:`_training_slices`).

    Parameters
    ----------
    rows : manifest rows (``liver_pixels``: labels 1 and 2; ``tumor_pixels``: label 2)
    pixels_per_slice : pixels of an exported mask (its side squared at a fixed export size)
    tumor_oversampling : as in :func:`make_dataset` (1: every slice alike)

    Returns
    -------
    float64 (3,): background, liver, tumor; sums to 1.

    Examples
    --------
    >>> rows = pd.DataFrame({"liver_pixels": [0, 30], "tumor_pixels": [0, 10]})
    >>> class_shares(rows, 100, tumor_oversampling=3.0).round(3).tolist()  # weights 1 and 3
    [0.775, 0.15, 0.075]
    """
    tumor_slice = rows["tumor_pixels"].to_numpy() > 0
    weight = np.where(tumor_slice, max(tumor_oversampling, 1.0), 1.0)
    liver = float(np.dot(weight, rows["liver_pixels"].to_numpy()))
    tumor = float(np.dot(weight, rows["tumor_pixels"].to_numpy()))
    total = float(weight.sum()) * pixels_per_slice
    if total <= 0:
        raise ValueError("no training pixels")
    return np.array([total - liver, liver - tumor, tumor]) / total


def _training_slices(decoded, rows: pd.DataFrame, seed: int, tumor_oversampling: float):
    """The endless stream of training slices (uint8 image, mask): all slices, reshuffled each
    pass, mixed when ``tumor_oversampling`` > 1 with a stream of the tumor slices alone, so a
    tumor slice comes ``tumor_oversampling`` times as often (:func:`make_dataset`, Notes).
    ``decoded(subset)`` gives the decoded (and cached) slices of a subset of ``rows``."""
    import tensorflow as tf

    def endless(subset, salt):
        return decoded(subset).shuffle(len(subset), seed=seed + salt,
                                       reshuffle_each_iteration=True).repeat()

    tumor = rows[rows["tumor_pixels"] > 0]
    n, t = len(rows), len(tumor)
    ds = endless(rows, 0)
    if tumor_oversampling > 1 and 0 < t < n:
        w_tumor = (tumor_oversampling - 1) * t / n
        ds = tf.data.Dataset.sample_from_datasets(
            [ds, endless(tumor, 1)], weights=[1 / (1 + w_tumor), w_tumor / (1 + w_tumor)],
            seed=seed)
    return ds


def make_dataset(
    rows: pd.DataFrame,
    batch_size: int,
    image_size: int = 0,
    training: bool = False,
    seed: int = 0,
    tumor_oversampling: float = 2.0,
    augmentation: Augmentation | None = Augmentation(),
    cache: bool = True,
    patch_size: int = 0,
):
    """A ``tf.data.Dataset`` of ``(image, mask)`` batches from manifest rows.

    Parameters
    ----------
    rows : DataFrame with absolute ``image`` and ``mask`` paths and ``tumor_pixels``
    batch_size : int
    image_size : int
        Side S of the square model input; 0 keeps the exported size.
    training : bool
        True: an endless stream (pass ``steps_per_epoch`` to ``fit``) in which slices with
        tumor are drawn ``tumor_oversampling`` times as often as the others, shuffled and
        augmented. False: every row once, in manifest order, unaugmented.
    seed : int
        Seeds shuffling, sampling and augmentation (stateless augmentation keyed by the
        batch's position in the stream).
    cache : bool
        Keep decoded uint8 slices in memory after the first pass (3 bytes per pixel: the demo
        export fits easily; full LiTS at 256 px needs about 6 GB, so turn it off there or
        cache to a file).
    patch_size : int
        Training only: 0 yields whole slices; P > 0 yields random P x P patches of the
        ``image_size`` slices, one per drawn slice, before augmentation (a slice with tumor
        gives a patch holding one of its tumor pixels; :func:`_patch`).

    Returns
    -------
    tf.data.Dataset yielding float32 (B, S, S, C) images in [0, 1] and uint8 (B, S, S) masks
    (C = 3, plus the context channels when ``rows`` has a ``context`` column; S =
    ``patch_size`` when set for training, else ``image_size``).

    Notes
    -----
    Oversampling mixes two streams with ``sample_from_datasets``: all slices uniformly, and
    tumor slices uniformly, with weights ``1 : (k - 1) T / N`` (N slices, T with tumor), so a
    tumor slice is drawn ``k`` times as often as a slice without. Slices stay uint8 until they
    are batched; the conversion to float and the augmentation work on whole batches
    (stateless, keyed by the batch's position in the stream).
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    if rows.empty:
        raise LiverTumorError("no slices to build a dataset from")

    n_context = context_channels(rows)

    def decoded(subset):
        paths = [subset[c].to_numpy(dtype=str) for c in ("image", "mask")]
        paths.append(subset["context"].to_numpy(dtype=str) if n_context else paths[0])
        ds = tf.data.Dataset.from_tensor_slices(tuple(paths))
        ds = ds.map(lambda i, m, c: _decode(i, m, image_size, c, n_context),
                    num_parallel_calls=autotune, deterministic=True)
        return ds.cache() if cache else ds

    if not training:
        return _finished(decoded(rows).batch(batch_size).map(_to_float))

    ds = _training_slices(decoded, rows, seed, tumor_oversampling)
    # Downstream of the caches every map runs one call at a time: a crop or a batch's warp
    # costs little (the demo's training stream gives about 1500 slices/s without the
    # autotuner, see _finished; training takes 50-160) and prefetch overlaps it with the
    # model's step.
    if patch_size:  # one patch per slice, keyed apart from the augmentation's batch keys
        ds = _keyed_map(ds, seed + _PATCH_KEY_SALT,
                        lambda image, mask, key: _patch(image, mask, patch_size, key))
    ds = ds.batch(batch_size, drop_remainder=True)
    if augmentation is None:
        return _finished(ds.map(_to_float))
    ds = _keyed_map(ds, seed,
                    lambda images, masks, key: _augment(images, masks, augmentation, key))
    return _finished(ds)


def _finished(ds):
    """``ds`` prefetched, with tf.data's model-based autotuning off.

    The autotuner runs in a thread of the iterator that wakes at growing intervals, up to 60 s
    apart, and the iterator's destructor waits for its next wake-up (``RootDataset::Iterator``
    joining that thread: seen in a native stack of the wait with ``py-spy dump --native``).
    Keras destroys the training iterator when ``fit`` returns, so a training waited 0-60 s
    after its last epoch (measured: 38 and 40 s in two of three 2-epoch U-Net trainings, up to
    56 s in the demo's notebooks). Without the autotuner, ``AUTOTUNE`` parallelism is the
    number of CPU cores (at most 16) and prefetch keeps its own buffer heuristic; the stream's
    elements do not depend on either."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)
