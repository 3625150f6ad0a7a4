"""Training across several processes or hosts: ``tf.distribute.MultiWorkerMirroredStrategy``.

Keras 3's ``Model.fit`` does not run under ``MultiWorkerMirroredStrategy`` (keras-team/keras
issue 20585: two workers fail in ``fit`` with "Attempt to convert a value (PerReplica ...)"),
so multi-worker training has its own loop here (:func:`fit_multi_worker`): one
``strategy.run`` step with ``tf.GradientTape`` per batch, where one host runs ``Model.fit``
(:mod:`.single_host`). Everything else is shared by the two loops and set up once in
:mod:`.trainer`: the model, the loss (:class:`.losses.DiceCrossEntropy`), the metrics
(:func:`.metrics.segmentation_metrics`), the input pipelines (:mod:`.inputs`), and the Keras
callbacks (:mod:`.callbacks`) that write ``history.csv``, ``best.keras``, ``last.keras``,
TensorBoard logs (when ``tensorboard`` is installed) and the ``BackupAndRestore`` state, which
this loop drives as ``fit`` would.

The cluster comes from the standard ``TF_CONFIG`` environment variable, e.g. for worker 1 of 2
on one host::

    TF_CONFIG='{"cluster": {"worker": ["localhost:12345", "localhost:12346"]},
                "task": {"type": "worker", "index": 1}}'

Every worker runs the same command. Conventions (those of TensorFlow's own multi-worker
Keras callbacks):

* ``config.batch_size`` is the *global* batch; each of the R replicas gets ``batch_size / R``.
* Each worker reads its own share of the training slices (rows ``i::W`` of the manifest for
  worker i of W) and decodes only those.
* The *chief* (``task.type == "chief"``, or worker 0 when the cluster has no chief) writes the
  model folder: ``history.csv``, checkpoints, TensorBoard logs, ``config.json`` and the final
  ``model.keras``. The other workers write nothing.
* The model folder (and the export folder) must be on a file system every worker sees (NFS, a
  cluster file system, or one host's disk when all workers run there): on a restart, every
  worker restores from the chief's ``backup/`` and reads its ``history.csv``.
* When a worker dies, the others stop with an error: the job is over, as on any
  ``MultiWorkerMirroredStrategy`` cluster. Starting all workers again with the same command
  resumes after the last finished epoch.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class WorkerRole:
    """Where this process sits in the cluster ``TF_CONFIG`` describes.

    Attributes
    ----------
    task_type : ``worker``, ``chief`` or ``None`` (no ``TF_CONFIG``: a single process)
    task_id : int
    num_workers : int
        Processes that train (chief included).
    is_chief : bool
        Whether this process writes the model folder.
    """

    task_type: str | None
    task_id: int
    num_workers: int
    is_chief: bool


def worker_role(tf_config: str | None = None) -> WorkerRole:
    """Parse ``TF_CONFIG`` (default: the environment variable) into a :class:`WorkerRole`.

    Raises
    ------
    ValueError
        ``TF_CONFIG`` is not JSON, names no ``task``, or a task index outside the cluster.
    """
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not text.strip():
        return WorkerRole(None, 0, 1, True)
    try:
        spec = json.loads(text)
        cluster, task = spec.get("cluster", {}), spec["task"]
        task_type, task_id = str(task["type"]), int(task.get("index", 0))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"TF_CONFIG is not a valid cluster description ({exc}): "
                         f"{text[:200]!r}") from exc
    members = cluster.get(task_type, [])
    if not 0 <= task_id < len(members):
        raise ValueError(f"TF_CONFIG: task {task_type}:{task_id} is not in the cluster "
                         f"{sorted(cluster)}")
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    chief = task_type == "chief" or ("chief" not in cluster and task_type == "worker"
                                     and task_id == 0)
    return WorkerRole(task_type, task_id, max(workers, 1), chief)


def local_cluster(n_workers: int, host: str = "localhost") -> list[str]:
    """``TF_CONFIG`` values for ``n_workers`` processes on this host, on free loopback ports.

    Element i is the JSON for worker i (worker 0 is the chief). A port is free when this is
    called; start the workers soon after.

    Examples
    --------
    >>> configs = local_cluster(2)  # doctest: +SKIP
    >>> env = {**os.environ, "TF_CONFIG": configs[1]}  # the second worker's  # doctest: +SKIP
    """
    import socket

    sockets = [socket.socket() for _ in range(n_workers)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        hosts = [f"{host}:{s.getsockname()[1]}" for s in sockets]
    finally:
        for s in sockets:
            s.close()
    return [json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})
            for i in range(n_workers)]


def make_strategy(name: str):
    """The ``tf.distribute`` strategy a :class:`~livertumor.training.trainer.TrainConfig` names.

    ``auto``: the default (one device); ``mirrored``: all local GPUs (or the logical CPUs);
    ``multi_worker``: ``MultiWorkerMirroredStrategy`` over the ``TF_CONFIG`` cluster. The
    latter must be created before TensorFlow runs anything else in the process.
    """
    import tensorflow as tf

    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def shard_rows(rows: pd.DataFrame, index: int, count: int) -> pd.DataFrame:
    """Rows ``index::count`` of a manifest table (the share of input pipeline ``index``)."""
    return rows.iloc[index::count]


def validation_batches(rows: pd.DataFrame, per_replica_batch: int, pipeline: int,
                       pipelines: int, replicas: int) -> tuple[pd.DataFrame, int, int]:
    """How the validation slices are spread so every replica runs the same number of steps.

    The rows, in manifest order, are cut into K batches of ``per_replica_batch`` (the last one
    may be short). Input pipeline ``p`` of ``P`` gets batches ``p, p + P, ...``; every replica
    runs ``ceil(K / replicas)`` steps, and a pipeline with fewer batches than its replicas need
    is topped up with empty ones, which add nothing to the loss or the metrics. So every slice is
    scored exactly once, whatever the number of workers.

    Returns
    -------
    (the rows of this pipeline's batches in order, its number of real batches, the number of
    empty batches to append)
    """
    n = len(rows)
    k = math.ceil(n / per_replica_batch)
    mine = list(range(pipeline, k, pipelines))
    steps = math.ceil(k / replicas)
    local_replicas = replicas // pipelines
    if mine:
        take = np.concatenate([np.arange(b * per_replica_batch,
                                         min((b + 1) * per_replica_batch, n)) for b in mine])
    else:
        take = np.zeros(0, dtype=int)
    return rows.iloc[take], len(mine), steps * local_replicas - len(mine)


def weights_digest(model) -> str:
    """SHA-256 over all of a model's weights (values and order): equal models, equal digest."""
    import hashlib

    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(np.asarray(weight.numpy()))
        digest.update(str((value.shape, value.dtype.str)).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _empty_batches(count: int, image_size: int):
    import tensorflow as tf

    empty = (tf.zeros((0, image_size, image_size, 3), tf.float32),
             tf.zeros((0, image_size, image_size), tf.uint8))
    return tf.data.Dataset.from_tensors(empty).repeat(count)


@dataclass
class _LoopMetrics:
    """What the multi-worker loop tracks: the mean loss and the segmentation metrics, for
    training and for validation (named ``val_<name>``). Created under the strategy's scope."""

    loss: object
    val_loss: object
    train: list
    val: list

    @classmethod
    def create(cls, strategy, model) -> _LoopMetrics:
        """The loop's metrics, and the optimizer's variables, under ``strategy.scope()``.

        Variables are created in the scope only, identically on every worker (creating one
        broadcasts its value): the optimizer's are built here, before ``BackupAndRestore``
        restores them.
        """
        import keras

        from .metrics import segmentation_metrics

        with strategy.scope():
            train = segmentation_metrics()
            val = segmentation_metrics(prefix="val_")
            model.optimizer.build(model.trainable_variables)
            loss = keras.metrics.Mean(name="loss")
            val_loss = keras.metrics.Mean(name="val_loss")
        return cls(loss, val_loss, train, val)

    def reset(self) -> None:
        for metric in [self.loss, self.val_loss, *self.train, *self.val]:
            metric.reset_state()

    def logged(self, validation: bool) -> list:
        """The metrics of an epoch's logs, in ``fit``'s order."""
        return [self.loss, *self.train, *([self.val_loss, *self.val] if validation else [])]


def _distributed_inputs(strategy, fit_rows: pd.DataFrame, val_rows: pd.DataFrame | None,
                        config):
    """The per-worker training stream and validation pass, distributed over the replicas.

    Each input pipeline reads its share of the training rows (:func:`shard_rows`), with its
    own seed; the validation batches are spread by :func:`validation_batches`.

    Returns
    -------
    (distributed training dataset, distributed validation dataset or None)
    """
    from .inputs import training_dataset, validation_dataset

    replicas = strategy.num_replicas_in_sync
    per_replica = config.batch_size // replicas

    def train_dataset_fn(context):
        return training_dataset(
            shard_rows(fit_rows, context.input_pipeline_id, context.num_input_pipelines),
            config, context.get_per_replica_batch_size(config.batch_size),
            seed=config.seed + 7919 * context.input_pipeline_id)

    def val_dataset_fn(context):
        rows, real, empty = validation_batches(val_rows, per_replica, context.input_pipeline_id,
                                               context.num_input_pipelines, replicas)
        parts = _empty_batches(empty, config.image_size)
        if real:
            parts = validation_dataset(rows, config, per_replica).concatenate(parts)
        return parts

    train_data = strategy.distribute_datasets_from_function(train_dataset_fn)
    val_data = (strategy.distribute_datasets_from_function(val_dataset_fn)
                if val_rows is not None and len(val_rows) else None)
    return train_data, val_data


def _step_functions(strategy, model, loss, metrics: _LoopMetrics, validation: bool):
    """The compiled steps of the loop: ``train_step(iterator)`` (one global batch; returns the
    per-replica batch sizes), ``val_step(batch)`` and ``results()`` (the epoch's logs)."""
    import tensorflow as tf

    replicas = strategy.num_replicas_in_sync

    def replica_train_step(images, masks):
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            value = loss(masks, probs)
            scaled = model.optimizer.scale_loss(value)
        grads = tape.gradient(scaled, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        metrics.loss.update_state(value * replicas)
        for metric in metrics.train:
            metric.update_state(masks, probs)
        return tf.shape(images)[0]

    def replica_val_step(images, masks):
        count = tf.shape(images)[0]

        def score():
            probs = model(images, training=False)
            metrics.val_loss.update_state(loss(masks, probs) * replicas,
                                          sample_weight=tf.cast(count, tf.float32))
            for metric in metrics.val:
                metric.update_state(masks, probs)
            return count

        # an empty batch (see validation_batches) skips the model: it adds nothing
        tf.cond(count > 0, score, lambda: count)

    @tf.function
    def train_step(iterator):
        return strategy.run(replica_train_step, args=next(iterator))

    @tf.function
    def val_step(batch):
        strategy.run(replica_val_step, args=batch)

    @tf.function
    def results():
        # result() sums a metric's counts over all workers: a collective every worker joins
        return {metric.name: metric.result() for metric in metrics.logged(validation)}

    return train_step, val_step, results


def fit_multi_worker(strategy, model, loss, fit_rows: pd.DataFrame,
                     val_rows: pd.DataFrame | None, config, steps: int, callbacks,
                     verbose: int | str = 0) -> dict:
    """Train ``model`` as ``Model.fit`` would, with one ``strategy.run`` step per batch.

    Builds its own input pipelines (each worker reads its share of ``fit_rows``; every
    validation slice is scored once over all workers) and its own metrics (those of
    :func:`.metrics.segmentation_metrics`, and the mean loss).

    Parameters
    ----------
    strategy : a ``tf.distribute`` strategy (made for ``MultiWorkerMirroredStrategy``; works
        with any)
    model : compiled Keras model built under ``strategy.scope()`` (its optimizer is used)
    loss : Keras loss; it divides by the number of replicas itself (Keras 3 on TensorFlow), so
        the all-reduced gradients are those of the global batch mean
    fit_rows : manifest rows of the training slices (all workers' rows)
    val_rows : manifest rows of the validation slices, or None
    config : :class:`.config.TrainConfig` (epochs, global batch size, image size, seed,
        sampling, augmentation, cache)
    steps : training steps (global batches) per epoch
    callbacks : Keras callbacks, called as ``fit`` calls them (``BackupAndRestore`` sets the
        first epoch through ``model._initial_epoch``, as in ``fit``)
    verbose : as ``fit``'s: 0 silent, 1 a progress bar, 2 one line per epoch, ``"auto"`` 1

    Returns
    -------
    dict: ``images_seen`` (images this worker trained on in this call), ``epochs_run`` (in this
    call), ``initial_epoch``.
    """
    import keras

    metrics = _LoopMetrics.create(strategy, model)
    train_data, val_data = _distributed_inputs(strategy, fit_rows, val_rows, config)
    train_step, val_step, results = _step_functions(strategy, model, loss, metrics,
                                                    val_data is not None)
    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=False, add_progbar=verbose != 0, model=model,
        verbose=1 if verbose == "auto" else verbose, epochs=config.epochs, steps=steps)
    model.stop_training = False
    callback_list.on_train_begin()
    initial_epoch = int(getattr(model, "_initial_epoch", None) or 0)
    iterator = iter(train_data)
    seen, epochs_run, logs = 0, 0, {}
    for epoch in range(initial_epoch, config.epochs):
        metrics.reset()
        callback_list.on_epoch_begin(epoch)
        counts = []
        for step in range(steps):
            callback_list.on_train_batch_begin(step)
            counts.append(train_step(iterator))  # read at the end: no wait between steps
            callback_list.on_train_batch_end(step)
        seen += sum(int(c) for step_counts in counts
                    for c in strategy.experimental_local_results(step_counts))
        for batch in val_data if val_data is not None else ():
            val_step(batch)
        logs = {name: float(value) for name, value in results().items()}
        callback_list.on_epoch_end(epoch, logs)
        epochs_run += 1
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    barrier(strategy)
    return {"images_seen": seen, "epochs_run": epochs_run, "initial_epoch": initial_epoch}


def barrier(strategy) -> None:
    """Return only when every worker got here (an all-reduce of a constant).

    After it, what the chief wrote before the barrier (checkpoints, history) is complete."""
    import tensorflow as tf

    @tf.function
    def all_reduce():
        value = strategy.run(lambda: tf.constant(1.0))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)

    all_reduce()
