#!/usr/bin/env bash
# Training throughput of both models on a lent GPU machine, JAX backend (part 1 of
# benchmarks/train_speed.py): U-Net and ResNet-50 U-Net at 256 px, float32 and mixed_bfloat16,
# batch 32, 64 and 128; fit and the jitted step on a device-resident batch, in images/s and as a
# share of the chip's dense bf16 peak.
#
# That machine has JAX (and PyTorch) but neither TensorFlow nor Keras, and no network. Keras
# travels as wheels with the two of its needs the machine lacks (namex, optree), and nibabel,
# which `import livertumor` needs; the package itself is read from lib/ of the copied tree.
# Once, here, in the repository root (.whl/ is ignored by .gitignore):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl/train_speed keras==3.15.1 namex==0.1.0 optree==0.20.0 nibabel==5.4.2
#
# (about 6 MiB; keras as pinned in constraints.txt). Then call the device tool's `run` with
#   command:   bash benchmarks/device_train_speed.sh
#   carry:     [".whl/train_speed"]
#   timeout_s: 450
# The benchmark starts no configuration after TIME_BUDGET seconds (default 330) and stops one
# still running at 1.25 times that, so the call ends inside its limit with a table of what
# finished, smallest batches first. $OUT gets train_speed.log (the whole output),
# train_speed.jsonl (one JSON line per configuration) and gpu.csv. Extra arguments go to
# train_speed.py, e.g. `--batch 128` to time only that batch size in a second call (256 px is
# the JAX default; `--side` replaces it). WHEELS names another wheel folder, e.g. one of cp311
# wheels to try the whole script on a CPU machine with JAX and without Keras.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "${WHEELS:-.whl/train_speed}"/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD/lib" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
out="${OUT:-/tmp/train_speed_out}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,power.draw,temperature.gpu \
    --format=csv 2>&1 | tee "$out/gpu.csv"
python3 -c 'import sys, jax, keras; print(sys.version.split()[0], "jax", jax.__version__, "keras",
keras.__version__, keras.backend.backend(), jax.devices())' || exit 1
python3 benchmarks/train_speed.py --time-budget "${TIME_BUDGET:-330}" \
    --json "$out/train_speed.jsonl" "$@" 2>&1 | tee "$out/train_speed.log"
