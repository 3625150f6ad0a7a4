"""Training a segmentation model on an export folder, resumable, one model folder per run.

``train(export_dir, model_dir, TrainConfig(...))`` writes to ``model_dir``:

- ``model.keras``: the final model (the weights of the best validation epoch);
- ``best.keras`` and ``last.keras``: checkpoints of the best and of the last finished epoch;
- ``preprocessing.json``: copied from the export, so inference preprocesses exactly as training;
- ``config.json``: the :class:`TrainConfig`, data counts, validation cases, package versions,
  git commit;
- ``history.csv``: loss, metrics and learning rate per epoch, training and validation;
- ``logs/``: TensorBoard logs; ``backup/``: the state a killed run resumes from.

Killed and started again with the same command, a run continues after the last finished epoch
(Keras ``BackupAndRestore``: weights, optimizer state and epoch), with the history, the best
checkpoint and early stopping picking up where they were.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import LiverTumorError

ARCHITECTURES = ("unet", "resnet50_unet")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "mirrored", "multi_worker")
MONITOR = "val_loss"


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (all JSON-serialisable; saved as ``config.json``).

    Attributes
    ----------
    architecture : ``unet`` or ``resnet50_unet``
    epochs, batch_size : int
        ``batch_size`` is the global batch, split evenly over the replicas of the strategy.
    image_size : int
        Model input side in pixels (a multiple of 32 for the ResNet-50 U-Net).
    precision : ``float32``, ``mixed_float16`` (NVIDIA GPUs) or ``mixed_bfloat16`` (recent CPUs,
        TPUs, Ampere+ GPUs)
    strategy : ``auto`` (the default device), ``mirrored`` (all local GPUs, or logical CPUs) or
        ``multi_worker`` (``MultiWorkerMirroredStrategy`` over the ``TF_CONFIG`` cluster; see
        :mod:`livertumor.training.distributed`)
    encoder_weights : ``none``, ``imagenet`` (a local file; nothing is downloaded) or a path
    seed : int
        Seeds Python, numpy and Keras (``keras.utils.set_random_seed``) and the data pipeline.
    learning_rate : float
        Peak learning rate of Adam with cosine decay over all steps.
    base_filters, depth : int
        U-Net width and number of poolings (ignored by the ResNet-50 U-Net).
    steps_per_epoch : int
        Training batches per epoch; 0 means one pass's worth (slices / batch size).
    validation_fraction : float
        Share of the training cases held out for validation (whole cases).
    tumor_oversampling : float
        Slices with tumor are drawn this many times as often as slices without.
    dice_weight : float
        Weight of the soft-Dice term against cross-entropy.
    patience : int
        Epochs without a better ``val_loss`` before early stopping (0: never stop early).
    augment, cache : bool
        Data augmentation on/off; keep decoded slices in memory.
    """

    architecture: str = "unet"
    epochs: int = 20
    batch_size: int = 16
    image_size: int = 128
    precision: str = "float32"
    strategy: str = "auto"
    encoder_weights: str = "none"
    seed: int = 0
    learning_rate: float = 1e-3
    base_filters: int = 16
    depth: int = 4
    steps_per_epoch: int = 0
    validation_fraction: float = 0.2
    tumor_oversampling: float = 3.0
    dice_weight: float = 1.0
    patience: int = 10
    augment: bool = True
    cache: bool = True

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, "
                             f"got {self.architecture!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.architecture == "resnet50_unet" and self.image_size % 32:
            raise ValueError(f"the ResNet-50 U-Net needs an image size divisible by 32, "
                             f"got {self.image_size}")
        if self.epochs < 1 or self.batch_size < 1 or self.image_size < 16:
            raise ValueError("epochs and batch_size must be >= 1 and image_size >= 16")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a dict, ignoring keys that are not settings (e.g. notebook parameters)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def _encoder_weights(value: str):
    return None if value in ("none", "", None) else value


def build_model(config: TrainConfig):
    """The Keras model a config describes (uncompiled)."""
    from .models import build_resnet50_unet, build_unet

    shape = (config.image_size, config.image_size, 3)
    if config.architecture == "unet":
        return build_unet(shape, base_filters=config.base_filters, depth=config.depth)
    return build_resnet50_unet(shape, encoder_weights=_encoder_weights(config.encoder_weights))


def read_history(model_dir: str | Path):
    """``history.csv`` of a model folder as a DataFrame (empty if there is none)."""
    import pandas as pd

    path = Path(model_dir) / "history.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame()


def _callbacks(model_dir: Path, config: TrainConfig, extra, chief: bool = True):
    """The callbacks of a run. ``chief=False`` (a non-chief worker of a multi-worker run): the
    same state (resume epoch, history, early stopping) but nothing is written."""
    import keras

    from ..atomic import atomic_path

    class ResumableHistory(keras.callbacks.Callback):
        """history.csv rewritten atomically after every epoch; on resume, rows of epochs that
        will run again are dropped and the best/early-stopping state is rebuilt from it."""

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

    class RestoreOnly(keras.callbacks.BackupAndRestore):
        """Restores the chief's backup at the start; never saves or deletes it."""

        def on_epoch_end(self, epoch, logs=None):
            pass

        def on_train_batch_end(self, batch, logs=None):
            pass

        def on_train_end(self, logs=None):
            pass

    stopper = (keras.callbacks.EarlyStopping(monitor=MONITOR, mode="min",
                                             patience=config.patience)
               if config.patience > 0 else None)
    backup_dir = str(model_dir / "backup")
    if not chief:
        callbacks = [RestoreOnly(backup_dir),
                     ResumableHistory(model_dir / "history.csv", None, stopper, write=False)]
        return callbacks + ([stopper] if stopper is not None else []) + list(extra or [])
    best = keras.callbacks.ModelCheckpoint(str(model_dir / "best.keras"), monitor=MONITOR,
                                           mode="min", save_best_only=True)
    callbacks = [
        # BackupAndRestore first: it restores the epoch before anything else looks at it.
        keras.callbacks.BackupAndRestore(backup_dir, double_checkpoint=True),
        ResumableHistory(model_dir / "history.csv", best, stopper),
        best,
        keras.callbacks.ModelCheckpoint(str(model_dir / "last.keras")),
        keras.callbacks.TensorBoard(str(model_dir / "logs"), write_graph=False),
    ]
    if stopper is not None:
        callbacks.append(stopper)
    return callbacks + list(extra or [])


def train(
    export_dir: str | Path,
    model_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    callbacks=None,
    verbose: int | str = "auto",
) -> dict:
    """Train (or resume training) a model on an export folder.

    Parameters
    ----------
    export_dir : path
        Output of ``livertumor export``: ``manifest.csv``, ``preprocessing.json``, slices.
        Only the ``train`` split is used (part of its cases for validation).
    model_dir : path
        Created if needed. A folder holding an interrupted run with the same config resumes
        it; a finished run is left alone; a different config is an error.
    config : TrainConfig
    callbacks : list of keras callbacks, optional
        Added to the standard ones (e.g. a live plot in a notebook).
    verbose : passed to ``fit``.

    Returns
    -------
    dict: ``model_dir``, ``epochs_run``, ``best_epoch``, ``best_val_loss``, the last epoch's
    metrics, the data counts and ``resumed_from_epoch``.
    """
    import keras

    from ..atomic import atomic_path, write_json
    from ..provenance import environment_record
    from .dataset import Augmentation, load_manifest, make_dataset, split_validation
    from .distributed import (
        WorkerRole,
        barrier,
        fit_multi_worker,
        make_strategy,
        shard_rows,
        weights_digest,
        worker_role,
    )
    from .losses import DiceCrossEntropy
    from .metrics import segmentation_metrics

    multi_worker = config.strategy == "multi_worker"
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs anything in this process.
    strategy = make_strategy(config.strategy) if multi_worker else None
    role = worker_role() if multi_worker else WorkerRole(None, 0, 1, True)
    export_dir, model_dir = Path(export_dir), Path(model_dir)
    manifest = load_manifest(export_dir)
    prep = export_dir / "preprocessing.json"
    if not prep.exists():
        raise LiverTumorError("no preprocessing.json in the export folder", export_dir)
    train_rows = manifest[manifest["split"] == "train"]
    if train_rows.empty:
        raise LiverTumorError("the export has no training slices", export_dir / "manifest.csv")
    fit_rows, val_rows = split_validation(train_rows, config.validation_fraction, config.seed)

    if role.is_chief:
        model_dir.mkdir(parents=True, exist_ok=True)
    config_path = model_dir / "config.json"
    settings = asdict(config)
    if config_path.exists():
        previous = json.loads(config_path.read_text()).get("config", {})
        if previous != settings:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise LiverTumorError(
                f"holds a run with other settings ({', '.join(changed)} differ); "
                "use another model folder or delete this one", model_dir)
        if (model_dir / "model.keras").exists():
            summary = json.loads(config_path.read_text()).get("result", {})
            return {**summary, "model_dir": str(model_dir), "already_trained": True}

    steps = config.steps_per_epoch or max(1, len(fit_rows) // config.batch_size)
    record = {
        "config": settings,
        "export_dir": str(export_dir),
        "data": {
            "train_cases": sorted(int(c) for c in fit_rows["case_id"].unique()),
            "validation_cases": sorted(int(c) for c in val_rows["case_id"].unique()),
            "train_slices": len(fit_rows), "validation_slices": len(val_rows),
            "train_slices_with_tumor": int((fit_rows["tumor_pixels"] > 0).sum()),
            "steps_per_epoch": steps,
        },
        **environment_record(),
    }
    if role.is_chief:
        write_json(config_path, record)
        shutil.copyfile(prep, model_dir / "preprocessing.json")

    previous_policy = keras.mixed_precision.global_policy().name
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision)
    try:
        strategy = strategy or make_strategy(config.strategy)
        replicas = strategy.num_replicas_in_sync
        if config.batch_size % replicas:
            raise LiverTumorError(f"batch size {config.batch_size} does not split evenly over "
                                  f"{replicas} replicas", model_dir)
        augmentation = Augmentation() if config.augment else None
        loss = DiceCrossEntropy(dice_weight=config.dice_weight)
        with strategy.scope():
            model = build_model(config)
            schedule = keras.optimizers.schedules.CosineDecay(
                config.learning_rate, decay_steps=config.epochs * steps, alpha=0.05)
            model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss,
                          metrics=None if multi_worker else segmentation_metrics())
        history_before = read_history(model_dir)
        callback_list = _callbacks(model_dir, config, callbacks, chief=role.is_chief)
        if multi_worker:
            def train_dataset_fn(context):
                return make_dataset(
                    shard_rows(fit_rows, context.input_pipeline_id, context.num_input_pipelines),
                    context.get_per_replica_batch_size(config.batch_size), config.image_size,
                    training=True, seed=config.seed + 7919 * context.input_pipeline_id,
                    tumor_oversampling=config.tumor_oversampling, augmentation=augmentation,
                    cache=config.cache)

            with strategy.scope():
                train_metrics = segmentation_metrics()
                val_metrics = segmentation_metrics(prefix="val_")
                # variables are created in the scope only, identically on every worker
                # (creating one broadcasts its value): build the optimizer's here, before
                # BackupAndRestore restores them
                model.optimizer.build(model.trainable_variables)
            loop = fit_multi_worker(strategy, model, loss, train_metrics, val_metrics,
                                    train_dataset_fn, val_rows, config, steps, callback_list,
                                    verbose=verbose if role.is_chief else 0)
        else:
            train_ds = make_dataset(fit_rows, config.batch_size, config.image_size,
                                    training=True, seed=config.seed,
                                    tumor_oversampling=config.tumor_oversampling,
                                    augmentation=augmentation, cache=config.cache)
            val_ds = (make_dataset(val_rows, config.batch_size, config.image_size,
                                   cache=config.cache) if len(val_rows) else None)
            model.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                      steps_per_epoch=steps, callbacks=callback_list,
                      shuffle=False, verbose=verbose)  # the dataset shuffles itself
            loop = {}
        best_path = model_dir / "best.keras"
        if best_path.exists():
            model.load_weights(best_path)
        digest = weights_digest(model)
        if role.is_chief:
            with atomic_path(model_dir / "model.keras", keep_suffix=True) as tmp:
                model.save(tmp)
        if multi_worker:
            barrier(strategy)  # model.keras is complete before any worker returns
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    history = read_history(model_dir)
    best_i = int(history[MONITOR].idxmin()) if MONITOR in history else len(history) - 1
    result = {
        "epochs_run": len(history),
        "best_epoch": int(history["epoch"].iloc[best_i]),
        "best_val_loss": float(history[MONITOR].iloc[best_i]) if MONITOR in history else None,
        "last": {k: float(v) for k, v in history.iloc[-1].items()},
        "best": {k: float(v) for k, v in history.iloc[best_i].items()},
        "replicas": int(replicas),
        "workers": role.num_workers,
        "weights_sha256": digest,
        # epochs already in history.csv when this call started (a resumed run)
        "epochs_before_this_call": int(len(history_before)),
    }
    if role.is_chief:
        record["result"] = result
        write_json(config_path, record)
    worker = {"task_type": role.task_type, "task_id": role.task_id, "chief": role.is_chief,
              **loop}
    return {**result, "model_dir": str(model_dir), "data": record["data"], "worker": worker}
