"""The single-host training loop: Keras ``Model.fit`` on the default or a mirrored strategy.

Across several workers, :func:`.distributed.fit_multi_worker` takes its place; the model, loss,
metrics and callbacks are the same (see :mod:`.trainer`).
"""

from __future__ import annotations

import pandas as pd

from .config import TrainConfig
from .inputs import training_dataset, validation_dataset


def fit_single_host(model, fit_rows: pd.DataFrame, val_rows: pd.DataFrame,
                    config: TrainConfig, steps: int, callbacks,
                    verbose: int | str = "auto") -> dict:
    """Fit ``model`` (compiled, under its strategy's scope) for ``config.epochs`` epochs.

    Parameters
    ----------
    model : compiled Keras model
    fit_rows, val_rows : manifest rows of the training and validation slices (``val_rows``
        may be empty: no validation)
    config : TrainConfig (epochs, batch size, image size, sampling, augmentation, cache)
    steps : training steps (global batches) per epoch
    callbacks : Keras callbacks (:func:`.callbacks.make_callbacks`)
    verbose : passed to ``fit``

    Returns
    -------
    dict: nothing this loop adds to the run's summary (empty); the history is in the callbacks.
    """
    train_ds = training_dataset(fit_rows, config, config.batch_size, config.seed)
    val_ds = (validation_dataset(val_rows, config, config.batch_size)
              if len(val_rows) else None)
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, steps_per_epoch=steps,
              callbacks=callbacks, shuffle=False, verbose=verbose)  # the dataset shuffles itself
    return {}
