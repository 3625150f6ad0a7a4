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

Part 1 on the JAX backend (``KERAS_BACKEND=jax``; TensorFlow is then never imported, so this
runs on a GPU machine that has JAX only). For each architecture, side (256 px unless
``--side``), policy and batch size (``--batch``, default 32, 64 and 128), again one fresh
process each:

- fit: images/s of ``model.fit`` on in-memory arrays, timed as above;
- step: images/s of the same compiled training step called in a loop on one batch that was put
  on the device once (``jax.device_put``), timed with ``block_until_ready``: the model's own
  speed, without the per-step copy from host memory and the per-step callback of ``fit``. The
  step is Keras's own ``train_step`` (loss, gradients, Adam update, metrics) under ``jax.jit``
  with the state donated, exactly as Keras compiles it for ``fit``; ``fit`` is handed this very
  function, so both rates come from one compilation;
- FLOPs: the floating-point operations of one step from XLA's cost analysis of the compiled
  step (a multiply-add counts 2; convolution taps that fall on the padding are not counted),
  shown as GFLOP per image; the two rates times these FLOPs give TFLOP/s, shown as a fraction
  of the chip's dense bf16 peak (``--peak-tflops``, else looked up from JAX's device kind; on a
  CPU the peak is unknown and no fraction is printed).

``--time-budget S`` starts no configuration after S seconds and stops one still running at
1.25 S, so a run on a lent machine ends inside its limit with a table of what finished;
``--json PATH`` appends every configuration's figures as one JSON line. Part 2 needs
TensorFlow and is skipped on the JAX backend.

Part 2, input pipeline: the demo U-Net (16 base filters, 128 px, mixed_bfloat16, batch 16)
trained for the same number of steps (a) from ``livertumor.training.dataset.make_dataset`` over an
export of demo cases (JPEG decode, tumor oversampling, augmentation, cache, prefetch) and (b)
on the same batches already in memory as tensors, each in a fresh process, alternated three
times; the fastest run of each is kept. The ratio a / b is the share of the model's speed the
pipeline keeps; the aim is at least 90 %.

Part 3, batch norm: the demo U-Net (16 base filters, 128 px, batch 16) in float32 and
mixed_bfloat16 with Keras's ``BatchNormalization``, with the fused one the trainer trains with
(:mod:`livertumor.training.fused_norm`) and with no batch norm, in-memory arrays as in part 1;
the fastest of two alternated fresh processes each. Part 1 trains the fused one, as training
does.

Run: ``python benchmarks/train_speed.py`` (about 10 minutes on 2 CPU cores); ``--quick`` halves
the steps; ``--steps-scale 4`` lengthens them for a GPU; ``--pipeline-only`` runs part 2,
``--batch-norm-only`` part 3.
Set ``KERAS_BACKEND`` to time another backend for part 1 (the children inherit it). On a lent
GPU machine: ``benchmarks/device_train_speed.sh`` (JAX, both models at 256 px).
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
ARCHS = ("unet", "resnet50_unet")

# JAX backend defaults: sides and batch sizes; fit's warm-up steps (the first one compiles) and
# timed steps; the device-resident loop's fewest steps and its target length in seconds (the
# step count is chosen from a 3-step probe). --steps-scale and --quick scale the last three.
JAX_SIDES = (256,)
JAX_BATCHES = (32, 64, 128)
JAX_FIT = (2, 20)
JAX_LOOP = (20, 2.0)
# fit's tiled input arrays (images and labels of all its steps) stay under this many bytes
FIT_BYTES = 2 * 2**30

# Dense bf16 tensor-core peak in TFLOP/s, by a case-insensitive substring of JAX's
# device_kind, first match wins. Source: NVIDIA's H100 and H200 Tensor Core GPU datasheets,
# "BF16 Tensor Core", which list the rate with 2:4 sparsity (H100 SXM and H200 SXM 1,979;
# H100 NVL and H200 NVL 1,671; H100 PCIe 1,513 TFLOPS); the dense rate is half of it (989.4 is
# also the Hopper whitepaper's dense BF16 figure for the H100 SXM5). A100: 312, dense, from its
# datasheet. Measured ceiling for comparison: an 8192^3 bf16 matrix product through PyTorch ran
# at 770-800 TFLOP/s on an H200, about 80 % of its figure here.
PEAK_BF16_TFLOPS = (
    ("H200 NVL", 835.5),
    ("H100 NVL", 835.5),
    ("H100 PCIe", 756.5),
    ("H200", 989.4),  # 'NVIDIA H200' (SXM), also GH200
    ("H100", 989.4),  # 'NVIDIA H100 80GB HBM3' (SXM5)
    ("A100", 312.0),
)


def peak_bf16_tflops(device_kind: str) -> float | None:
    """The dense bf16 peak (TFLOP/s) of a chip named by JAX's ``device_kind``; None if unknown."""
    for name, peak in PEAK_BF16_TFLOPS:
        if name.lower() in device_kind.lower():
            return peak
    return None


def jax_backend() -> bool:
    """Whether part 1 runs on the JAX backend (``KERAS_BACKEND=jax``; the children inherit it)."""
    return os.environ.get("KERAS_BACKEND", "").strip().lower() == "jax"


def compiled_model(arch: str, side: int, policy: str, batch_norm: str = "fused",
                   base_filters: int = 32):
    """The model under ``policy`` for (side, side, 3) inputs, compiled as the notebooks do.

    ``batch_norm``: "fused" as the trainer trains it (:func:`with_fused_batch_norm`), "keras"
    (Keras's own layer), "none" (a U-Net without batch norm). ``base_filters``: the U-Net's.
    """
    import keras

    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    from livertumor.training.fused_norm import with_fused_batch_norm
    from livertumor.training.losses import DiceCrossEntropy
    from livertumor.training.metrics import segmentation_metrics
    from livertumor.training.models import build_resnet50_unet, build_unet

    if arch == "unet":
        model = build_unet(input_shape=(side, side, 3), base_filters=base_filters,
                           batch_norm=batch_norm != "none")
    else:
        model = build_resnet50_unet(input_shape=(side, side, 3))
    if batch_norm == "fused":
        model = with_fused_batch_norm(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=DiceCrossEntropy(),
                  metrics=segmentation_metrics())
    return model


def synthetic_batches(batch: int, side: int, n: int):
    """``n`` copies of one batch: images (n * batch, side, side, 3) float32 in [0, 1) and label
    maps (n * batch, side, side) uint8 (0 background, 1 an ellipse of liver, 2 a disc of tumor)."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((batch, side, side, 3), dtype=np.float32)
    yy, xx = np.mgrid[:side, :side]
    y = np.zeros((batch, side, side), np.uint8)
    y[:, ((yy - side / 2) / (0.3 * side)) ** 2 + ((xx - side / 2) / (0.25 * side)) ** 2 < 1] = 1
    y[:, (yy - side / 2) ** 2 + (xx - side / 2) ** 2 < (0.08 * side) ** 2] = 2
    return np.tile(x, (n, 1, 1, 1)), np.tile(y, (n, 1, 1))


def timed_fit(model, x, y, batch: int, warmup: int) -> dict:
    """One epoch of ``model.fit`` over (x, y); seconds of the steps after the warm-up ones.

    Returns ``timed_s`` (end of step ``warmup`` to end of the last step), ``first_steps_s``
    (start of ``fit`` to end of step ``warmup``: tracing, compilation, first allocations) and
    ``total_s``. The per-step callback receives the step's logs as Python numbers, so each
    timestamp is taken after that step has finished.
    """
    import keras

    ends: list[float] = []
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda step, logs: ends.append(time.perf_counter()))
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
    return {"timed_s": ends[-1] - ends[warmup - 1], "first_steps_s": ends[warmup - 1] - t0,
            "total_s": time.perf_counter() - t0}


def child(arch: str, side: int, policy: str, warmup: int, steps: int, batch: int = BATCH,
          batch_norm: str = "fused", base_filters: int = 32) -> None:
    """Build, compile and time one configuration; print one JSON line."""
    import keras

    model = compiled_model(arch, side, policy, batch_norm, base_filters)
    x, y = synthetic_batches(batch, side, warmup + steps)
    fit = timed_fit(model, x, y, batch, warmup)
    print(json.dumps({
        "arch": arch, "side": side, "policy": policy, "batch": batch,
        "params": model.count_params(), "steps": steps, "s_per_step": fit["timed_s"] / steps,
        "images_per_s": batch * steps / fit["timed_s"], "first_steps_s": fit["first_steps_s"],
        "total_s": fit["total_s"], "output_dtype": str(model.output.dtype),
        "backend": keras.backend.backend(),
    }))


def step_flops(cost) -> float | None:
    """The ``flops`` entry of an XLA cost analysis, or None where there is none.

    ``Compiled.cost_analysis()`` returns a dict in recent JAX versions and a list of dicts (one
    per program; a single-device step has one) in older ones, and may return None.
    """
    if isinstance(cost, (list, tuple)):
        cost = next((c for c in cost if c), None)
    flops = cost.get("flops") if isinstance(cost, dict) else None
    return float(flops) if flops and flops > 0 else None


def jax_child(arch: str, side: int, policy: str, batch: int, warmup: int, steps: int,
              loop_min: int, loop_seconds: float) -> None:
    """Time one configuration on the JAX backend; print one JSON line.

    fit: ``warmup + steps`` batches of ``batch`` synthetic images (side x side x 3, float32)
    and label maps (side x side, uint8) in host memory, timed by :func:`timed_fit`; the first
    step compiles. Step loop: the function ``fit`` ran, called with one batch made
    device-resident by ``jax.device_put`` and the state threaded through (donated each call):
    one call, a 3-call probe, then ``max(loop_min, loop_seconds / probe step time)`` timed calls
    ended by ``block_until_ready``. FLOPs of one step from the compiled step's cost analysis
    (``flops``) and, as a cross-check, from the HLO before XLA's optimisations
    (``flops_unoptimized``). Times in seconds.
    """
    import math

    import jax
    import keras

    model = compiled_model(arch, side, policy)
    x, y = synthetic_batches(batch, side, warmup + steps)

    # Keras's JAX trainer compiles ``jit(model.train_step, donate_argnums=0)`` for fit; build
    # that here and hand it to fit, keeping the first batch fit passed to it.
    step = jax.jit(model.train_step, donate_argnums=0)
    fit_batches: list = []

    def train_function(state, iterator):
        data = next(iterator)
        if not fit_batches:
            fit_batches.append(data)
        return step(state, data)

    model.train_function = train_function
    fit = timed_fit(model, x, y, batch, warmup)
    del x, y

    data = jax.device_put(fit_batches[0])
    state = ([v.value for v in model.trainable_variables],
             [v.value for v in model.non_trainable_variables],
             [v.value for v in model.optimizer.variables],
             [v.value for v in model.metrics_variables])

    def run(n: int, state):
        t0 = time.perf_counter()
        for _ in range(n):
            logs, state = step(state, data)
        jax.block_until_ready((logs, state))
        return time.perf_counter() - t0, state

    first_call_s, state = run(1, state)
    probe_s, state = run(3, state)
    loop_steps = max(loop_min, math.ceil(loop_seconds / (probe_s / 3)))
    loop_s, state = run(loop_steps, state)

    t0 = time.perf_counter()
    lowered = step.lower(state, data)  # traced and compiled already: both come from JAX's caches
    flops = step_flops(lowered.compile().cost_analysis())
    cost_analysis_s = time.perf_counter() - t0
    try:
        flops_unoptimized = step_flops(lowered.cost_analysis())
    except Exception:  # not every JAX version analyses a lowered module
        flops_unoptimized = None
    cache_size = getattr(step, "_cache_size", None)
    device = jax.devices()[0]
    print(json.dumps({
        "arch": arch, "side": side, "policy": policy, "batch": batch,
        "params": model.count_params(), "fit_steps": steps, "fit_timed_s": fit["timed_s"],
        "fit_images_per_s": batch * steps / fit["timed_s"],
        "first_steps_s": fit["first_steps_s"], "fit_total_s": fit["total_s"],
        "loop_steps": loop_steps, "loop_timed_s": loop_s,
        "step_images_per_s": batch * loop_steps / loop_s, "loop_first_call_s": first_call_s,
        "flops_per_step": flops, "flops_unoptimized": flops_unoptimized,
        "cost_analysis_s": cost_analysis_s,
        "jit_cache_entries": cache_size() if cache_size else None,
        "tensorflow_imported": "tensorflow" in sys.modules,
        "output_dtype": str(model.output.dtype), "backend": keras.backend.backend(),
        "device_kind": device.device_kind, "platform": device.platform,
        "jax": jax.__version__, "keras": keras.__version__,
        "matmul_precision": jax.config.jax_default_matmul_precision,
    }))


def make_pipeline_export(folder: str) -> None:
    """Part 2's data: four demo cases exported at 128 px into ``folder``/export."""
    from livertumor.demo.generator import make_demo_dataset
    from livertumor.export import export_slices

    make_demo_dataset(f"{folder}/raw", n_cases=4, seed=0, size=256, progress=False)
    export_slices(f"{folder}/raw", f"{folder}/export", size=128, test_fraction=0.0,
                  progress=False)


def pipeline_child(source: str, export_dir: str, steps: int) -> None:
    """Part 2, one source in this (fresh) process: fit from the tf.data pipeline or from the
    same batches in memory; prints the images/s as a JSON line."""
    import keras
    import tensorflow as tf

    from livertumor.training.dataset import load_manifest, make_dataset

    rows = load_manifest(export_dir)
    model = compiled_model("unet", 128, "mixed_bfloat16", "fused", base_filters=16)
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
    # timed between the ends of step 2 and of the last step (fit's own start-up excluded)
    ends: list[float] = []
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
    model.fit(ds, steps_per_epoch=steps + 2, epochs=1, verbose=0, callbacks=[timer])
    print(json.dumps({"images_per_s": steps * BATCH / (ends[-1] - ends[1])}))


def run_child(arch: str, side: int, policy: str, warmup: int, steps: int,
              batch: int = BATCH, batch_norm: str = "fused", base_filters: int = 32) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, __file__, "--child", arch, str(side), policy, str(warmup), str(steps),
           str(batch), batch_norm, str(base_filters)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{arch} {side}px {policy} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_jax_child(args: list, timeout: float | None) -> dict:
    """:func:`jax_child` in a fresh process; on failure ``{"error": why}`` (the last line of its
    stderr, whose tail is copied to this process's stderr)."""
    cmd = [sys.executable, __file__, "--jax-child", *map(str, args)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"stopped after {timeout:.0f} s (time budget)"}
    if out.returncode != 0:
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        sys.stderr.write(out.stderr[-3000:])
        return {"error": "failed: " + (lines[-1] if lines else f"exit {out.returncode}")[:160]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="half the timed steps")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply the timed steps (e.g. 4 on a GPU)")
    parser.add_argument("--arch", choices=ARCHS, action="append",
                        help="only this architecture (repeatable)")
    parser.add_argument("--side", type=int, action="append",
                        help="only this size (repeatable): 128 or 256; on the JAX backend any "
                             "multiple of 32 (default 256 there)")
    parser.add_argument("--batch", type=int, action="append",
                        help=f"batch size (repeatable; default {BATCH}, on the JAX backend "
                             f"{' '.join(map(str, JAX_BATCHES))})")
    parser.add_argument("--peak-tflops", type=float,
                        help="the chip's dense bf16 peak in TFLOP/s for the JAX table (default: "
                             "looked up from the device kind)")
    parser.add_argument("--time-budget", type=float,
                        help="JAX backend: start no configuration after this many seconds")
    parser.add_argument("--json", metavar="PATH",
                        help="JAX backend: append each configuration's figures as a JSON line")
    parser.add_argument("--pipeline-only", action="store_true", help="only part 2")
    parser.add_argument("--batch-norm-only", action="store_true", help="only part 3")
    args = parser.parse_args(argv)
    scale = args.steps_scale * (0.5 if args.quick else 1.0)
    sides = {side for _, side in STEPS}
    for side in args.side or ():
        if side % 32 or (not jax_backend() and side not in sides):
            parser.error(f"--side {side}: 128 or 256 (any multiple of 32 on the JAX backend)")
    if args.batch_norm_only:
        batch_norm_table(max(4, round(16 * scale)), repeat=2)
        return
    if not args.pipeline_only:
        if jax_backend():
            jax_table(args, scale)
            print("\ninput pipeline (part 2): needs TensorFlow's tf.data, not run on the jax "
                  "backend")
            return
        models_table(args, scale)
    pipeline_table(max(4, round(40 * scale)), repeat=3)
    if not args.pipeline_only:
        batch_norm_table(max(4, round(16 * scale)), repeat=2)


def batch_norm_table(steps: int, repeat: int) -> None:
    """Part 3: the demo U-Net (16 filters, 128 px, batch 16) with Keras's batch norm, with the
    fused one training uses, and without batch norm, in float32 and mixed_bfloat16; one fresh
    process each, the three alternated ``repeat`` times, the fastest run of each kept."""
    modes = ("keras", "fused", "none")
    print(f"\nbatch norm, demo U-Net (16 filters, 128 px, batch {BATCH}), {steps} steps, the "
          f"fastest of {repeat} fresh processes each:")
    print(f"  {'policy':<15} " + " ".join(f"{m + ' img/s':>12}" for m in modes)
          + f" {'fused/keras':>12}")
    for policy in POLICIES:
        rates = {mode: 0.0 for mode in modes}
        for _ in range(repeat):
            for mode in modes:
                r = run_child("unet", 128, policy, 2, steps, BATCH, mode, 16)
                rates[mode] = max(rates[mode], r["images_per_s"])
        print(f"  {policy:<15} " + " ".join(f"{rates[m]:12.1f}" for m in modes)
              + f" {rates['fused'] / rates['keras']:11.2f}x", flush=True)


def pipeline_table(steps: int, repeat: int) -> None:
    """Part 2: each source in a fresh process, the two alternated ``repeat`` times; the
    fastest run of each is compared (the slower ones waited for other processes)."""
    import tempfile

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    rates: dict[str, list[float]] = {"pipeline": [], "in-memory": []}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, __file__, "--pipeline-data", tmp], check=True, env=env,
                       capture_output=True)
        for _ in range(repeat):
            for source in rates:
                out = subprocess.run([sys.executable, __file__, "--pipeline", source,
                                      f"{tmp}/export", str(steps)],
                                     capture_output=True, text=True, env=env)
                if out.returncode != 0:
                    raise RuntimeError(f"pipeline benchmark failed:\n{out.stderr[-3000:]}")
                rates[source].append(
                    json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"])
    best = {source: max(r) for source, r in rates.items()}
    print(f"\ninput pipeline, demo U-Net (16 filters, 128 px, mixed_bfloat16), {steps} steps, "
          f"the fastest of {repeat} fresh processes each:")
    for source, label in (("pipeline", "from exported JPEG/PNG (tf.data)"),
                          ("in-memory", "from in-memory tensors")):
        runs = ", ".join(f"{r:.1f}" for r in rates[source])
        print(f"  {label:<33} {best[source]:7.1f} img/s   (runs: {runs})")
    print(f"  pipeline keeps {100 * best['pipeline'] / best['in-memory']:.0f} % of the model's "
          "speed (aim: at least 90 %)")


def models_table(args, scale: float) -> None:
    batches = args.batch or [BATCH]
    print(f"training-step throughput, batch {', '.join(map(str, batches))}, model.fit on "
          f"in-memory arrays, {os.cpu_count()} CPU cores, "
          f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '')!r}")
    header = (f"{'model':<14} {'px':>4} {'policy':<15} {'batch':>5} {'params':>7} {'steps':>5} "
              f"{'s/step':>7} {'img/s':>7} {'vs f32':>6} {'1st steps':>9}")
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for (arch, side), (warmup, steps) in STEPS.items():
        if (args.arch and arch not in args.arch) or (args.side and side not in args.side):
            continue
        steps = max(2, round(steps * scale))
        for batch in batches:
            base = None
            for policy in POLICIES:
                r = run_child(arch, side, policy, warmup, steps, batch)
                base = base or r["images_per_s"]
                print(f"{arch:<14} {side:>4} {policy:<15} {batch:>5} {r['params'] / 1e6:6.1f}M "
                      f"{steps:>5} {r['s_per_step']:7.2f} {r['images_per_s']:7.1f} "
                      f"{r['images_per_s'] / base:5.2f}x {r['first_steps_s']:8.1f}s", flush=True)
    print(f"(backend {r['backend']}; output dtype {r['output_dtype']}; "
          f"'1st steps' = tracing + warm-up; whole run {time.perf_counter() - started:.0f} s)")


def jax_row(r: dict) -> str:
    """One line of the JAX table (a configuration's figures, or its error)."""
    head = f"{r['arch']:<14} {r['side']:>4} {r['policy']:<15} {r['batch']:>5}"
    if "error" in r:
        return f"{head}  {r['error']}"

    def pct(fraction):
        return f"{100 * fraction:6.1f}%" if fraction is not None else "   n/a"

    gflop = f"{r['gflop_per_image']:9.2f}" if r["gflop_per_image"] else f"{'n/a':>9}"
    tflops = f"{r['step_tflops']:9.2f}" if r["step_tflops"] else f"{'n/a':>9}"
    return (f"{head} {r['fit_images_per_s']:9.1f} {r['step_images_per_s']:10.1f} "
            f"{r['step_images_per_s'] / r['fit_images_per_s']:5.2f}x {gflop} {tflops} "
            f"{pct(r['fit_peak_fraction']):>7} {pct(r['step_peak_fraction']):>8} "
            f"{r['first_steps_s']:6.1f}")


def jax_table(args, scale: float) -> None:
    """Part 1 on the JAX backend: one fresh process per (side, batch, architecture, policy),
    in that order, so that a time budget cuts the largest batches first; a row as each one
    ends, then all rows again sorted by architecture, side, policy and batch."""
    sides = args.side or list(JAX_SIDES)
    batches = args.batch or list(JAX_BATCHES)
    archs = args.arch or list(ARCHS)
    warmup, fit_steps = JAX_FIT
    loop_min, loop_seconds = max(2, round(JAX_LOOP[0] * scale)), JAX_LOOP[1] * scale
    budget = args.time_budget
    print(f"training-step throughput on the JAX backend, {os.cpu_count()} CPU cores: fit on "
          f"in-memory arrays, and the jitted step on a device-resident batch")
    header = (f"{'model':<14} {'px':>4} {'policy':<15} {'batch':>5} {'fit img/s':>9} "
              f"{'step img/s':>10} {'ratio':>6} {'GFLOP/img':>9} {'step TF/s':>9} "
              f"{'fit %pk':>7} {'step %pk':>8} {'1st s':>6}")
    print(header)
    print("-" * len(header), flush=True)
    rows: list[dict] = []
    started = time.perf_counter()
    for side in sides:
        for batch in batches:
            # images and labels of fit's warmup + steps batches stay under FIT_BYTES
            fit_cap = FIT_BYTES // (batch * side * side * (3 * 4 + 1)) - warmup
            steps = max(2, min(round(fit_steps * scale), fit_cap))
            for arch in archs:
                for policy in POLICIES:
                    elapsed = time.perf_counter() - started
                    config = {"arch": arch, "side": side, "policy": policy, "batch": batch}
                    if budget is not None and elapsed > budget:
                        r = {**config, "error": f"not started (time budget {budget:.0f} s)"}
                    else:
                        timeout = 1.25 * budget - elapsed if budget is not None else None
                        r = {**config, **run_jax_child(
                            [arch, side, policy, batch, warmup, steps, loop_min, loop_seconds],
                            timeout)}
                    if "error" not in r:
                        add_rates(r, args.peak_tflops)
                    rows.append(r)
                    print(jax_row(r), flush=True)
                    if args.json:
                        with open(args.json, "a") as f:
                            f.write(json.dumps(r) + "\n")
    done = [r for r in rows if "error" not in r]
    order = {name: i for i, name in enumerate(ARCHS)}
    rows.sort(key=lambda r: (order[r["arch"]], r["side"], POLICIES.index(r["policy"]),
                             r["batch"]))
    print(f"\nsorted:\n{header}\n{'-' * len(header)}")
    for r in rows:
        print(jax_row(r))
    if done:
        r = done[0]
        peak = r["peak_tflops"]
        print(f"device {r['device_kind']!r} ({r['platform']}), jax {r['jax']}, keras "
              f"{r['keras']}; bf16 peak "
              + (f"{peak:.1f} TFLOP/s ({r['peak_source']})" if peak else
                 "unknown for this device: no fraction (give --peak-tflops)"))
    print("ratio = step / fit img/s; GFLOP/img: XLA's cost analysis of the compiled step, per "
          "image; TF/s = TFLOP/s;\n%pk = share of the dense bf16 peak; '1st s' = fit's warm-up "
          f"steps with the compilation; whole run {time.perf_counter() - started:.0f} s")


def add_rates(r: dict, peak_tflops: float | None) -> None:
    """Add GFLOP per image, achieved TFLOP/s of fit and of the step loop, and their fractions
    of the dense bf16 peak (None where the FLOPs or the peak are unknown)."""
    peak = peak_tflops or peak_bf16_tflops(r["device_kind"])
    r["peak_tflops"] = peak
    r["peak_source"] = "--peak-tflops" if peak_tflops else "datasheet, dense"
    flops = r["flops_per_step"] or r["flops_unoptimized"]
    r["gflop_per_image"] = flops / r["batch"] / 1e9 if flops else None
    for kind in ("fit", "step"):
        tflops = flops * r[f"{kind}_images_per_s"] / r["batch"] / 1e12 if flops else None
        r[f"{kind}_tflops"] = tflops
        r[f"{kind}_peak_fraction"] = tflops / peak if tflops and peak else None


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--pipeline-data":
        make_pipeline_export(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "--pipeline":
        pipeline_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) == 10 and sys.argv[1] == "--child":
        a = sys.argv[2:]
        child(a[0], int(a[1]), a[2], int(a[3]), int(a[4]), int(a[5]), a[6], int(a[7]))
    elif len(sys.argv) == 10 and sys.argv[1] == "--jax-child":
        a = sys.argv[2:]
        jax_child(a[0], int(a[1]), a[2], int(a[3]), int(a[4]), int(a[5]), int(a[6]), float(a[7]))
    else:
        main()
