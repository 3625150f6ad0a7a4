"""The training input pipeline: manifest, validation split by patient, tf.data batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from livertumor import LiverTumorError
from livertumor.training.dataset import (
    Augmentation,
    every_kth_slice,
    load_manifest,
    make_dataset,
    split_validation,
)

SIZE = 48


def _write_slice(root, stem, image, mask):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{stem}.jpg", quality=95)
    Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
    return f"train/images/{stem}.jpg", f"train/masks/{stem}.png"


def _shape_slice(rng):
    """A bright liver-like blob with a brighter tumor inside; the mask marks both exactly."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    cy, cx = rng.uniform(18, 30, 2)
    liver = ((yy - cy) / 11) ** 2 + ((xx - cx) / 14) ** 2 <= 1
    tumor = ((yy - cy) / 4) ** 2 + ((xx - cx - 4) / 4) ** 2 <= 1
    mask = np.where(tumor, 2, np.where(liver, 1, 0)).astype(np.uint8)
    grey = np.choose(mask, [20, 200, 250]).astype(np.uint8)
    return np.stack([grey] * 3, axis=-1), mask


def _export(tmp_path, n_cases=10, slices_per_case=4, tumor_cases=(1, 4, 7)):
    """A tiny export folder: ``manifest.csv`` plus JPEG/PNG slices; each slice's image is a
    flat grey level that encodes its row number, and tumor slices carry label 2."""
    rows = []
    for case in range(n_cases):
        for k in range(slices_per_case):
            i = len(rows)
            image = np.full((SIZE, SIZE, 3), 4 * i + 2, np.uint8)
            mask = np.zeros((SIZE, SIZE), np.uint8)
            mask[10:30, 10:30] = 1
            has_tumor = case in tumor_cases and k % 2 == 0
            if has_tumor:
                mask[15:20, 15:20] = 2
            image_rel, mask_rel = _write_slice(tmp_path / "train", f"{case:04d}_{k:04d}", image,
                                               mask)
            rows.append({"case_id": case, "split": "train", "slice_index": k,
                         "image": image_rel, "mask": mask_rel,
                         "liver_pixels": int((mask > 0).sum()),
                         "tumor_pixels": int((mask == 2).sum())})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    return load_manifest(tmp_path)


def test_manifest_paths_become_absolute_and_bad_manifests_are_named(tmp_path):
    rows = _export(tmp_path, n_cases=2, slices_per_case=2)
    assert all(p.startswith(str(tmp_path)) for p in rows["image"])
    with pytest.raises(LiverTumorError, match="no manifest.csv"):
        load_manifest(tmp_path / "missing")
    pd.DataFrame({"case_id": [1]}).to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(LiverTumorError, match="lacks columns"):
        load_manifest(tmp_path)


def test_validation_split_is_disjoint_by_patient_and_stratified(tmp_path):
    rows = _export(tmp_path, n_cases=10)
    fit, val = split_validation(rows, fraction=0.3, seed=3)
    assert set(fit["case_id"]).isdisjoint(val["case_id"])
    assert len(fit) + len(val) == len(rows)
    # whole cases: every slice of a validation case is in validation
    assert (rows[rows["case_id"].isin(val["case_id"])].shape[0]) == len(val)
    tumor_cases = set(rows.loc[rows["tumor_pixels"] > 0, "case_id"])
    # 3 tumor cases * 0.3 -> 1, 7 others * 0.3 -> 2
    assert len(set(val["case_id"]) & tumor_cases) == 1
    assert len(set(val["case_id"]) - tumor_cases) == 2
    again, _ = split_validation(rows, fraction=0.3, seed=3)
    assert again.equals(fit)
    other, _ = split_validation(rows, fraction=0.3, seed=4)
    assert not other.equals(fit)


def test_evaluation_stream_is_every_row_once_in_order(tmp_path):
    rows = _export(tmp_path, n_cases=3, slices_per_case=3)
    images = np.concatenate([x.numpy() for x, _ in make_dataset(rows, 4, SIZE)])
    assert images.dtype == np.float32 and images.shape == (9, SIZE, SIZE, 3)
    levels = np.round(images[:, SIZE // 2, SIZE // 2, 0] * 255)
    np.testing.assert_allclose(levels, 4 * np.arange(9) + 2, atol=2)


@pytest.mark.parametrize("oversampling", [1.0, 4.0])
def test_tumor_oversampling_draws_tumor_slices_at_the_stated_rate(tmp_path, oversampling):
    rows = _export(tmp_path)
    tumor_rows = set(np.flatnonzero(rows["tumor_pixels"].to_numpy() > 0))
    n, t = len(rows), len(tumor_rows)
    ds = make_dataset(rows, 50, SIZE, training=True, seed=1, tumor_oversampling=oversampling,
                      augmentation=None)
    drawn = []
    for images, masks in ds.take(80):
        level = np.round(images.numpy()[:, SIZE // 2, SIZE // 2, 0] * 255)
        drawn.append(np.round((level - 2) / 4).astype(int))
        has_tumor = (masks.numpy() == 2).any(axis=(1, 2))
        assert np.array_equal(has_tumor, np.isin(drawn[-1], list(tumor_rows)))
    drawn = np.concatenate(drawn)
    counts = np.bincount(drawn, minlength=n)
    is_tumor = np.isin(np.arange(n), list(tumor_rows))
    # a tumor slice is drawn `oversampling` times as often as a slice without tumor
    ratio = counts[is_tumor].mean() / counts[~is_tumor].mean()
    assert ratio == pytest.approx(oversampling, rel=0.15)
    expected = oversampling * t / (n + (oversampling - 1) * t)
    sigma = np.sqrt(expected * (1 - expected) / drawn.size)
    assert abs(is_tumor[drawn].mean() - expected) < 4 * sigma


def test_augmentation_moves_image_and_mask_together(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for k in range(8):
        image, mask = _shape_slice(rng)
        image_rel, mask_rel = _write_slice(tmp_path / "train", f"0000_{k:04d}", image, mask)
        rows.append({"case_id": 0, "split": "train", "slice_index": k, "image": image_rel,
                     "mask": mask_rel, "tumor_pixels": int((mask == 2).sum())})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    table = load_manifest(tmp_path)
    strong = Augmentation(rotation_deg=25, scale=0.2, shift=0.12, brightness=0.05, contrast=0.1)
    plain = make_dataset(table, 8, SIZE, training=True, seed=2, tumor_oversampling=1,
                         augmentation=None)
    moved = make_dataset(table, 8, SIZE, training=True, seed=2, tumor_oversampling=1,
                         augmentation=strong)
    changed = 0
    for (_, m0), (x1, m1) in zip(plain.take(4), moved.take(4), strict=True):
        x1, m1, m0 = x1.numpy(), m1.numpy(), m0.numpy()
        assert m1.dtype == np.uint8 and set(np.unique(m1)) <= {0, 1, 2}
        assert x1.min() >= 0 and x1.max() <= 1
        for image, mask, before in zip(x1, m1, m0, strict=True):
            bright = image[..., 0] > 0.5
            labelled = mask > 0
            iou = (bright & labelled).sum() / (bright | labelled).sum()
            assert iou > 0.9, iou  # the drawn shape is where the mask says
            # the same random map moves the tumor: it stays inside the moved liver
            assert (mask == 2).sum() > 0 and (labelled[mask == 2]).all()
            changed += int((labelled != (before > 0)).mean() > 0.02)
    assert changed >= 24  # of 32: the augmentation really moved the slices


def test_context_images_become_channels_after_the_image(tmp_path):
    from livertumor.data.preprocessing import tile

    rows = []
    for k in range(3):
        image = np.full((SIZE, SIZE, 3), 10 + k, np.uint8)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        image_rel, mask_rel = _write_slice(tmp_path / "train", f"0000_{k:04d}", image, mask)
        (tmp_path / "train" / "context").mkdir(exist_ok=True)
        planes = [np.full((SIZE, SIZE), 40 * (j + 1), np.uint8) for j in range(4)]
        Image.fromarray(tile(planes)).save(tmp_path / "train" / "context" / f"{k}.jpg",
                                           quality=95)
        rows.append({"case_id": 0, "split": "train", "slice_index": k, "image": image_rel,
                     "mask": mask_rel, "tumor_pixels": 0, "context": f"train/context/{k}.jpg"})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    table = load_manifest(tmp_path)
    x, _ = next(iter(make_dataset(table, 3, 32)))
    assert x.shape == (3, 32, 32, 7)
    levels = np.round(x.numpy()[:, 16, 16] * 255)
    np.testing.assert_allclose(levels[:, 3:], [[40, 80, 120, 160]] * 3, atol=2)
    np.testing.assert_allclose(levels[:, 0], [10, 11, 12], atol=2)
    augmented = make_dataset(table, 3, 32, training=True, tumor_oversampling=1)
    assert next(iter(augmented))[0].shape == (3, 32, 32, 7)


def _locate(image, patch):
    """Every (row, column) where ``patch`` lies in ``image``."""
    h, w = patch.shape[:2]
    return [(r, c) for r in range(image.shape[0] - h + 1) for c in range(image.shape[1] - w + 1)
            if np.array_equal(image[r:r + h, c:c + w], patch)]


def test_a_patch_is_a_region_of_the_slice_and_holds_one_of_its_tumor_pixels():
    import tensorflow as tf

    from livertumor.training.dataset import _patch

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 48, 5), dtype=np.uint8)  # random: a patch has one place
    mask = np.zeros((64, 48), np.uint8)
    mask[4:30, 3:40] = 1
    mask[55:57, 44:46] = 2  # a small tumor near a corner
    places = set()
    for k in range(25):
        key = tf.constant([3, k], tf.int64)
        patch, patch_mask = (t.numpy() for t in _patch(tf.constant(image), tf.constant(mask),
                                                         32, key))
        assert patch.shape == (32, 32, 5) and patch_mask.shape == (32, 32)
        (r, c), = _locate(image, patch)
        np.testing.assert_array_equal(patch_mask, mask[r:r + 32, c:c + 32])  # moved together
        assert (patch_mask == 2).any()
        again = _patch(tf.constant(image), tf.constant(mask), 32, key)[0].numpy()
        np.testing.assert_array_equal(again, patch)  # the key decides the patch
        places.add((r, c))
    assert len(places) >= 8  # the tumor lies at varying places inside the patch
    without = np.where(mask == 2, 1, mask).astype(np.uint8)
    places = set()
    for k in range(25):
        patch = _patch(tf.constant(image), tf.constant(without), 32,
                       tf.constant([3, k], tf.int64))[0].numpy()
        places.update(_locate(image, patch))
    rows, cols = zip(*places, strict=True)
    assert min(rows) < 10 and max(rows) > 22 and min(cols) < 5 and max(cols) > 11  # anywhere


def test_training_on_patches_yields_patches_that_keep_their_slices_tumors(tmp_path):
    rows = _export(tmp_path)
    tumor_rows = set(np.flatnonzero(rows["tumor_pixels"].to_numpy() > 0))
    ds = make_dataset(rows, 16, SIZE, training=True, seed=1, tumor_oversampling=3.0,
                      augmentation=None, patch_size=16)
    with_tumor = 0
    for images, masks in ds.take(6):
        images, masks = images.numpy(), masks.numpy()
        assert images.shape == (16, 16, 16, 3) and masks.shape == (16, 16, 16)
        drawn = np.round((np.round(images[:, 8, 8, 0] * 255) - 2) / 4).astype(int)
        has_tumor = (masks == 2).any(axis=(1, 2))
        # a patch of a tumor slice holds tumor; a patch of another slice cannot
        assert np.array_equal(has_tumor, np.isin(drawn, list(tumor_rows)))
        with_tumor += int(has_tumor.sum())
    assert with_tumor > 0


@pytest.mark.parametrize("kind", [
    {}, {"training": True}, {"training": True, "augmentation": None},
    {"training": True, "patch_size": 32}])
def test_every_stream_runs_without_the_autotuning_thread(tmp_path, kind):
    """tf.data's autotuner thread made the iterator's destructor, at the end of ``fit``, wait up
    to a minute for its next wake-up; every stream turns it off (and still yields batches)."""
    rows = _export(tmp_path, n_cases=3, slices_per_case=2, tumor_cases=(1,))
    ds = make_dataset(rows, 2, SIZE, **kind)
    assert ds.options().autotune.enabled is False
    images, masks = next(iter(ds))
    assert images.shape[0] == 2 and masks.shape == images.shape[:3]


def test_every_kth_slice_keeps_each_cases_first_and_every_kth_slice_after_it(tmp_path):
    rows = _export(tmp_path, n_cases=3, slices_per_case=5).sample(frac=1.0, random_state=1)
    kept = every_kth_slice(rows, 2)
    assert sorted(kept["case_id"].unique()) == [0, 1, 2]
    for _, case in kept.groupby("case_id"):
        assert sorted(case["slice_index"]) == [0, 2, 4]
    assert every_kth_slice(rows, 1) is rows
    with pytest.raises(ValueError, match="k must be >= 1"):
        every_kth_slice(rows, 0)
