"""The Keras callbacks of a training run: what makes it resumable and what it writes.

Both training loops (``Model.fit`` on one host, :func:`.distributed.fit_multi_worker` across
workers) drive the same list, made by :func:`make_callbacks`:

- :class:`MovingBackup` (Keras's ``BackupAndRestore``) in ``backup/``: weights, optimizer state
  and epoch of the last finished epoch, restored when a killed run is started again;
- :class:`ResumableHistory`: ``history.csv``, one row per epoch;
- ``ModelCheckpoint``: ``best.keras`` (lowest ``val_loss``), each epoch that improves it;
- :class:`SaveAtEnd`: ``last.keras``, the last epoch's model, once training has ended;
- ``TensorBoard`` logs in ``logs/``, only when the ``tensorboard`` package is installed;
- ``EarlyStopping`` on ``val_loss`` when ``patience`` > 0.
"""

from __future__ import annotations

import csv
import importlib
import os
from pathlib import Path

import keras

from ..atomic import atomic_path
from .config import MONITOR, TrainConfig


class ResumableHistory(keras.callbacks.Callback):
    """``history.csv`` rewritten atomically after every epoch, resumable.

    On the first epoch of a call (the epoch ``BackupAndRestore`` resumes from), rows of epochs
    that will run again are dropped, and the best ``val_loss`` seen so far is handed to the
    checkpoint and to early stopping, so that they go on where they were.

    Parameters
    ----------
    path : path of ``history.csv``
    checkpoint : the best-model ``ModelCheckpoint``, or None
    early_stopping : the ``EarlyStopping`` callback, or None
    write : bool
        False on a non-chief worker: the same state, nothing written.
    """

    def __init__(self, path: Path, checkpoint, early_stopping, write: bool = True):
        super().__init__()
        self.path, self.checkpoint, self.early_stopping = path, checkpoint, early_stopping
        self.write = write
        self.rows: list[dict] | None = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.rows is not None:
            return
        rows = []
        if self.path.exists():
            with open(self.path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) < epoch]
        self.rows = rows
        scores = [float(r[MONITOR]) for r in rows if r.get(MONITOR) not in (None, "")]
        if scores:
            best_i = min(range(len(scores)), key=scores.__getitem__)
            if self.checkpoint is not None:
                self.checkpoint.best = scores[best_i]
            if self.early_stopping is not None:
                self.early_stopping.best = scores[best_i]
                self.early_stopping.best_epoch = best_i
                self.early_stopping.wait = len(scores) - 1 - best_i

    def on_epoch_end(self, epoch, logs=None):
        lr = self.model.optimizer.learning_rate
        row = {"epoch": epoch, "learning_rate": float(keras.ops.convert_to_numpy(lr))}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.rows.append(row)
        if not self.write:
            return
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)


class BestWeights(keras.callbacks.Callback):
    """The weights of the epoch with the lowest ``val_loss`` this process ran, kept in memory.

    The same choice as the best-model ``ModelCheckpoint`` (strictly lower, so the first of
    equal epochs), so that the final model can take them from memory instead of reading
    ``best.keras`` back (tens of seconds for a ResNet-50 U-Net with its optimizer state).
    A resumed run's earlier epochs are not here: :meth:`weights_of` then answers None.
    """

    def __init__(self):
        super().__init__()
        self.best, self.epoch, self.weights = float("inf"), None, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(MONITOR)
        if value is not None and float(value) < self.best:
            self.best, self.epoch = float(value), epoch
            self.weights = self.model.get_weights()

    def weights_of(self, epoch: int) -> list | None:
        """The kept weights if they are those of ``epoch`` (the run's best), else None."""
        return self.weights if self.epoch is not None and self.epoch == epoch else None


class MovingBackup(keras.callbacks.BackupAndRestore):
    """Keras's ``BackupAndRestore`` with its double checkpoint, the previous weights moved
    aside (a rename) rather than copied before the new ones are written.

    Keras keeps the previous epoch's files as ``*.bkp`` and restores them when the latest
    weights cannot be read (a run killed while writing them). It copies the weights file to
    make that backup; for a ResNet-50 U-Net with its optimizer state that is 400 MB read and
    written again every epoch, on top of the 400 MB of new weights. A rename leaves the same
    files behind (the small metadata file is still copied, so that its last version stays in
    place until the new one is written, as in Keras) at no cost:
    ``benchmarks/checkpoint_writes.py``.
    """

    def __init__(self, backup_dir: str):
        super().__init__(backup_dir, double_checkpoint=True)

    def on_train_begin(self, logs=None):
        # Killed after moving the weights aside but before the new file exists: the epoch
        # file still describes the weights moved aside (it is rewritten after the weights),
        # so they go back in place. (A copy, as Keras makes it, never leaves no file.)
        if (not os.path.exists(self._weights_path)
                and os.path.exists(self._prev_weights_path)):
            os.replace(self._prev_weights_path, self._weights_path)
        super().on_train_begin(logs)

    def _save_model(self):
        if os.path.exists(self._weights_path):
            os.replace(self._weights_path, self._prev_weights_path)
        super()._save_model()  # nothing left to copy; writes the weights and the epoch


class SaveAtEnd(keras.callbacks.Callback):
    """Save the model (``model.save``, with its optimizer state) to ``path`` atomically when
    training ends, by its last epoch or by early stopping. While a run is going, the backup
    holds its last epoch; a run killed before its end leaves no new file here."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)

    def on_train_end(self, logs=None):
        with atomic_path(self.path, keep_suffix=True) as tmp:
            self.model.save(tmp)


class RestoreOnly(keras.callbacks.BackupAndRestore):
    """Restores the chief's backup at the start; never saves or deletes it (non-chief
    workers of a multi-worker run)."""

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package can be imported.

    ``keras.callbacks.TensorBoard`` writes its scalars with ``tf.summary``, which that package
    provides; without it, training runs without TensorBoard logs.
    """
    try:
        importlib.import_module("tensorboard")
    except ImportError:
        return False
    return True


def make_callbacks(model_dir: Path, config: TrainConfig, extra=None, chief: bool = True,
                   tensorboard: bool = True) -> list:
    """The callbacks of a run, in the order they must be called.

    Parameters
    ----------
    model_dir : the model folder (exists on the chief)
    config : TrainConfig (``patience``)
    extra : list of Keras callbacks, optional
        Appended after the standard ones.
    chief : bool
        False (a non-chief worker of a multi-worker run): the same state (resume epoch, history,
        early stopping), but nothing is written.
    tensorboard : bool
        Add the ``TensorBoard`` callback (``logs/``); pass :func:`tensorboard_available`.

    Returns
    -------
    list of ``keras.callbacks.Callback``; the backup (or :class:`RestoreOnly`) first,
    since it sets the epoch before anything else looks at it.
    """
    stopper = (keras.callbacks.EarlyStopping(monitor=MONITOR, mode="min",
                                             patience=config.patience)
               if config.patience > 0 else None)
    backup_dir = str(model_dir / "backup")
    if not chief:
        callbacks = [RestoreOnly(backup_dir),
                     ResumableHistory(model_dir / "history.csv", None, stopper, write=False)]
    else:
        best = keras.callbacks.ModelCheckpoint(str(model_dir / "best.keras"), monitor=MONITOR,
                                               mode="min", save_best_only=True)
        callbacks = [
            MovingBackup(backup_dir),
            ResumableHistory(model_dir / "history.csv", best, stopper),
            best,
            SaveAtEnd(model_dir / "last.keras"),
        ]
        if tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(str(model_dir / "logs"),
                                                         write_graph=False))
    if stopper is not None:
        callbacks.append(stopper)
    return callbacks + list(extra or [])
