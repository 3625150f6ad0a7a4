"""segment: predictions land on the input's own grid, whatever its stored orientation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from livertumor import LiverTumorError, read_mask
from livertumor.inference import largest_liver_component, segment

from conftest import anatomy, write_case

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A fixed, untrained-but-deterministic 'model': a 1x1 convolution mapping bright
    (liver-window) pixels to liver and mid-grey to tumor, so predictions follow the anatomy."""
    import keras

    inputs = keras.Input((32, 32, 3))
    conv = keras.layers.Conv2D(3, 1, name="fixed")
    outputs = keras.layers.Activation("softmax", dtype="float32")(conv(inputs))
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    kernel[0, 0, 0] = [-20.0, 10.0, 0.0]   # liver-window channel: bright -> liver
    kernel[0, 0, 1] = [0.0, 0.0, 0.0]
    conv.set_weights([kernel, np.array([5.0, -5.0, -1.0], np.float32)])
    folder = tmp_path_factory.mktemp("model")
    model.save(folder / "model.keras")
    prep = {"windows": [[150, 30], [400, 50]], "bins": [-1000.0, 0.0, 100.0, 400.0],
            "size": 32, "jpeg_quality": 90}
    (folder / "preprocessing.json").write_text(json.dumps(prep))
    return folder


ORIENTATIONS = [("P", "L", "S"), ("L", "P", "S"), ("R", "A", "I"), ("S", "R", "A")]


def test_prediction_is_written_on_the_inputs_grid_in_any_orientation(model_dir, tmp_path):
    ct, mask = anatomy((40, 36, 10))
    results = []
    for codes in ORIENTATIONS:
        folder = tmp_path / "".join(codes)
        vpath, _ = write_case(folder, 0, ct, mask, axcodes=codes)
        out = segment(model_dir, vpath, folder / "pred.nii.gz", progress=False)
        src, pred = nib.load(vpath), nib.load(out)
        assert pred.shape == src.shape and pred.get_data_dtype() == np.uint8
        np.testing.assert_allclose(pred.affine, src.affine)
        np.testing.assert_allclose(pred.get_qform(), src.get_qform())
        np.testing.assert_allclose(pred.get_sform(), src.get_sform())
        results.append(read_mask(out))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])  # the same anatomy, the same labels
    liver_pred = results[0] >= 1
    # the random background is bright in about a fifth of its voxels, the liver everywhere
    assert liver_pred[mask >= 1].mean() > 0.8 and liver_pred[mask == 0].mean() < 0.4


def test_probabilities_file(model_dir, tmp_path):
    ct, mask = anatomy((40, 36, 10))
    vpath, _ = write_case(tmp_path, 0, ct, mask, axcodes=("L", "P", "S"))
    segment(model_dir, vpath, tmp_path / "pred.nii.gz", tmp_path / "prob.nii.gz",
            progress=False)
    prob = nib.load(tmp_path / "prob.nii.gz")
    assert prob.shape == nib.load(vpath).shape + (2,)
    values = prob.get_fdata()
    assert values.min() >= 0 and values.max() <= 1.0 + 1e-6
    labels = np.asarray(nib.load(tmp_path / "pred.nii.gz").dataobj)
    assert np.all(values[..., 0][labels >= 1] > 0.3)


def test_largest_liver_component_drops_islands():
    labels = np.zeros((10, 10, 4), np.uint8)
    labels[1:6, 1:6, :] = 1
    labels[2:3, 2:3, 1] = 2
    labels[8:9, 8:9, 0] = 2  # an island of "tumor" outside the liver
    out = largest_liver_component(labels)
    assert out[8, 8, 0] == 0 and out[2, 2, 1] == 2 and (out >= 1).sum() == 100


def test_segment_errors_name_the_file_and_write_nothing(model_dir, tmp_path):
    with pytest.raises(LiverTumorError, match="file not found"):
        segment(model_dir, tmp_path / "volume-1.nii", tmp_path / "out.nii.gz", progress=False)
    with pytest.raises(LiverTumorError, match="no preprocessing.json"):
        segment(tmp_path, tmp_path / "volume-1.nii", tmp_path / "out.nii.gz", progress=False)
    assert not list(tmp_path.glob("*out*"))


def test_segment_cli(model_dir, tmp_path):
    ct, mask = anatomy((40, 36, 10))
    vpath, _ = write_case(tmp_path, 0, ct, mask, axcodes=("R", "A", "S"))
    cmd = [sys.executable, "-m", "livertumor", "segment", str(model_dir), str(vpath)]
    res = subprocess.run(cmd + [str(tmp_path / "p.nii.gz")], capture_output=True, text=True,
                         env=ENV)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "p.nii.gz").exists()
    broken = tmp_path / "volume-2.nii"
    broken.write_bytes(vpath.read_bytes()[:1000])
    res = subprocess.run(cmd[:-1] + [str(broken), str(tmp_path / "q.nii.gz")],
                         capture_output=True, text=True, env=ENV)
    assert res.returncode == 2 and "truncated" in res.stderr and str(broken) in res.stderr
    assert not (tmp_path / "q.nii.gz").exists()


@pytest.mark.parametrize("shape", [(40, 56), (10, 7), (16, 16)])
def test_probabilities_resize_as_pillow_resizes_each_channel(shape):
    """The batched resize (one tf.image.resize, antialiased where it shrinks) gives what
    Pillow's bilinear resize gives channel by channel, growing and shrinking."""
    from PIL import Image

    from livertumor.inference.predict import labels_of, resize_probabilities

    rng = np.random.default_rng(0)
    p = rng.random((3, 16, 16, 3)).astype(np.float32)
    p /= p.sum(-1, keepdims=True)
    got = resize_probabilities(p, shape)
    assert got.shape == (3, *shape, 3) and got.dtype == np.float32
    for b in range(3):
        for c in range(3):
            expected = np.asarray(Image.fromarray(p[b, :, :, c]).resize(shape[::-1],
                                                                        Image.BILINEAR))
            np.testing.assert_allclose(got[b, :, :, c], expected, atol=2e-5)
    np.testing.assert_array_equal(labels_of(got), got.argmax(-1))


@pytest.mark.parametrize("shape", [(64, 80), (12, 9), (16, 16)])
def test_labels_from_resized_differences_are_the_argmax_of_the_resized_probabilities(shape):
    from livertumor.inference.predict import labels_of, resize_probabilities, resized_labels

    rng = np.random.default_rng(2)
    p = rng.random((4, 16, 16, 3)).astype(np.float32) ** 3
    p /= p.sum(-1, keepdims=True)
    p[0, :8] = [0.5, 0.5, 0.0]  # exact ties go to the first class
    p[1, :8] = [0.2, 0.4, 0.4]
    got = resized_labels(p, shape)
    assert got.shape == (*shape, 4) and got.dtype == np.uint8
    resized = resize_probabilities(p, shape)
    expected = labels_of(resized).transpose(1, 2, 0)
    differ = got != expected
    assert differ.mean() < 1e-3
    top2 = np.sort(resized, -1)[..., -2:].transpose(1, 2, 0, 3)
    assert np.all(top2[differ][:, 1] - top2[differ][:, 0] < 1e-6)  # only at float-level ties
    assert set(np.unique(got[:2, :2, 0])) <= {0} and set(np.unique(got[:2, :2, 1])) <= {1}


def test_labels_take_the_first_class_on_ties():
    from livertumor.inference.predict import labels_of

    p = np.array([[0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [0.3, 0.3, 0.3], [0.1, 0.2, 0.7]],
                 np.float32)
    labels = labels_of(p[None].transpose(1, 0, 2))  # a non-contiguous view
    assert labels.dtype == np.uint8
    assert labels[:, 0].tolist() == [0, 1, 0, 2]


def test_test_time_zoom_of_a_batch_is_each_channel_zoomed_about_the_centre():
    from scipy.ndimage import affine_transform

    from livertumor.inference.predict import _zoom

    x = np.random.default_rng(1).random((2, 12, 12, 3)).astype(np.float32)
    centre = 5.5
    for scale in (0.9, 1.1):
        got = _zoom(x, scale, order=1)
        for b in range(2):
            for c in range(3):
                expected = affine_transform(x[b, :, :, c], [1 / scale] * 2,
                                            offset=centre - centre / scale, order=1)
                np.testing.assert_array_equal(got[b, :, :, c], expected)
    assert _zoom(x, 1.0, order=1) is x
