"""windowing: fastai semantics to 1e-6 against direct reference formulas, on varied inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from livertumor import WINDOWS, freqhist_bins, hist_scaled, save_jpg, to_nchan, windowed
from livertumor.data.windowing import freqhist_fractions, resolve_windows, to_uint8

RNG = np.random.default_rng(42)
INPUTS = {
    "ct_like": RNG.normal(40, 300, (64, 48)).astype(np.float32),
    "int16": RNG.integers(-1024, 3071, (33, 17)).astype(np.int16),
    "few_values": RNG.choice([-1000.0, 0.0, 50.0, 120.0], size=(40, 40)),
    "tiny": np.array([[5.0, -3.0], [100.0, 7.0]]),
    "constant": np.full((16, 16), 42.0, np.float32),
}


def ref_windowed(x, w, l):  # noqa: E741
    # Direct transcription of the definition: clip to [l - w//2, l + w//2], scale to [0, 1].
    px = np.array(x, dtype=np.float64)
    lo, hi = l - w // 2, l + w // 2
    px[px < lo] = lo
    px[px > hi] = hi
    return (px - lo) / (hi - lo)


def ref_freqhist_bins(x, n_bins=100):
    imsd = np.sort(np.asarray(x, dtype=np.float64).ravel())
    t = np.concatenate([[0.001], np.arange(n_bins) / n_bins + 1 / 2 / n_bins, [0.999]])
    return np.unique(imsd[np.floor(len(imsd) * t).astype(np.int64)])


def ref_hist_scaled(x, brks):
    ys = np.linspace(0.0, 1.0, len(brks))
    return np.clip(np.interp(np.asarray(x, np.float64).ravel(), brks, ys), 0, 1).reshape(x.shape)


@pytest.mark.parametrize("name", INPUTS)
@pytest.mark.parametrize("win", [(150, 30), (400, 50), (15, 7), (1500, -600), (201.5, 60.2)])
def test_windowed_matches_definition(name, win):
    x = INPUTS[name]
    got = windowed(x, *win)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, ref_windowed(x, *win), atol=1e-6, rtol=0)


def test_windowed_uses_floor_division_of_the_width():
    # w = 15: the window is [7 - 7, 7 + 7] = [0, 14], 14 HU wide, not 15.
    np.testing.assert_allclose(windowed(np.array([0.0, 7.0, 14.0]), 15, 7), [0, 0.5, 1])


def test_windowed_rejects_an_empty_window():
    with pytest.raises(ValueError, match="empty"):
        windowed(np.zeros(3), 1, 0)


@pytest.mark.parametrize("name", INPUTS)
@pytest.mark.parametrize("n_bins", [1, 10, 100])
def test_freqhist_bins_matches_sorting(name, n_bins):
    x = INPUTS[name]
    got = freqhist_bins(x, n_bins)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref_freqhist_bins(x, n_bins), atol=1e-6, rtol=0)
    assert np.all(np.diff(got) > 0)


def test_freqhist_fractions_are_the_documented_ones():
    f = freqhist_fractions(4)
    np.testing.assert_allclose(f, [0.001, 0.125, 0.375, 0.625, 0.875, 0.999])


def test_freqhist_bins_equalise_counts():
    x = RNG.exponential(100, 100_000)
    b = freqhist_bins(x, 10)
    counts = np.histogram(x, b[1:-1])[0]
    assert counts.max() / counts.min() < 1.01


@pytest.mark.parametrize("name", INPUTS)
def test_hist_scaled_matches_definition(name):
    x = INPUTS[name]
    brks = ref_freqhist_bins(x)
    got = hist_scaled(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, ref_hist_scaled(x, brks), atol=1e-6, rtol=0)


def test_hist_scaled_with_given_breaks_and_small_chunks():
    x = RNG.normal(0, 100, (50, 60))
    brks = np.array([-150.0, -20.0, 0.0, 30.0, 200.0])
    np.testing.assert_allclose(hist_scaled(x, brks, chunk=7), ref_hist_scaled(x, brks),
                               atol=1e-6)


def test_hist_scaled_rejects_unsorted_breaks():
    with pytest.raises(ValueError, match="increasing"):
        hist_scaled(np.zeros(4), np.array([1.0, 0.0]))


def test_to_nchan_stacks_channels_last():
    x = INPUTS["ct_like"]
    got = to_nchan(x, ["liver", (400, 50)])
    assert got.shape == x.shape + (3,) and got.dtype == np.float32
    np.testing.assert_allclose(got[..., 0], ref_windowed(x, 150, 30), atol=1e-6)
    np.testing.assert_allclose(got[..., 1], ref_windowed(x, 400, 50), atol=1e-6)
    np.testing.assert_allclose(got[..., 2], ref_hist_scaled(x, ref_freqhist_bins(x)), atol=1e-6)


def test_to_nchan_bins_zero_means_no_histogram_channel():
    got = to_nchan(INPUTS["ct_like"], [(150, 30)], bins=0)
    assert got.shape[-1] == 1


def test_to_nchan_with_fixed_breaks_and_int_bins():
    x = INPUTS["ct_like"]
    brks = np.array([-500.0, 0.0, 500.0])
    np.testing.assert_allclose(to_nchan(x, ["liver"], bins=brks)[..., 1],
                               ref_hist_scaled(x, brks), atol=1e-6)
    np.testing.assert_allclose(to_nchan(x, ["liver"], bins=10)[..., 1],
                               ref_hist_scaled(x, ref_freqhist_bins(x, 10)), atol=1e-6)


def test_standard_windows():
    assert WINDOWS["liver"] == (150, 30)
    assert WINDOWS["abdomen_soft"] == (400, 50)
    with pytest.raises(ValueError, match="unknown window 'livr'"):
        resolve_windows(["livr"])


def test_to_uint8_truncates_like_fastai():
    np.testing.assert_array_equal(to_uint8(np.array([0.0, 0.999, 1.0, 0.5])), [0, 254, 255, 127])


def test_save_jpg_writes_rgb_at_quality(tmp_path):
    rows, cols = np.mgrid[0:64, 0:48]
    x = (rows * 8.0 - cols * 3.0 - 100).astype(np.float32)  # smooth, so JPEG keeps it close
    path = save_jpg(x, tmp_path / "slice.png", ["liver", "abdomen_soft"], quality=95)
    assert path.suffix == ".jpg" and path.exists()
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size == (x.shape[1], x.shape[0])
        decoded = np.asarray(im).astype(np.float32)
    expected = to_uint8(to_nchan(x, ["liver", "abdomen_soft"])).astype(np.float32)
    assert np.abs(decoded - expected).mean() < 3  # JPEG is lossy; the content is the same image
    low = save_jpg(x, tmp_path / "low", ["liver", "abdomen_soft"], quality=20)
    assert low.stat().st_size < path.stat().st_size
    assert not list(tmp_path.glob(".*part"))


def test_save_jpg_four_channels_is_cmyk(tmp_path):
    path = save_jpg(INPUTS["ct_like"], tmp_path / "s", ["liver", "abdomen_soft", "lungs"])
    with Image.open(path) as im:
        assert im.mode == "CMYK"


@pytest.mark.parametrize("n_bins", [1, 7, 100])
def test_freqhist_bins_from_counts_equals_the_expanded_array(n_bins):
    from livertumor.data.windowing import freqhist_bins_from_counts

    x = RNG.integers(-1024, 400, 5000)
    values, counts = np.unique(x, return_counts=True)
    np.testing.assert_array_equal(freqhist_bins_from_counts(values, counts, n_bins),
                                  freqhist_bins(x, n_bins))
