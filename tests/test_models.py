"""The U-Net and the ResNet-50 U-Net: shapes, dtypes, skips, weights files, training, saving."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from livertumor.errors import LiverTumorError
from livertumor.training.losses import DiceCrossEntropy
from livertumor.training.metrics import segmentation_metrics
from livertumor.training.models import (
    IMAGENET_NOTOP_FILE,
    RESNET50_BOTTLENECK,
    RESNET50_SKIP_LAYERS,
    EncoderWeightsError,
    build_resnet50_unet,
    build_unet,
    default_imagenet_weights_path,
    imagenet_preprocessing,
    load_model,
)

# Keras 3.15 saves and loads TensorFlow variables through np.array(x), which numpy 2 flags.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

SMALL_UNET = {"input_shape": (64, 64, 3), "base_filters": 8, "depth": 3}


@pytest.fixture
def mixed_bfloat16():
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy(previous)


@pytest.fixture(scope="module")
def resnet_notop():
    """A randomly initialised keras.applications ResNet-50 without top, 64 px."""
    return keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))


def images(n=2, size=64, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3), dtype=np.float32)


def synthetic_batch(n=4, size=64, seed=0):
    """Images with a bright liver-like ellipse holding a darker tumor disc, and their labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    x = np.empty((n, size, size, 3), np.float32)
    y = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(0.35, 0.65, 2) * size
        liver = ((yy - cy) / (0.3 * size)) ** 2 + ((xx - cx) / (0.22 * size)) ** 2 < 1
        ty, tx = cy + rng.uniform(-4, 4), cx + rng.uniform(-4, 4)
        tumor = liver & ((yy - ty) ** 2 + (xx - tx) ** 2 < (0.08 * size) ** 2)
        y[i][liver] = 1
        y[i][tumor] = 2
        base = np.where(tumor, 0.35, np.where(liver, 0.7, 0.15)).astype(np.float32)
        x[i] = np.clip(base[..., None] + rng.normal(0, 0.05, (size, size, 3)), 0, 1)
    return x, y


# ---- U-Net -------------------------------------------------------------------------------------

def test_unet_returns_float32_probabilities_at_input_size():
    model = build_unet(**SMALL_UNET)
    out = model.predict(images(), verbose=0)
    assert out.shape == (2, 64, 64, 3)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, atol=1e-5)
    assert (out >= 0).all()


def test_unet_parameter_counts_match_the_architecture():
    # 32 base filters, depth 4: 7.77 M; 64 (the paper's widths, with BN): 31.0 M.
    assert 7.7e6 < build_unet().count_params() < 7.85e6
    assert 30.9e6 < build_unet(base_filters=64).count_params() < 31.2e6


@pytest.mark.parametrize("side", [60, 100, 4])
def test_unet_rejects_sizes_not_a_multiple_of_2_pow_depth(side):
    with pytest.raises(ValueError, match="multiple of 8"):
        build_unet(input_shape=(side, 64, 3), depth=3)


@pytest.mark.parametrize("bad", [{"num_classes": 1}, {"dropout": 1.0}, {"depth": 0},
                                 {"upsampling": "nearest"}, {"input_shape": (64, 64)}])
def test_unet_rejects_invalid_arguments(bad):
    with pytest.raises(ValueError):
        build_unet(**{**SMALL_UNET, **bad})


def test_unet_concatenates_each_encoder_level_into_the_decoder():
    model = build_unet(**SMALL_UNET)
    for level in (1, 2, 3):
        concat = model.get_layer(f"dec{level}_concat")
        skip = model.get_layer(f"enc{level}_relu2").output
        assert any(t is skip for t in concat.input)
        assert concat.output.shape[1] == 64 // 2 ** (level - 1)


def test_unet_with_bilinear_upsampling_and_unknown_size_runs_on_any_multiple():
    model = build_unet((None, None, 3), base_filters=4, depth=2, upsampling="bilinear",
                       dropout=0.2)
    assert model(images(1, 32)).shape == (1, 32, 32, 3)
    assert model(np.zeros((1, 48, 20, 3), np.float32)).shape == (1, 48, 20, 3)


# ---- ResNet-50 U-Net ---------------------------------------------------------------------------

def test_resnet50_unet_returns_probabilities_and_has_33_million_parameters():
    model = build_resnet50_unet((64, 64, 3))
    out = model.predict(images(), verbose=0)
    assert out.shape == (2, 64, 64, 3)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, atol=1e-5)
    # encoder 23.59 M (keras ResNet50 notop) + decoder 9.80 M
    assert 33.3e6 < model.count_params() < 33.5e6


@pytest.mark.parametrize("shape", [(100, 96, 3), (64, 48, 3), (16, 16, 3)])
def test_resnet50_unet_rejects_sides_not_a_multiple_of_32(shape):
    with pytest.raises(ValueError, match="multiple of 32"):
        build_resnet50_unet(shape)


def test_resnet50_unet_rejects_other_than_3_channels():
    with pytest.raises(ValueError, match="3 channels"):
        build_resnet50_unet((64, 64, 1))


def test_resnet50_unet_decoder_uses_the_stride_2_4_8_16_encoder_features():
    model = build_resnet50_unet((64, 64, 3))
    assert model.get_layer(RESNET50_BOTTLENECK).output.shape[1:3] == (2, 2)  # 1/32
    for stage, name in zip((4, 3, 2, 1), RESNET50_SKIP_LAYERS, strict=True):
        skip = model.get_layer(name).output
        assert skip.shape[1] == 64 // 2 ** (5 - stage)  # 1/2, 1/4, 1/8, 1/16
        assert any(t is skip for t in model.get_layer(f"dec{stage}_concat").input)
    assert model.get_layer("dec5_conv2").output.shape[1:3] == (64, 64)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_imagenet_preprocessing_equals_keras_preprocess_input_on_0_255_in_float32(policy):
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        inputs = keras.Input((8, 8, 3))
        preprocess = keras.Model(inputs, imagenet_preprocessing(inputs))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    x = images(1, 8)
    ours = preprocess(x)
    assert keras.backend.standardize_dtype(ours.dtype) == "float32"
    expected = keras.applications.resnet50.preprocess_input(x * 255.0)
    assert expected.dtype == np.float32
    # float32 precision: within one unit in the last place at 150 (2**-16 * 1.5 ~ 1.5e-5)
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=0, atol=2e-5)
    assert np.abs(np.asarray(ours) - expected).max() < 2e-5


def test_the_preprocessing_is_built_in_keras_without_weights():
    model = build_resnet50_unet((64, 64, 3))
    layer = model.get_layer("imagenet_preprocessing")
    assert type(layer) is keras.layers.Rescaling and not layer.weights
    assert layer.dtype_policy.name == "float32"
    assert {type(op).__module__.split(".")[0] for op in model.operations} == {"keras"}


def test_freeze_encoder_leaves_only_decoder_weights_trainable():
    model = build_resnet50_unet((64, 64, 3), freeze_encoder=True)
    trainable = {v.path.split("/")[0] for v in model.trainable_weights}
    assert trainable and all(n.startswith("dec") or n == "logits" for n in trainable)
    assert not model.get_layer("conv1_conv").trainable


@pytest.mark.parametrize("mode", ["unet", "resnet50_unet"])
def test_output_stays_float32_under_mixed_bfloat16(mixed_bfloat16, mode):
    model = (build_unet(**SMALL_UNET) if mode == "unet"
             else build_resnet50_unet((64, 64, 3)))
    assert model.get_layer("logits").compute_dtype == "bfloat16"
    out = model(images())
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    np.testing.assert_allclose(np.asarray(out).sum(axis=-1), 1.0, atol=1e-5)


# ---- encoder weights ---------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".weights.h5", ".h5"])
def test_encoder_weights_are_loaded_from_a_file_path(tmp_path, resnet_notop, suffix):
    path = tmp_path / f"resnet50_notop{suffix}"
    if suffix == ".weights.h5":
        resnet_notop.save_weights(path)  # Keras 3 weights file
    else:
        resnet_notop.save(path)  # legacy HDF5, the layout of the ImageNet file
    model = build_resnet50_unet((64, 64, 3), encoder_weights=path)
    for layer_name in ("conv1_conv", "conv4_block6_3_conv", "conv5_block3_3_bn"):
        for got, want in zip(model.get_layer(layer_name).weights,
                             resnet_notop.get_layer(layer_name).weights, strict=True):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_imagenet_weights_are_read_from_the_keras_cache_folder(tmp_path, monkeypatch,
                                                               resnet_notop):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    path = default_imagenet_weights_path()
    assert path == tmp_path / "models" / IMAGENET_NOTOP_FILE
    path.parent.mkdir()
    resnet_notop.save(tmp_path / "models" / "tmp.h5")
    (tmp_path / "models" / "tmp.h5").rename(path)
    model = build_resnet50_unet((64, 64, 3), encoder_weights="imagenet")
    np.testing.assert_array_equal(np.asarray(model.get_layer("conv1_conv").kernel),
                                  np.asarray(resnet_notop.get_layer("conv1_conv").kernel))


def test_missing_imagenet_weights_raise_with_file_name_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(EncoderWeightsError) as info:
        build_resnet50_unet((64, 64, 3), encoder_weights="imagenet")
    message = str(info.value)
    assert IMAGENET_NOTOP_FILE in message
    assert str(tmp_path / "models") in message
    assert "never downloaded" in message
    assert isinstance(info.value, LiverTumorError)


@pytest.mark.filterwarnings("ignore:Skipping nested container:UserWarning")
def test_missing_or_unfitting_weights_file_raises_naming_the_file(tmp_path):
    with pytest.raises(EncoderWeightsError, match="not found"):
        build_resnet50_unet((64, 64, 3), encoder_weights=tmp_path / "nope.h5")
    wrong = tmp_path / "unet.weights.h5"
    build_unet(**SMALL_UNET).save_weights(wrong)
    with pytest.raises(EncoderWeightsError, match="cannot load") as info:
        build_resnet50_unet((64, 64, 3), encoder_weights=wrong)
    assert str(wrong) in str(info.value)


# ---- training and saving -----------------------------------------------------------------------

def test_training_on_a_fixed_batch_lowers_the_loss_and_raises_liver_dice():
    keras.utils.set_random_seed(0)
    x, y = synthetic_batch()
    model = build_unet(**SMALL_UNET)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=DiceCrossEntropy(),
                  metrics=segmentation_metrics())
    history = model.fit(x, y, batch_size=4, epochs=30, verbose=0).history
    assert history["loss"][-1] < 0.4 * history["loss"][0]
    assert history["liver_dice"][-1] > 0.9
    assert history["liver_dice"][-1] > history["liver_dice"][0] + 0.2


def test_model_keras_round_trip_keeps_predictions_loss_and_metrics(tmp_path):
    model = build_unet(**SMALL_UNET)
    loss = DiceCrossEntropy(dice_weight=0.5, class_weights=(1.0, 1.0, 3.0))
    model.compile(optimizer="adam", loss=loss, metrics=segmentation_metrics())
    x, y = synthetic_batch(2)
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)

    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert isinstance(loaded.loss, DiceCrossEntropy)
    assert loaded.loss.get_config() == loss.get_config()
    scores = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert {"liver_dice", "tumor_dice", "liver_iou", "tumor_iou"} <= set(scores)
    np.testing.assert_allclose(scores["loss"], model.evaluate(x, y, verbose=0)[0], rtol=1e-5)


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer:UserWarning")
def test_resnet50_unet_round_trip_keeps_its_preprocessing_layer_and_predictions(tmp_path):
    model = build_resnet50_unet((64, 64, 3), freeze_encoder=True)
    model.compile(optimizer="adam", loss=DiceCrossEntropy(), metrics=segmentation_metrics())
    path = tmp_path / "model.keras"
    model.save(path)

    loaded = load_model(path)
    x = images()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert isinstance(loaded.get_layer("imagenet_preprocessing"), keras.layers.Rescaling)
    assert not loaded.get_layer("conv1_conv").trainable


# Runs in a Python that cannot import livertumor: -I drops PYTHONPATH and the working folder,
# and the editable install's entry (a folder holding livertumor/) is taken off sys.path.
PLAIN_KERAS_LOADER = textwrap.dedent("""
    import importlib.util, os, sys
    sys.path = [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "livertumor"))]
    assert importlib.util.find_spec("livertumor") is None, sys.path
    import keras
    import numpy as np

    x = np.load(sys.argv[1])
    for path in sys.argv[2:]:
        model = keras.saving.load_model(path, compile=False)
        np.save(path + ".npy", model.predict(x, verbose=0))
    assert not [name for name in sys.modules if name.startswith("livertumor")]
    print("loaded", len(sys.argv) - 2)
""")


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer:UserWarning")
def test_saved_models_load_with_plain_keras_in_a_process_without_livertumor(tmp_path):
    # model.keras as the trainer writes it: compiled as training compiles it (this package's
    # loss and metrics, the fused batch norms of training), saved by _save_final_model
    from livertumor.training import TrainConfig
    from livertumor.training.trainer import _compiled_model, _save_final_model

    x = images(2)
    np.save(tmp_path / "x.npy", x)
    expected = {}
    for architecture in ("unet", "resnet50_unet"):
        config = TrainConfig(architecture=architecture, image_size=64, base_filters=8, depth=3)
        model = _compiled_model(config, DiceCrossEntropy(), steps=1, with_metrics=True)
        assert any(type(layer).__name__ == "FusedBatchNormalization" for layer in model.layers)
        model_dir = tmp_path / architecture
        model_dir.mkdir()
        _save_final_model(model, model_dir, chief=True)
        expected[model_dir / "model.keras"] = model.predict(x, verbose=0)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    done = subprocess.run([sys.executable, "-I", "-c", PLAIN_KERAS_LOADER, str(tmp_path / "x.npy"),
                           *map(str, expected)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loaded 2" in done.stdout
    for path, want in expected.items():
        np.testing.assert_allclose(np.load(f"{path}.npy"), want, rtol=0, atol=1e-6)


def test_models_saved_with_the_earlier_preprocessing_layer_still_load(tmp_path):
    from livertumor.training.legacy_layers import ImageNetPreprocessing

    inputs = keras.Input((16, 16, 3), name="image")
    x = ImageNetPreprocessing(name="imagenet_preprocessing")(inputs)
    old = keras.Model(inputs, keras.layers.Conv2D(3, 1, name="logits")(x))
    old.save(tmp_path / "old.keras")

    loaded = load_model(tmp_path / "old.keras", compile=False)
    batch = images(2, 16)
    np.testing.assert_array_equal(loaded.predict(batch, verbose=0), old.predict(batch, verbose=0))
    assert isinstance(loaded.get_layer("imagenet_preprocessing"), ImageNetPreprocessing)
    # the earlier layer and its built-in replacement compute the same numbers
    new_inputs = keras.Input((16, 16, 3))
    new = keras.Model(new_inputs, imagenet_preprocessing(new_inputs))
    np.testing.assert_allclose(np.asarray(new(batch)),
                               np.asarray(ImageNetPreprocessing()(batch)), rtol=0, atol=2e-5)


def test_load_model_names_a_missing_file(tmp_path):
    with pytest.raises(LiverTumorError, match="model file not found"):
        load_model(tmp_path / "model.keras")
