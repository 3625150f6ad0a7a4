"""Training a segmentation model on an export folder, resumable, one model folder per run.

``train(export_dir, model_dir, TrainConfig(...))`` writes to ``model_dir``:

- ``model.keras``: the final model (the weights of the best validation epoch);
- ``best.keras``: checkpoint of the best epoch so far (written each epoch that improves it);
- ``last.keras``: the model of the last epoch, written when training ends;
- ``preprocessing.json``: copied from the export, so inference preprocesses exactly as training;
- ``config.json``: the :class:`~.config.TrainConfig`, data counts, validation cases, package
  versions, git commit, and once finished the run's summary;
- ``history.csv``: loss, metrics and learning rate per epoch, training and validation;
- ``logs/``: TensorBoard logs, when the ``tensorboard`` package is installed (otherwise the
  summary says they were not written); ``backup/``: the state a killed run resumes from.

Killed and started again with the same command, a run continues after the last finished epoch
(Keras ``BackupAndRestore``: weights, optimizer state and epoch), with the history, the best
checkpoint and early stopping picking up where they were.

:func:`train` only orchestrates: the settings and the model are in :mod:`.config`, the
callbacks in :mod:`.callbacks`, the single-host loop (``Model.fit``) in :mod:`.single_host` and
the multi-worker loop in :mod:`.distributed`.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from ..errors import LiverTumorError
from .config import MONITOR, TrainConfig, build_model

__all__ = ["TrainConfig", "fit_and_validation_rows", "read_history", "train"]

TENSORBOARD_MISSING = "not written: the tensorboard package is not installed"

_DEFAULT_CONFIG = TrainConfig()


def read_history(model_dir: str | Path) -> pd.DataFrame:
    """``history.csv`` of a model folder as a DataFrame (empty if there is none)."""
    path = Path(model_dir) / "history.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame()


def fit_and_validation_rows(train_rows: pd.DataFrame, config: TrainConfig
                            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows :func:`train` fits on and validates on, from an export's training rows:
    ``config.validation_fraction`` of the cases held out whole (:func:`.split_validation`),
    of which every ``config.validation_slice_step``-th slice is scored after each epoch."""
    from .dataset import every_kth_slice, split_validation

    fit_rows, val_rows = split_validation(train_rows, config.validation_fraction, config.seed)
    return fit_rows, every_kth_slice(val_rows, config.validation_slice_step)


def _training_rows(export_dir: Path, config: TrainConfig):
    """The export's training rows split into fitting and validation rows
    (:func:`fit_and_validation_rows`).

    Returns
    -------
    (fit rows, validation rows, path of the export's ``preprocessing.json``)

    Raises
    ------
    LiverTumorError
        No manifest or no ``preprocessing.json`` in the export, or no training slices.
    """
    from .dataset import load_manifest

    manifest = load_manifest(export_dir)
    prep = export_dir / "preprocessing.json"
    if not prep.exists():
        raise LiverTumorError("no preprocessing.json in the export folder", export_dir)
    train_rows = manifest[manifest["split"] == "train"]
    if train_rows.empty:
        raise LiverTumorError("the export has no training slices", export_dir / "manifest.csv")
    return (*fit_and_validation_rows(train_rows, config), prep)


def _finished_run(model_dir: Path, config: TrainConfig) -> dict | None:
    """The summary of a finished run with these settings in ``model_dir``, else None.

    Raises
    ------
    LiverTumorError
        ``model_dir`` holds a run with other settings.
    """
    config_path = model_dir / "config.json"
    if not config_path.exists():
        return None
    record = json.loads(config_path.read_text())
    # a setting added since that run was written had its default value there
    previous = {**asdict(_DEFAULT_CONFIG), **record.get("config", {})}
    settings = asdict(config)
    if previous != settings:
        changed = sorted(k for k in settings if previous.get(k) != settings[k])
        raise LiverTumorError(
            f"holds a run with other settings ({', '.join(changed)} differ); "
            "use another model folder or delete this one", model_dir)
    if not (model_dir / "model.keras").exists():
        return None
    return {**record.get("result", {}), "model_dir": str(model_dir), "already_trained": True}


def _input_channels(prep: dict) -> int:
    """Channels of the export's images: its ``channels`` list (3, plus 2k context channels)."""
    return len(prep.get("channels") or ()) or 3


def _check_patch_side(prep: dict, config: TrainConfig, path: Path) -> None:
    """A model trained on patches predicts whole slices at the export's size, so it must
    train on slices of that size (``prep``: the export's ``preprocessing.json`` at ``path``).

    Raises
    ------
    LiverTumorError
        ``patch_size`` is set and ``image_size`` differs from the export's size.
    """
    size = int(prep.get("size") or 0)
    if config.patch_size and config.image_size != size:
        raise LiverTumorError(
            f"patch_size needs image_size equal to the export's size ({size or 'original'}), "
            f"got {config.image_size}: the model predicts whole slices at the export's size",
            path)


def _run_record(export_dir: Path, config: TrainConfig, fit_rows, val_rows, steps: int,
                channels: int) -> dict:
    """What ``config.json`` holds before training: settings, data, environment."""
    from ..provenance import environment_record

    return {
        "config": asdict(config),
        "export_dir": str(export_dir),
        "data": {
            "train_cases": sorted(int(c) for c in fit_rows["case_id"].unique()),
            "validation_cases": sorted(int(c) for c in val_rows["case_id"].unique()),
            "train_slices": len(fit_rows), "validation_slices": len(val_rows),
            "train_slices_with_tumor": int((fit_rows["tumor_pixels"] > 0).sum()),
            "steps_per_epoch": steps, "input_channels": channels,
        },
        **environment_record(),
    }


def _start_model_dir(model_dir: Path, record: dict, prep: Path) -> None:
    """Create the model folder (chief only) with ``config.json`` and the export's
    ``preprocessing.json``."""
    from ..atomic import write_json

    model_dir.mkdir(parents=True, exist_ok=True)
    write_json(model_dir / "config.json", record)
    shutil.copyfile(prep, model_dir / "preprocessing.json")


@contextmanager
def _seed_and_precision(config: TrainConfig):
    """Seed Python, numpy and Keras, and set the config's mixed-precision policy for the
    duration; the previous policy is restored afterwards, also on an error."""
    import keras

    previous_policy = keras.mixed_precision.global_policy().name
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _replicas(strategy, batch_size: int, model_dir: Path) -> int:
    """The strategy's number of replicas, which must divide the global batch.

    Raises
    ------
    LiverTumorError
        The batch does not split evenly.
    """
    replicas = int(strategy.num_replicas_in_sync)
    if batch_size % replicas:
        raise LiverTumorError(f"batch size {batch_size} does not split evenly over "
                              f"{replicas} replicas", model_dir)
    return replicas


def _compiled_model(config: TrainConfig, loss, steps: int, with_metrics: bool,
                    channels: int = 3, shares=None):
    """The model of ``config`` for ``channels`` input channels, its batch norms on
    TensorFlow's fused kernel (:mod:`.fused_norm`), compiled with Adam on a cosine-decaying
    learning rate; with ``shares`` (the class shares of the training pixels), its output
    biases start at their log (:func:`.models.set_class_prior`).

    Call under the strategy's scope. ``with_metrics=False`` for the multi-worker loop, which
    keeps its own metrics.
    """
    import keras

    from .fused_norm import with_fused_batch_norm
    from .metrics import segmentation_metrics
    from .models import set_class_prior

    model = build_model(config, channels)
    if shares is not None:
        set_class_prior(model, shares)
    model = with_fused_batch_norm(model)
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=config.epochs * steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss,
                  metrics=segmentation_metrics() if with_metrics else None)
    return model


def _best_epoch(model_dir: Path) -> int | None:
    """The epoch of ``history.csv`` with the lowest ``val_loss`` (the first on ties, as
    ``best.keras`` keeps it), or None without validation."""
    history = read_history(model_dir)
    if MONITOR not in history or history[MONITOR].isna().all():
        return None
    return int(history["epoch"].iloc[int(history[MONITOR].idxmin())])


def _save_final_model(model, model_dir: Path, chief: bool, best_weights: list | None = None
                      ) -> str:
    """Give ``model`` the best epoch's weights (``best_weights`` when this process kept them,
    else read from ``best.keras`` if there is one), save ``model.keras`` (chief only,
    atomically) with Keras's own batch norm layers in place of the fused ones training used;
    return the SHA-256 of the weights."""
    from ..atomic import atomic_path
    from .distributed import weights_digest
    from .fused_norm import with_builtin_batch_norm

    best_path = model_dir / "best.keras"
    if best_weights is not None:
        model.set_weights(best_weights)
    elif best_path.exists():
        model.load_weights(best_path)
    digest = weights_digest(model)
    if chief:
        with atomic_path(model_dir / "model.keras", keep_suffix=True) as tmp:
            with_builtin_batch_norm(model).save(tmp)
    return digest


def _summary(model_dir: Path, history_before: pd.DataFrame, tensorboard: bool, **facts) -> dict:
    """The run's result from ``history.csv`` (epochs, the best and the last epoch's metrics),
    ``facts``, where the TensorBoard logs are (or that they were not written)."""
    history = read_history(model_dir)
    best_i = int(history[MONITOR].idxmin()) if MONITOR in history else len(history) - 1
    return {
        "epochs_run": len(history),
        "best_epoch": int(history["epoch"].iloc[best_i]),
        "best_val_loss": float(history[MONITOR].iloc[best_i]) if MONITOR in history else None,
        "last": {k: float(v) for k, v in history.iloc[-1].items()},
        "best": {k: float(v) for k, v in history.iloc[best_i].items()},
        **facts,
        "tensorboard_logs": str(model_dir / "logs") if tensorboard else TENSORBOARD_MISSING,
        # epochs already in history.csv when this call started (a resumed run)
        "epochs_before_this_call": int(len(history_before)),
    }


def _class_shares(export_dir: Path, rows, config: TrainConfig):
    """The class shares of the training pixels as the stream draws them
    (:func:`.dataset.class_shares`), the slice's pixels read from its first mask."""
    from PIL import Image

    from .dataset import class_shares

    with Image.open(export_dir / rows["mask"].iloc[0]) as mask:
        pixels = mask.size[0] * mask.size[1]
    return class_shares(rows, pixels, config.tumor_oversampling)


def _loss(config: TrainConfig):
    """The config's loss: Dice + cross-entropy, tumor pixels weighted by ``tumor_weight``
    and ``tumor_size_weight`` (:class:`.losses.DiceCrossEntropy`)."""
    from .losses import DiceCrossEntropy

    weights = None if config.tumor_weight == 1 else (1.0, 1.0, config.tumor_weight)
    return DiceCrossEntropy(dice_weight=config.dice_weight, class_weights=weights,
                            tumor_size_weight=config.tumor_size_weight)


def _fit_and_save(strategy, role, config: TrainConfig, model_dir: Path, fit_rows, val_rows,
                  steps: int, channels: int, callbacks, tensorboard: bool,
                  verbose, shares=None) -> tuple[str, dict]:
    """Build and compile the model under ``strategy``'s scope (output biases from
    ``shares`` when given), fit it (single host or multi-worker), save ``model.keras`` from
    the best epoch (chief only).

    Returns (SHA-256 of the final weights, the loop's per-worker counts).
    """
    from .callbacks import BestWeights, make_callbacks
    from .distributed import barrier, fit_multi_worker
    from .single_host import fit_single_host

    multi_worker = config.strategy == "multi_worker"
    with strategy.scope():
        loss = _loss(config)
        model = _compiled_model(config, loss, steps, with_metrics=not multi_worker,
                                channels=channels, shares=shares)
    callback_list = make_callbacks(model_dir, config, callbacks, chief=role.is_chief,
                                   tensorboard=tensorboard)
    if multi_worker:
        loop = fit_multi_worker(strategy, model, loss, fit_rows, val_rows, config, steps,
                                callback_list, verbose=verbose if role.is_chief else 0)
    else:
        best = BestWeights()
        loop = fit_single_host(model, fit_rows, val_rows, config, steps,
                               [*callback_list, best], verbose=verbose)
    # several workers: each reads best.keras, so that all hold the same weights
    best_weights = None
    if not multi_worker and (epoch := _best_epoch(model_dir)) is not None:
        best_weights = best.weights_of(epoch)
    digest = _save_final_model(model, model_dir, chief=role.is_chief, best_weights=best_weights)
    if multi_worker:
        barrier(strategy)  # model.keras is complete before any worker returns
    return digest, loop


def train(
    export_dir: str | Path,
    model_dir: str | Path,
    config: TrainConfig = _DEFAULT_CONFIG,
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
    dict: ``model_dir``, ``epochs_run``, ``best_epoch``, ``best_val_loss``, the best and the
    last epoch's metrics, ``replicas``, ``workers``, ``weights_sha256``, ``tensorboard_logs``
    (the logs folder, or a text saying they were not written), the data counts,
    ``epochs_before_this_call`` and, per worker, the loop's counts.

    Raises
    ------
    LiverTumorError
        A missing or empty export, a model folder holding other settings, or a batch size that
        does not split over the replicas.
    """
    from ..atomic import write_json
    from .callbacks import tensorboard_available
    from .distributed import WorkerRole, make_strategy, worker_role

    multi_worker = config.strategy == "multi_worker"
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs anything in this process.
    strategy = make_strategy(config.strategy) if multi_worker else None
    role = worker_role() if multi_worker else WorkerRole(None, 0, 1, True)
    export_dir, model_dir = Path(export_dir), Path(model_dir)
    fit_rows, val_rows, prep = _training_rows(export_dir, config)
    if (finished := _finished_run(model_dir, config)) is not None:
        return finished
    steps = config.steps_per_epoch or max(1, len(fit_rows) // config.batch_size)
    prep_record = json.loads(prep.read_text())
    channels = _input_channels(prep_record)
    _check_patch_side(prep_record, config, prep)
    record = _run_record(export_dir, config, fit_rows, val_rows, steps, channels)
    if role.is_chief:
        _start_model_dir(model_dir, record, prep)
    tensorboard = tensorboard_available()

    with _seed_and_precision(config):
        strategy = strategy or make_strategy(config.strategy)
        replicas = _replicas(strategy, config.batch_size, model_dir)
        history_before = read_history(model_dir)
        shares = _class_shares(export_dir, fit_rows, config) if config.head_prior else None
        digest, loop = _fit_and_save(strategy, role, config, model_dir, fit_rows, val_rows,
                                     steps, channels, callbacks, tensorboard, verbose, shares)

    result = _summary(model_dir, history_before, tensorboard, replicas=replicas,
                      workers=role.num_workers, weights_sha256=digest)
    if role.is_chief:
        write_json(model_dir / "config.json", {**record, "result": result})
    worker = {"task_type": role.task_type, "task_id": role.task_id, "chief": role.is_chief}
    return {**result, "model_dir": str(model_dir), "data": record["data"],
            "worker": {**worker, **loop}}
