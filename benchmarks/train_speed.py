"""Training throughput: both models at 128/256 px in float32 and mixed_bfloat16, and the
``tf.data`` pipeline from exported JPEG/PNG files against the same model on in-memory tensors.

Part 1, models: images/s of ``model.fit`` on in-memory arrays.

For the U-Net (32 base filters, depth 4) and the ResNet-50 U-Net (random weights), at 128 and
256 px, in float32 and under the ``mixed_bfloat16`` policy, batch 16, with the package's loss
(Dice + cross-entropy) and the four Dice / IoU metrics compiled in, Adam. Each configuration
runs in a fresh Python process, so a dtype policy or a traced graph never leaks into the next.
One ``fit`` call runs ``warmup + steps`` steps over arrays already in memory (no input
pipeline); the rate is taken between the end of the last warm-up step and the end of the last
step, so tracing and the first-step allocations are excluded.

Part 2, input pipeline: the demo U-Net (16 base filters, 128 px, mixed_bfloat16, batch 16)
trained for the same number of steps (a) from ``livertumor.training.dataset.make_dataset`` over an
export of demo cases (JPEG decode, tumor oversampling, augmentation, cache, prefetch) and (b)
on the same batches already in memory as tensors. The ratio a / b is the share of the
model's speed the pipeline keeps; the aim is at least 90 %.

Run: ``python benchmarks/train_speed.py`` (about 8 minutes on 2 CPU cores); ``--quick`` halves
the steps; ``--steps-scale 4`` lengthens them for a GPU; ``--pipeline-only`` runs part 2.
Set ``KERAS_BACKEND`` to time another backend for part 1 (the children inherit it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BATCH = 16
# (architecture, side): (warm-up steps, timed steps); at most about a minute each on 2 CPU cores
STEPS = {
    ("unet", 128): (2, 15),
    ("unet", 256): (1, 8),
    ("resnet50_unet", 128): (2, 10),
    ("resnet50_unet", 256): (1, 5),
}
POLICIES = ("float32", "mixed_bfloat16")


def child(arch: str, side: int, policy: str, warmup: int, steps: int) -> None:
    """Build, compile and time one configuration; print one JSON line."""
    import keras
    import numpy as np

    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    from livertumor.training.losses import DiceCrossEntropy
    from livertumor.training.metrics import segmentation_metrics
    from livertumor.training.models import build_resnet50_unet, build_unet

    builder = build_unet if arch == "unet" else build_resnet50_unet
    model = builder(input_shape=(side, side, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=DiceCrossEntropy(),
                  metrics=segmentation_metrics())

    rng = np.random.default_rng(0)
    x = rng.random((BATCH, side, side, 3), dtype=np.float32)
    yy, xx = np.mgrid[:side, :side]
    y = np.zeros((BATCH, side, side), np.uint8)
    y[:, ((yy - side / 2) / (0.3 * side)) ** 2 + ((xx - side / 2) / (0.25 * side)) ** 2 < 1] = 1
    y[:, (yy - side / 2) ** 2 + (xx - side / 2) ** 2 < (0.08 * side) ** 2] = 2
    x, y = np.tile(x, (warmup + steps, 1, 1, 1)), np.tile(y, (warmup + steps, 1, 1))

    ends: list[float] = []
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
    total = time.perf_counter() - t0
    timed = ends[-1] - ends[warmup - 1]
    print(json.dumps({
        "arch": arch, "side": side, "policy": policy, "params": model.count_params(),
        "steps": steps, "s_per_step": timed / steps, "images_per_s": BATCH * steps / timed,
        "first_steps_s": ends[warmup - 1] - t0, "total_s": total,
        "output_dtype": str(model.output.dtype), "backend": keras.backend.backend(),
    }))


def pipeline_child(steps: int) -> None:
    """Part 2 in one process: fit from the tf.data pipeline, then from in-memory tensors."""
    import tempfile

    import keras
    import tensorflow as tf

    from livertumor.demo.generator import make_demo_dataset
    from livertumor.export import export_slices
    from livertumor.training.dataset import load_manifest, make_dataset
    from livertumor.training.losses import DiceCrossEntropy
    from livertumor.training.metrics import segmentation_metrics
    from livertumor.training.models import build_unet

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    with tempfile.TemporaryDirectory() as tmp:
        make_demo_dataset(f"{tmp}/raw", n_cases=4, seed=0, size=256, progress=False)
        export_slices(f"{tmp}/raw", f"{tmp}/export", size=128, test_fraction=0.0,
                      progress=False)
        rows = load_manifest(f"{tmp}/export")
        rates = {}
        for source in ("pipeline", "in-memory"):
            keras.utils.set_random_seed(0)
            model = build_unet((128, 128, 3), base_filters=16)
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=DiceCrossEntropy(),
                          metrics=segmentation_metrics())
            ds = make_dataset(rows, BATCH, 128, training=True, seed=0)
            if source == "in-memory":
                batches = [b for b in ds.take(8)]
                x = tf.concat([b[0] for b in batches], 0)
                y = tf.concat([b[1] for b in batches], 0)
                ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).repeat()
            else:
                for _ in ds.take(len(rows) // BATCH + 1):  # fill the decode cache first
                    pass
            model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # trace and warm up
            t0 = time.perf_counter()
            model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
            rates[source] = steps * BATCH / (time.perf_counter() - t0)
    print(json.dumps(rates))


def run_child(arch: str, side: int, policy: str, warmup: int, steps: int) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, __file__, "--child", arch, str(side), policy, str(warmup), str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{arch} {side}px {policy} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="half the timed steps")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply the timed steps (e.g. 4 on a GPU)")
    parser.add_argument("--arch", choices=("unet", "resnet50_unet"), action="append",
                        help="only this architecture (repeatable)")
    parser.add_argument("--side", type=int, choices=(128, 256), action="append",
                        help="only this size (repeatable)")
    parser.add_argument("--pipeline-only", action="store_true", help="only part 2")
    args = parser.parse_args(argv)
    scale = args.steps_scale * (0.5 if args.quick else 1.0)
    if not args.pipeline_only:
        models_table(args, scale)
    steps = max(4, round(20 * scale))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, __file__, "--pipeline", str(steps)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"pipeline benchmark failed:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\ninput pipeline, demo U-Net (16 filters, 128 px, mixed_bfloat16), {steps} steps:")
    print(f"  from exported JPEG/PNG (tf.data): {r['pipeline']:7.1f} img/s")
    print(f"  from in-memory tensors:           {r['in-memory']:7.1f} img/s")
    print(f"  pipeline keeps {100 * r['pipeline'] / r['in-memory']:.0f} % of the model's speed "
          "(aim: at least 90 %)")


def models_table(args, scale: float) -> None:
    print(f"training-step throughput, batch {BATCH}, model.fit on in-memory arrays, "
          f"{os.cpu_count()} CPU cores, KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '')!r}")
    header = (f"{'model':<14} {'px':>4} {'policy':<15} {'params':>7} {'steps':>5} "
              f"{'s/step':>7} {'img/s':>7} {'vs f32':>6} {'1st steps':>9}")
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for (arch, side), (warmup, steps) in STEPS.items():
        if (args.arch and arch not in args.arch) or (args.side and side not in args.side):
            continue
        steps = max(2, round(steps * scale))
        base = None
        for policy in POLICIES:
            r = run_child(arch, side, policy, warmup, steps)
            base = base or r["images_per_s"]
            print(f"{arch:<14} {side:>4} {policy:<15} {r['params'] / 1e6:6.1f}M {steps:>5} "
                  f"{r['s_per_step']:7.2f} {r['images_per_s']:7.1f} "
                  f"{r['images_per_s'] / base:5.2f}x {r['first_steps_s']:8.1f}s", flush=True)
    print(f"(backend {r['backend']}; output dtype {r['output_dtype']}; "
          f"'1st steps' = tracing + warm-up; whole run {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--pipeline":
        pipeline_child(int(sys.argv[2]))
    elif len(sys.argv) == 7 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    else:
        main()
