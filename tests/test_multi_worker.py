"""Multi-worker training: two TF_CONFIG workers on loopback, kill and resume, worker roles."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from livertumor.training.distributed import local_cluster, validation_batches, worker_role

pytestmark = pytest.mark.xdist_group("training")

WORKER = textwrap.dedent("""
    import json, os, signal, sys
    import keras
    from livertumor.training import TrainConfig, train

    export_dir, model_dir, epochs, kill_after = sys.argv[1:5]
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if task == 1 and epoch == int(kill_after):
                os.kill(os.getpid(), signal.SIGKILL)

    config = TrainConfig(epochs=int(epochs), image_size=64, batch_size=8, base_filters=8,
                         depth=3, patience=0, steps_per_epoch=3, strategy="multi_worker")
    result = train(export_dir, model_dir, config, callbacks=[Kill()], verbose=0)
    print("RESULT " + json.dumps(result), flush=True)
""")


def start_workers(tmp_path, export_dir, model_dir, epochs, kill_after=-1):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = []
    for tf_config in local_cluster(2):
        env = {**os.environ, "TF_CONFIG": tf_config, "TF_CPP_MIN_LOG_LEVEL": "2"}
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(export_dir), str(model_dir), str(epochs),
             str(kill_after)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    return procs


def finish(procs, timeout=300):
    """(return codes, outputs) once both workers ended; kills any still running at timeout."""
    deadline = time.monotonic() + timeout
    outputs = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            out += "\n<killed by the test: still running>"
        outputs.append(out)
    return [p.returncode for p in procs], outputs


def result_of(output):
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def validation_dice(model_path, export_dir, cases):
    """Liver and tumor Dice of a saved model over the validation slices, in this process."""
    from livertumor.training.dataset import load_manifest, make_dataset
    from livertumor.training.metrics import segmentation_metrics
    from livertumor.training.models import load_model

    model = load_model(model_path)
    manifest = load_manifest(export_dir)
    rows = manifest[manifest["case_id"].isin(cases)]
    metrics = segmentation_metrics()
    for images, masks in make_dataset(rows, 5, 64):
        probs = model(images, training=False)
        for metric in metrics:
            metric.update_state(masks, probs)
    return {m.name: float(m.result()) for m in metrics}


def test_two_workers_split_the_batch_stay_in_step_and_the_chief_writes_the_model(
        export_dir, tmp_path):
    from livertumor.training import read_history
    from livertumor.training.distributed import weights_digest
    from livertumor.training.models import load_model

    model_dir = tmp_path / "m"
    codes, outputs = finish(start_workers(tmp_path, export_dir, model_dir, epochs=2))
    assert codes == [0, 0], "\n=====\n".join(o[-3000:] for o in outputs)
    chief, other = (result_of(o) for o in outputs)
    assert chief["worker"]["chief"] and not other["worker"]["chief"]
    assert chief["replicas"] == other["replicas"] == 2
    # 2 epochs x 3 steps of a global batch of 8: 4 images per step on each worker
    assert chief["worker"]["images_seen"] == other["worker"]["images_seen"] == 2 * 3 * 4
    # the replicas stayed in sync, and model.keras is what they ended with
    assert chief["weights_sha256"] == other["weights_sha256"]
    assert weights_digest(load_model(model_dir / "model.keras")) == chief["weights_sha256"]
    assert chief["best"] == other["best"] and chief["last"] == other["last"]
    history = read_history(model_dir)
    assert list(history["epoch"]) == [0, 1]
    assert {"loss", "liver_dice", "val_loss", "val_liver_dice", "val_tumor_iou",
            "learning_rate"} <= set(history)
    assert not (model_dir / "backup").exists()
    record = json.loads((model_dir / "config.json").read_text())
    assert record["result"]["weights_sha256"] == chief["weights_sha256"]
    # the validation pass scores every validation slice exactly once, spread over 2 workers
    direct = validation_dice(model_dir / "last.keras", export_dir,
                             record["data"]["validation_cases"])
    for name in ("liver_dice", "tumor_dice", "liver_iou", "tumor_iou"):
        assert history[f"val_{name}"].iloc[-1] == pytest.approx(direct[name], abs=1e-4), name


def test_a_killed_worker_stops_the_job_and_the_same_command_resumes_it(export_dir, tmp_path):
    from livertumor.training import read_history

    model_dir = tmp_path / "m"
    codes, outputs = finish(start_workers(tmp_path, export_dir, model_dir, epochs=3,
                                          kill_after=0))
    assert codes[1] == -9  # the worker that was killed
    assert codes[0] != 0 and "<killed by the test" not in outputs[0], outputs[0][-3000:]
    assert "RESULT" not in outputs[0]
    assert json.loads((model_dir / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    assert not (model_dir / "model.keras").exists()
    before = read_history(model_dir)
    assert list(before["epoch"]) == [0]

    codes, outputs = finish(start_workers(tmp_path, export_dir, model_dir, epochs=3))
    assert codes == [0, 0], "\n=====\n".join(o[-3000:] for o in outputs)
    chief, other = (result_of(o) for o in outputs)
    assert chief["worker"]["initial_epoch"] == other["worker"]["initial_epoch"] == 1
    assert chief["worker"]["epochs_run"] == 2 and chief["epochs_before_this_call"] == 1
    assert chief["weights_sha256"] == other["weights_sha256"]
    after = read_history(model_dir)
    assert list(after["epoch"]) == [0, 1, 2]
    pd.testing.assert_frame_equal(after.iloc[:1], before, check_dtype=False)
    assert after["learning_rate"].is_monotonic_decreasing
    assert (model_dir / "model.keras").exists() and not (model_dir / "backup").exists()


@pytest.mark.parametrize("n,batch,pipelines,replicas", [
    (10, 4, 2, 2), (9, 4, 2, 2), (3, 4, 2, 2), (17, 2, 3, 3), (8, 4, 1, 1), (11, 3, 2, 4)])
def test_validation_batches_score_every_row_once_with_equal_steps(n, batch, pipelines, replicas):
    rows = pd.DataFrame({"i": np.arange(n)})
    seen, elements = [], set()
    for p in range(pipelines):
        mine, real, empty = validation_batches(rows, batch, p, pipelines, replicas)
        seen += list(mine["i"])
        elements.add(real + empty)
        assert real == math.ceil(len(mine) / batch)
    assert sorted(seen) == list(range(n))
    # every pipeline feeds its replicas the same number of steps
    batches = math.ceil(n / batch)
    assert elements == {math.ceil(batches / replicas) * (replicas // pipelines)}


def test_worker_role_reads_tf_config():
    assert worker_role("").is_chief and worker_role("").num_workers == 1
    cluster = {"worker": ["a:1", "b:2", "c:3"]}
    roles = [worker_role(json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
             for i in range(3)]
    assert [r.is_chief for r in roles] == [True, False, False]
    assert {r.num_workers for r in roles} == {3}
    with_chief = {"chief": ["a:1"], "worker": ["b:2"]}
    assert worker_role(json.dumps({"cluster": with_chief, "task": {"type": "chief"}})).is_chief
    assert not worker_role(json.dumps({"cluster": with_chief,
                                       "task": {"type": "worker", "index": 0}})).is_chief
    with pytest.raises(ValueError, match="not in the cluster"):
        worker_role(json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 3}}))
    with pytest.raises(ValueError, match="not a valid"):
        worker_role("{not json")


SINGLE = textwrap.dedent("""
    import json, sys
    from livertumor.training import TrainConfig, train

    export_dir, model_dir, strategy, precision = sys.argv[1:5]
    config = TrainConfig(epochs=2, image_size=64, batch_size=8, base_filters=8, depth=3,
                         patience=0, steps_per_epoch=3, strategy=strategy, precision=precision)
    print("RESULT " + json.dumps(train(export_dir, model_dir, config, verbose=0)), flush=True)
""")


def test_the_multi_worker_loop_in_one_process_reproduces_fit(export_dir, tmp_path):
    """One worker, one input pipeline: the same batches, so the custom step must give fit's
    numbers; the same model, loss, metrics and callbacks are behind both."""
    from livertumor.training import read_history

    script = tmp_path / "single.py"
    script.write_text(SINGLE)
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    runs = {}
    for strategy, precision in (("auto", "float32"), ("multi_worker", "float32"),
                                ("multi_worker", "mixed_bfloat16")):
        model_dir = tmp_path / f"{strategy}-{precision}"
        done = subprocess.run([sys.executable, str(script), str(export_dir), str(model_dir),
                               strategy, precision], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        runs[strategy, precision] = (result_of(done.stdout), read_history(model_dir))
    (fit, fit_history), (loop, loop_history) = (runs["auto", "float32"],
                                                runs["multi_worker", "float32"])
    assert list(fit_history.columns) == list(loop_history.columns)
    pd.testing.assert_frame_equal(fit_history, loop_history, rtol=1e-5)
    assert loop["worker"]["images_seen"] == 2 * 3 * 8
    assert loop["best_epoch"] == fit["best_epoch"]
    assert loop["best_val_loss"] == pytest.approx(fit["best_val_loss"], rel=1e-5)
    bf16, bf16_history = runs["multi_worker", "mixed_bfloat16"]
    assert np.isfinite(bf16_history["loss"]).all() and list(bf16_history["epoch"]) == [0, 1]
    assert bf16_history["loss"].iloc[-1] == pytest.approx(fit_history["loss"].iloc[-1], rel=0.05)
