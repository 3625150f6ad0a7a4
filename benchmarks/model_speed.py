"""Training-step throughput of the two models: images/s of ``model.fit`` on in-memory arrays.

For the U-Net (32 base filters, depth 4) and the ResNet-50 U-Net (random weights), at 128 and
256 px, in float32 and under the ``mixed_bfloat16`` policy, batch 16, with the package's loss
(Dice + cross-entropy) and the four Dice / IoU metrics compiled in, Adam. Each configuration
runs in a fresh Python process, so a dtype policy or a traced graph never leaks into the next.
One ``fit`` call runs ``warmup + steps`` steps over arrays already in memory (no input
pipeline); the rate is taken between the end of the last warm-up step and the end of the last
step, so tracing and the first-step allocations are excluded.

Run: ``python benchmarks/model_speed.py`` (about 6 minutes on 2 CPU cores); ``--quick`` halves
the steps; ``--steps-scale 4`` lengthens them for a GPU. Set ``KERAS_BACKEND`` to time another
backend (the children inherit the environment).
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
    from livertumor.losses import DiceCrossEntropy
    from livertumor.metrics import segmentation_metrics
    from livertumor.models import build_resnet50_unet, build_unet

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
    args = parser.parse_args(argv)
    scale = args.steps_scale * (0.5 if args.quick else 1.0)

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
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    else:
        main()
