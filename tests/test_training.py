"""Training: model folder artifacts, resume after a kill, settings guard, precision, strategy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from livertumor import LiverTumorError
from livertumor.training import TrainConfig, read_history, train

pytestmark = pytest.mark.xdist_group("training")

TINY = dict(image_size=64, batch_size=8, base_filters=8, depth=3, patience=0)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_training_writes_a_complete_model_folder(export_dir, tmp_path):
    import keras

    from livertumor.training.models import load_model

    result = train(export_dir, tmp_path / "m", TrainConfig(epochs=2, **TINY), verbose=0)
    names = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"model.keras", "best.keras", "last.keras", "history.csv", "config.json",
            "preprocessing.json", "logs"} <= names
    assert "backup" not in names  # removed once training finished
    history = read_history(tmp_path / "m")
    assert list(history["epoch"]) == [0, 1]
    for col in ("loss", "val_loss", "liver_dice", "val_liver_dice", "tumor_dice", "learning_rate"):
        assert col in history
    record = json.loads((tmp_path / "m" / "config.json").read_text())
    assert record["config"]["epochs"] == 2 and "packages" in record and "git" in record
    assert set(record["data"]["train_cases"]).isdisjoint(record["data"]["validation_cases"])
    manifest = pd.read_csv(export_dir / "manifest.csv")
    test_cases = set(manifest.loc[manifest["split"] == "test", "case_id"])
    assert test_cases.isdisjoint(record["data"]["train_cases"] + record["data"]["validation_cases"])
    assert result["epochs_run"] == 2
    assert result["tensorboard_logs"] == str(tmp_path / "m" / "logs")  # tensorboard installed
    model = load_model(tmp_path / "m" / "model.keras")
    out = model.predict(np.zeros((1, 64, 64, 3), np.float32), verbose=0)
    assert out.shape == (1, 64, 64, 3)
    np.testing.assert_allclose(out.sum(-1), 1, atol=1e-4)
    assert keras.mixed_precision.global_policy().name == "float32"
    # the final model holds the best epoch's weights (kept in memory, not read back)
    best = load_model(tmp_path / "m" / "best.keras", compile=False)
    for final, kept in zip(model.get_weights(), best.get_weights(), strict=True):
        np.testing.assert_array_equal(final, kept)


def test_a_finished_run_is_not_repeated_and_other_settings_are_refused(export_dir, tmp_path):
    config = TrainConfig(epochs=1, **TINY)
    train(export_dir, tmp_path / "m", config, verbose=0)
    again = train(export_dir, tmp_path / "m", config, verbose=0)
    assert again["already_trained"] is True
    with pytest.raises(LiverTumorError, match="epochs differ"):
        train(export_dir, tmp_path / "m", TrainConfig(epochs=3, **TINY), verbose=0)


KILLER = textwrap.dedent("""
    import os, signal, sys
    import keras
    from livertumor.training import TrainConfig, train

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == int(sys.argv[3]):
                os.kill(os.getpid(), signal.SIGKILL)

    config = TrainConfig(**{CONFIG})
    train(sys.argv[1], sys.argv[2], config, callbacks=[Kill()], verbose=0)
""")


def test_a_killed_run_resumes_after_the_last_finished_epoch(export_dir, tmp_path):
    settings = dict(epochs=5, **TINY)
    script = tmp_path / "killer.py"
    script.write_text(KILLER.replace("{CONFIG}", repr(settings)))
    model_dir = tmp_path / "m"
    res = subprocess.run([sys.executable, str(script), str(export_dir), str(model_dir), "2"],
                         capture_output=True, text=True, env=ENV, timeout=600)
    assert res.returncode == -9, res.stderr[-2000:]
    before = read_history(model_dir)
    assert list(before["epoch"]) == [0, 1, 2]
    assert not (model_dir / "model.keras").exists()
    assert (model_dir / "backup").is_dir()

    result = train(export_dir, model_dir, TrainConfig(**settings), verbose=0)
    after = read_history(model_dir)
    assert list(after["epoch"]) == [0, 1, 2, 3, 4]
    pd.testing.assert_frame_equal(after.iloc[:3], before)  # finished epochs kept as they were
    assert result["epochs_before_this_call"] == 3
    # the schedule continued: learning rate keeps falling across the restart
    assert after["learning_rate"].is_monotonic_decreasing
    assert (model_dir / "model.keras").exists()


def test_mixed_bfloat16_trains_and_restores_the_policy(export_dir, tmp_path):
    import keras

    result = train(export_dir, tmp_path / "m",
                   TrainConfig(epochs=1, precision="mixed_bfloat16", **TINY), verbose=0)
    assert np.isfinite(result["last"]["loss"])
    assert keras.mixed_precision.global_policy().name == "float32"


def test_mirrored_strategy_on_two_logical_cpus(export_dir, tmp_path):
    code = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from livertumor.training import TrainConfig, train
        r = train(sys.argv[1], sys.argv[2],
                  TrainConfig(epochs=1, strategy="mirrored", **{TINY!r}), verbose=0)
        print(json.dumps({{"replicas": r["replicas"], "loss": r["last"]["loss"]}}))
    """)
    res = subprocess.run([sys.executable, "-c", code, str(export_dir), str(tmp_path / "m")],
                         capture_output=True, text=True, env=ENV, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2 and np.isfinite(out["loss"])


def test_train_cli(export_dir, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "livertumor", "train", str(export_dir), str(tmp_path / "m"),
         "--architecture", "resnet50_unet", "--epochs", "1", "--image-size", "64",
         "--batch-size", "4", "--steps-per-epoch", "2"],
        capture_output=True, text=True, env=ENV, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "trained resnet50_unet for 1 epochs" in res.stdout
    assert (tmp_path / "m" / "model.keras").exists()


def test_config_validation():
    with pytest.raises(ValueError, match="divisible by 32"):
        TrainConfig(architecture="resnet50_unet", image_size=100)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="float16")
    assert TrainConfig.from_dict({"epochs": 3, "data_dir": "x"}).epochs == 3
    with pytest.raises(ValueError, match="validation_slice_step"):
        TrainConfig(validation_slice_step=0)


def test_validation_uses_every_kth_slice_of_the_same_validation_patients(export_dir):
    from livertumor.training.trainer import _training_rows

    fit_all, val_all, _ = _training_rows(export_dir, TrainConfig(validation_fraction=0.3))
    fit, val, _ = _training_rows(export_dir, TrainConfig(validation_fraction=0.3,
                                                         validation_slice_step=2))
    pd.testing.assert_frame_equal(fit, fit_all)  # training rows untouched
    assert set(val["case_id"]) == set(val_all["case_id"]) and len(val) < len(val_all)
    for case, rows in val_all.groupby("case_id"):
        expected = sorted(rows["slice_index"])[::2]
        assert sorted(val.loc[val["case_id"] == case, "slice_index"]) == expected


def test_tensorboard_is_available_only_when_the_package_imports(monkeypatch):
    from livertumor.training.callbacks import tensorboard_available

    assert tensorboard_available()  # installed in the test environment
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes `import tensorboard` fail
    assert not tensorboard_available()


@pytest.mark.parametrize("tensorboard", [True, False])
def test_the_tensorboard_callback_is_added_only_when_asked(tmp_path, tensorboard):
    import keras

    from livertumor.training.callbacks import make_callbacks

    callbacks = make_callbacks(tmp_path, TrainConfig(patience=2), tensorboard=tensorboard)
    boards = [c for c in callbacks if isinstance(c, keras.callbacks.TensorBoard)]
    assert [b.log_dir for b in boards] == ([str(tmp_path / "logs")] if tensorboard else [])
    assert isinstance(callbacks[0], keras.callbacks.BackupAndRestore)
    assert isinstance(callbacks[-1], keras.callbacks.EarlyStopping)
    # a non-chief worker never writes logs
    others = make_callbacks(tmp_path, TrainConfig(), chief=False, tensorboard=tensorboard)
    assert not any(isinstance(c, keras.callbacks.TensorBoard) for c in others)


def test_without_tensorboard_training_runs_and_says_no_logs_were_written(
        export_dir, tmp_path, monkeypatch):
    import livertumor.training.callbacks

    monkeypatch.setattr(livertumor.training.callbacks, "tensorboard_available", lambda: False)
    result = train(export_dir, tmp_path / "m", TrainConfig(epochs=1, **TINY), verbose=0)
    assert (tmp_path / "m" / "model.keras").exists()
    assert not (tmp_path / "m" / "logs").exists()
    record = json.loads((tmp_path / "m" / "config.json").read_text())
    assert record["result"]["tensorboard_logs"] == result["tensorboard_logs"]
    assert result["tensorboard_logs"].startswith("not written")
    assert "tensorboard package is not installed" in result["tensorboard_logs"]


def test_train_options_are_the_config_fields_with_their_defaults_and_docs(capsys):
    from dataclasses import fields

    from livertumor.cli import build_parser

    parser = build_parser()
    assert TrainConfig.from_dict(vars(parser.parse_args(["train", "e", "m"]))) == TrainConfig()
    args = parser.parse_args(["train", "e", "m", "--architecture", "resnet50_unet",
                              "--image-size", "64", "--depth", "3", "--learning-rate", "0.01",
                              "--no-augment", "--no-cache", "--dice-weight", "0.5"])
    assert TrainConfig.from_dict(vars(args)) == TrainConfig(
        architecture="resnet50_unet", image_size=64, depth=3, learning_rate=0.01,
        augment=False, cache=False, dice_weight=0.5)
    assert parser.parse_args(["train", "e", "m", "--augment"]).augment is True
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "e", "m", "--precision", "float16"])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in text
        assert " ".join(f.metadata["doc"].split()) in text
    assert "--image-size PX" in text and "(default: 128)" in text


def test_train_cli_refuses_invalid_settings_before_training(tmp_path, capsys):
    from livertumor.cli import main

    code = main(["train", str(tmp_path), str(tmp_path / "m"), "--architecture",
                 "resnet50_unet", "--image-size", "100"])
    assert code == 2
    assert "divisible by 32" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_cascade_of_trained_models_segments_on_the_input_grid(export_dir, tmp_path):
    """Whole-slice liver model and a context-channel ROI tumor model, trained briefly on the
    same cases, assembled into a cascade that segments a held-out volume on its own grid."""
    import nibabel as nib

    from livertumor.export import export_slices, load_export
    from livertumor.inference import load_predictor, segment, write_cascade

    whole = load_export(export_dir)
    raw = Path(whole.cases["volume_path"].iloc[0]).parents[1]
    roi = export_slices(raw, tmp_path / "roi", every=2, size=64, test_fraction=0.2, seed=0,
                        workers=1, progress=False, roi=True, context=1)
    assert roi.cases.set_index("case_id")["split"].equals(
        whole.cases.set_index("case_id")["split"])
    quick = dict(epochs=1, batch_size=4, image_size=64, base_filters=4, depth=2,
                 steps_per_epoch=2, patience=0)
    train(export_dir, tmp_path / "liver", TrainConfig(**quick), verbose=0)
    result = train(roi.out_dir, tmp_path / "tumor", TrainConfig(**quick), verbose=0)
    assert result["data"]["input_channels"] == 5
    spec = write_cascade(tmp_path / "cascade", tmp_path / "liver", tmp_path / "tumor")
    assert load_predictor(spec).tumor.model.input_shape[-1] == 5
    test = whole.cases[whole.cases["split"] == "test"].iloc[0]
    out = segment(spec.parent, test["volume_path"], tmp_path / "pred.nii.gz", progress=False)
    src, pred = nib.load(test["volume_path"]), nib.load(out)
    assert pred.shape == src.shape
    np.testing.assert_allclose(pred.affine, src.affine)
    assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2}


def test_batch_norm_momentum_and_tumor_weight_settings():
    import keras

    from livertumor.training import build_model

    model = build_model(TrainConfig(base_filters=4, depth=2, image_size=32,
                                    batch_norm_momentum=0.9))
    norms = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert norms and all(la.momentum == 0.9 for la in norms)
    default = build_model(TrainConfig(base_filters=4, depth=2, image_size=32))
    assert all(la.momentum == 0.99 for la in default.layers
               if isinstance(la, keras.layers.BatchNormalization))
    for bad in ({"batch_norm_momentum": 1.0}, {"tumor_weight": 0}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_head_prior_starts_the_model_at_the_class_shares_of_the_drawn_slices(export_dir):
    from PIL import Image

    from livertumor.training import load_manifest
    from livertumor.training.trainer import _class_shares, _compiled_model, _loss

    rows = load_manifest(export_dir)
    rows = rows[rows["split"] == "train"]
    config = TrainConfig(**{**TINY, "head_prior": True, "tumor_oversampling": 4.0})
    shares = _class_shares(export_dir, rows, config)
    # by hand from the masks: a tumor slice counts four times
    counts, weights = np.zeros(3), []
    for row in rows.itertuples():
        mask = np.asarray(Image.open(export_dir / row.mask))
        w = 4.0 if (mask == 2).any() else 1.0
        counts += w * np.bincount(mask.ravel(), minlength=3)[:3]
        weights.append(w)
    np.testing.assert_allclose(shares, counts / counts.sum())
    assert shares[2] > 0 and abs(shares.sum() - 1) < 1e-12
    zeros = np.zeros((1, 64, 64, 3), np.float32)
    start = _compiled_model(config, _loss(config), 10, True, shares=shares)
    np.testing.assert_allclose(start.predict(zeros, verbose=0)[0, 5, 5], shares, rtol=1e-4)
    plain = _compiled_model(TrainConfig(**TINY), _loss(config), 10, True)
    np.testing.assert_allclose(plain.predict(zeros, verbose=0)[0, 5, 5], 1 / 3, rtol=1e-4)


def test_upsampling_setting_reaches_the_decoder():
    import keras

    from livertumor.training import build_model

    def ups(config):
        model = build_model(config)
        return ([la.interpolation for la in model.layers
                 if isinstance(la, keras.layers.UpSampling2D)],
                [la for la in model.layers if isinstance(la, keras.layers.Conv2DTranspose)])

    small = {"base_filters": 4, "depth": 2, "image_size": 32}
    bilinear, transposed = ups(TrainConfig(upsampling="bilinear", **small))
    assert bilinear == ["bilinear", "bilinear"] and not transposed
    for mode in ("auto", "transpose"):  # the U-Net's own is the transposed convolution
        bilinear, transposed = ups(TrainConfig(upsampling=mode, **small))
        assert not bilinear and len(transposed) == 2
    with pytest.raises(ValueError, match="upsampling"):
        TrainConfig(upsampling="nearest")


def test_the_best_weights_come_from_memory_only_when_this_process_ran_the_best_epoch(tmp_path):
    import keras
    import pandas as pd

    from livertumor.training.callbacks import BestWeights
    from livertumor.training.trainer import _best_epoch

    def history(losses):
        pd.DataFrame({"epoch": range(len(losses)), "val_loss": losses}).to_csv(
            tmp_path / "history.csv", index=False)

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    best = BestWeights()
    best.set_model(model)
    for epoch, loss in ((1, 0.5), (2, 0.4), (3, 0.4), (4, 0.6)):  # epoch 0 ran before
        model.layers[0].bias.assign([float(epoch)])  # the weights of that epoch
        best.on_epoch_end(epoch, {"val_loss": loss})
    assert best.epoch == 2 and best.weights[1][0] == 2.0  # a tie keeps the first, as best.keras
    history([0.9, 0.5, 0.4, 0.4, 0.6])
    assert _best_epoch(tmp_path) == 2 and best.weights_of(2) is best.weights
    history([0.3, 0.5, 0.4, 0.4, 0.6])  # a resumed run whose best epoch ran before
    assert _best_epoch(tmp_path) == 0 and best.weights_of(0) is None
    pd.DataFrame({"epoch": [0, 1], "loss": [1.0, 0.9]}).to_csv(tmp_path / "history.csv")
    assert _best_epoch(tmp_path) is None  # no validation
    assert BestWeights().weights_of(0) is None


def test_the_backup_moves_the_previous_weights_aside_and_a_torn_write_falls_back_to_them(
        tmp_path):
    import keras

    from livertumor.training.callbacks import MovingBackup, SaveAtEnd

    def model_with_bias():
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse")
        model.train_on_batch(np.zeros((1, 2)), np.zeros((1, 1)))  # the optimizer's state
        return model

    model = model_with_bias()
    backup, last = MovingBackup(str(tmp_path / "backup")), SaveAtEnd(tmp_path / "last.keras")
    for callback in (backup, last):
        callback.set_model(model)
    for epoch in (0, 1):
        model.layers[0].bias.assign([float(epoch + 1)])  # the weights of that epoch
        backup.on_epoch_end(epoch)
        last.on_epoch_end(epoch)
    files = {p.name for p in (tmp_path / "backup").iterdir()}
    assert files == {"latest.weights.h5", "latest.weights.h5.bkp", "training_metadata.json",
                     "training_metadata.json.bkp"}
    assert not (tmp_path / "last.keras").exists()  # written when training ends only
    last.on_train_end()
    saved = keras.saving.load_model(tmp_path / "last.keras")
    assert saved.layers[0].bias.numpy()[0] == 2.0

    def restored() -> tuple[float, int]:
        fresh = model_with_bias()
        again = MovingBackup(str(tmp_path / "backup"))
        again.set_model(fresh)
        again.on_train_begin()
        return float(fresh.layers[0].bias.numpy()[0]), fresh._initial_epoch

    assert restored() == (2.0, 2)  # the latest epoch
    latest = tmp_path / "backup" / "latest.weights.h5"
    moved = tmp_path / "backup" / "latest.weights.h5.bkp"
    kept = moved.read_bytes()
    latest.replace(moved)  # killed after moving the weights aside, before writing new ones
    assert restored() == (2.0, 2)  # they go back; the epoch file still describes them
    moved.write_bytes(kept)
    latest.write_bytes(latest.read_bytes()[:100])  # killed while writing it
    assert restored() == (1.0, 1)  # the epoch before, from the files moved aside


def test_patch_size_settings():
    from livertumor.training import build_model

    assert TrainConfig(image_size=256, patch_size=128).patch_size == 128
    for bad in ({"patch_size": 100}, {"patch_size": 256}, {"patch_size": 8}):
        with pytest.raises(ValueError, match="patch_size"):
            TrainConfig(image_size=128, **bad)
    with pytest.raises(ValueError, match="multiple of 32"):
        TrainConfig(architecture="resnet50_unet", image_size=128, patch_size=48)
    model = build_model(TrainConfig(base_filters=4, depth=2, image_size=64, patch_size=32))
    assert model.input_shape == (None, None, None, 3)  # fully convolutional
    for side in (32, 64):
        assert model.predict(np.zeros((1, side, side, 3), np.float32), verbose=0).shape == (
            1, side, side, 3)


def test_a_model_trained_on_patches_predicts_whole_slices_at_the_export_size(export_dir,
                                                                             tmp_path):
    from livertumor.export import load_export
    from livertumor.inference import load_predictor
    from livertumor.inference.predict import model_side

    quick = dict(epochs=1, batch_size=4, base_filters=4, depth=2, steps_per_epoch=2,
                 patience=0)
    with pytest.raises(LiverTumorError, match="export's size"):  # refused before training
        train(export_dir, tmp_path / "bad", TrainConfig(image_size=32, patch_size=16, **quick),
              verbose=0)
    assert not (tmp_path / "bad").exists()
    config = TrainConfig(image_size=64, patch_size=32, **quick)
    train(export_dir, tmp_path / "m", config, verbose=0)
    predictor = load_predictor(tmp_path / "m")
    assert predictor.model.input_shape[1] is None
    assert model_side(predictor.model, predictor.prep) == 64
    cases = load_export(export_dir).cases
    volume = cases.loc[cases["split"] == "test", "volume_path"].iloc[0]
    seg = predictor.predict(volume, keep_probabilities=True, progress=False)
    assert seg.labels.shape == seg.geometry.canonical_shape
    np.testing.assert_allclose(seg.probabilities.sum(-1), 1, atol=1e-4)
    # a run recorded before patch_size existed had whole slices: still the same settings
    record_path = tmp_path / "m" / "config.json"
    record = json.loads(record_path.read_text())
    train(export_dir, tmp_path / "old", TrainConfig(image_size=64, **quick), verbose=0)
    old = json.loads((tmp_path / "old" / "config.json").read_text())
    del old["config"]["patch_size"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(old))
    assert train(export_dir, tmp_path / "old", TrainConfig(image_size=64, **quick),
                 verbose=0)["already_trained"]
    assert record["config"]["patch_size"] == 32
