"""Checkpoint writes per epoch: the callbacks of a training run against Keras's stock ones.

The demo's ResNet-50 U-Net (96 px, 3 channels, mixed bfloat16, Adam after one step, so that
its optimizer state exists: about 400 MB a weights file) gets the end-of-epoch calls of a
run of ``--epochs`` epochs, each epoch improving ``val_loss`` (the most writes), without any
training in between, in two ways:

- stock: ``BackupAndRestore(double_checkpoint=True)`` (copies the previous weights file, then
  writes the new one), ``ModelCheckpoint`` of the best epoch and ``ModelCheckpoint`` of the
  last epoch, every epoch (the callbacks before this change);
- package: :func:`livertumor.training.callbacks.make_callbacks` (the backup moves the
  previous weights aside; ``last.keras`` is written once, at the end).

It prints the seconds of each epoch's calls, of ``on_train_end`` and the total, and the bytes
the backup folder and the checkpoints hold at the end of the last epoch. The two ways alternate
(``--repeats`` times) so that the shared machine's noise falls on both; compare the totals
within one run.

Run: ``python benchmarks/checkpoint_writes.py`` (``--architecture unet`` for the small model).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _model(architecture: str, side: int):
    import keras

    from livertumor.training.config import TrainConfig, build_model

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    config = TrainConfig(architecture=architecture, image_size=side, batch_size=2)
    model = build_model(config, channels=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy")
    x = np.zeros((2, side, side, 3), np.float32)
    y = np.zeros((2, side, side, 3), np.float32)
    y[..., 0] = 1
    model.train_on_batch(x, y)  # builds the optimizer's state
    return model


def _stock(folder: Path):
    import keras

    return [keras.callbacks.BackupAndRestore(str(folder / "backup"), double_checkpoint=True),
            keras.callbacks.ModelCheckpoint(str(folder / "best.keras"), monitor="val_loss",
                                            mode="min", save_best_only=True),
            keras.callbacks.ModelCheckpoint(str(folder / "last.keras"))]


def _package(folder: Path):
    from livertumor.training.callbacks import make_callbacks
    from livertumor.training.config import TrainConfig

    return make_callbacks(folder, TrainConfig(patience=0), tensorboard=False)


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _run(model, make, folder: Path, epochs: int) -> tuple[list[float], float, int]:
    """Seconds of each epoch's ``on_epoch_end`` calls, of ``on_train_end``, and the bytes
    on disk after the last epoch."""
    import keras

    callbacks = keras.callbacks.CallbackList(make(folder), model=model)
    callbacks.on_train_begin()
    times, size = [], 0
    for epoch in range(epochs):
        callbacks.on_epoch_begin(epoch)
        start = time.perf_counter()
        callbacks.on_epoch_end(epoch, {"loss": 1.0, "val_loss": 1.0 - 0.1 * epoch})
        times.append(time.perf_counter() - start)
        size = _bytes(folder)
    start = time.perf_counter()
    callbacks.on_train_end()
    return times, time.perf_counter() - start, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--architecture", default="resnet50_unet")
    parser.add_argument("--side", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model = _model(args.architecture, args.side)
    print(f"{args.architecture} at {args.side} px: {model.count_params() / 1e6:.1f} M parameters,"
          f" {args.epochs} epochs, each improving val_loss")
    totals = {"stock": [], "package": []}
    for repeat in range(args.repeats):
        for name, make in (("stock", _stock), ("package", _package)):
            with tempfile.TemporaryDirectory() as tmp:
                times, end, size = _run(model, make, Path(tmp), args.epochs)
            total = sum(times) + end
            totals[name].append(total)
            per_epoch = " ".join(f"{t:.2f}" for t in times)
            print(f"[{repeat}] {name:8s} epochs {per_epoch} s, train end {end:.2f} s, "
                  f"total {total:.1f} s; {size / 1e6:.0f} MB on disk after the last epoch")
    for name, values in totals.items():
        print(f"{name:8s} total: best {min(values):.1f} s, mean {np.mean(values):.1f} s")


if __name__ == "__main__":
    main()
