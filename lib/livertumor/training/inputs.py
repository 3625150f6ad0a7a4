"""The training and validation datasets a :class:`~.config.TrainConfig` asks for.

Both training loops build their input pipelines here, so image size, tumor oversampling,
augmentation and caching mean the same on one host and across workers.
"""

from __future__ import annotations

import pandas as pd

from .config import TrainConfig
from .dataset import Augmentation, make_dataset


def training_dataset(rows: pd.DataFrame, config: TrainConfig, batch_size: int, seed: int):
    """The endless, shuffled, oversampled and (if ``config.augment``) augmented stream.

    Returns
    -------
    tf.data.Dataset of float32 ``(batch_size, S, S, 3)`` images in [0, 1] and uint8
    ``(batch_size, S, S)`` masks, S = ``config.patch_size`` if set, else ``config.image_size``.
    """
    return make_dataset(rows, batch_size, config.image_size, training=True, seed=seed,
                        tumor_oversampling=config.tumor_oversampling,
                        augmentation=Augmentation() if config.augment else None,
                        cache=config.cache, patch_size=config.patch_size)


def validation_dataset(rows: pd.DataFrame, config: TrainConfig, batch_size: int):
    """Every row once, in manifest order, unaugmented (the last batch may be short)."""
    return make_dataset(rows, batch_size, config.image_size, cache=config.cache)
