"""Tests of the synthetic LiTS-like case generator (small matrices, whole file in seconds)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from livertumor.data.volumes import read_geometry, read_mask, read_nii
from livertumor.demo.anatomy.tissues import PHASES, tissue_range
from livertumor.demo.anatomy.tumors import KINDS
from livertumor.demo.generator import (
    CSV_NAME,
    case_geometry,
    case_paths,
    make_case,
    make_demo_dataset,
)

SIZE = 64
N = 8


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    table = make_demo_dataset(root, n_cases=N, seed=0, size=SIZE, progress=False)
    return root, table


@pytest.fixture(scope="module")
def cases():
    return {i: make_case(i, 0, SIZE) for i in range(N)}


def test_layout_and_table(dataset):
    root, table = dataset
    assert len(table) == N
    assert list(table["case_id"]) == list(range(N))
    for i in range(N):
        vol, seg = case_paths(root, i)
        assert vol == root / f"volume_pt{1 + i // 4}" / f"volume-{i}.nii"
        assert seg == root / "segmentations" / f"segmentation-{i}.nii"
        assert vol.is_file() and seg.is_file()
        assert table.loc[i, "volume"] == vol.relative_to(root).as_posix()
    assert {p.name for p in root.iterdir()} == {"volume_pt1", "volume_pt2", "segmentations",
                                                CSV_NAME}
    on_disk = pd.read_csv(root / CSV_NAME, keep_default_na=False)
    assert list(on_disk["case_id"]) == list(range(N))
    assert (on_disk["n_tumors"].to_numpy() == table["n_tumors"].to_numpy()).all()
    assert not any(p.name.startswith(".") for p in root.rglob("*"))  # no temporary files left


def test_dtypes_scaling_labels_and_shared_grid(dataset):
    root, _ = dataset
    for i in range(N):
        vol, seg = case_paths(root, i)
        vimg, simg = nib.load(vol), nib.load(seg)
        assert vimg.get_data_dtype() == np.int16
        assert simg.get_data_dtype() == np.uint8
        assert vimg.dataobj.slope == 1 and vimg.dataobj.inter == 0
        raw = np.frombuffer(vol.read_bytes()[112:120], dtype="<f4")
        assert raw.tolist() == [1.0, 0.0]  # scl_slope, scl_inter on disk
        np.testing.assert_array_equal(vimg.affine, simg.affine)
        assert vimg.shape == simg.shape
        labels = np.unique(np.asanyarray(simg.dataobj))
        assert set(labels.tolist()) <= {0, 1, 2}
        assert 1 in labels


def test_round_trip_equals_in_memory_case(dataset, cases):
    root, _ = dataset
    for i in range(N):
        case = cases[i]
        vol, seg = case_paths(root, i)
        geo = read_geometry(vol)
        assert geo.axcodes == case.axcodes
        np.testing.assert_allclose(geo.canonical_affine, case.affine, atol=1e-4)
        np.testing.assert_allclose(geo.spacing, case.spacing, rtol=1e-5)
        ct = read_nii(vol)
        assert ct.shape == case.ct.shape
        np.testing.assert_array_equal(ct, case.ct.astype(np.float32))
        np.testing.assert_array_equal(read_mask(seg, like=geo), case.mask)
        assert case.ct.dtype == np.int16 and case.mask.dtype == np.uint8


def test_deterministic_and_seed_dependent(dataset, tmp_path):
    root, _ = dataset
    again = make_demo_dataset(tmp_path / "again", n_cases=N, seed=0, size=SIZE, progress=False)
    assert _digest(root) == _digest(tmp_path / "again")
    pd.testing.assert_frame_equal(again, dataset[1])
    other = tmp_path / "other"
    make_demo_dataset(other, n_cases=2, seed=1, size=SIZE, progress=False)
    a, b = _digest(root), _digest(other)
    for i in range(2):
        key = f"volume_pt1/volume-{i}.nii"
        assert a[key] != b[key]


def test_case_content_independent_of_n_cases(dataset, tmp_path):
    root, _ = dataset
    make_demo_dataset(tmp_path, n_cases=3, seed=0, size=SIZE, progress=False)
    small, full = _digest(tmp_path), _digest(root)
    for i in range(3):
        for p in case_paths(tmp_path, i):
            key = p.relative_to(tmp_path).as_posix()
            assert small[key] == full[key]


def test_tumor_counts_and_mask_agree(dataset, cases):
    _, table = dataset
    counts = table["n_tumors"].to_numpy()
    assert (counts == 0).sum() >= 1
    assert (counts >= 2).sum() >= 2
    for i in range(N):
        m = cases[i].mask
        assert len(cases[i].tumors) == counts[i]
        assert (m == 2).any() == (counts[i] > 0)
        if counts[i]:
            d = [float(v) for v in table.loc[i, "tumor_diameters_mm"].split(";")]
            assert len(d) == counts[i]
            assert all(5 <= v <= 65 for v in d)
            tumors = cases[i].tumors
            assert table.loc[i, "tumor_kinds"].split(";") == [t["kind"] for t in tumors]
            contrasts = [float(v) for v in table.loc[i, "tumor_contrasts_hu"].split(";")]
            assert contrasts == [t["contrast_hu"] for t in tumors]


def test_tumors_inside_liver(cases):
    for case in cases.values():
        m = case.mask
        tumor = m == 2
        if not tumor.any():
            continue
        # tumor voxels sit in the liver: their neighbourhood is mostly liver or tumor
        shell = ndimage.binary_dilation(tumor) & ~tumor
        assert (m[shell] > 0).mean() > 0.5
        # every tumor's centre lies in (or next to) the liver envelope
        env = ndimage.binary_dilation(m > 0, iterations=2)
        for t in case.tumors:
            r, c, k = (int(round(v)) for v in t["centre_voxel"])
            r, c, k = (min(max(v, 0), s - 1) for v, s in zip((r, c, k), m.shape, strict=True))
            assert env[r, c, k]
            assert t["kind"] in KINDS


def test_liver_on_patient_right_and_upper_abdomen(cases):
    for case in cases.values():
        m = case.mask > 0
        rows, cols, slices = m.shape
        r, c, k = np.argwhere(m).mean(axis=0)
        assert c < cols / 2 - 0.05 * cols        # patient's right = low column index
        assert k > 0.35 * slices                 # liver in the upper part of the scan
        assert m[:, :, -1].sum() < m.sum(axis=(0, 1)).max()  # dome below the top slice
        assert 700 < case.liver_ml < 2800


def test_hu_statistics():
    for i in range(N):
        case = make_case(i, 0, 96)
        ct, m = case.ct.astype(np.float32), case.mask
        liver = ct[m == 1].mean()
        lo, hi = tissue_range("liver", case.phase["name"])
        assert lo - 10 <= liver <= hi + 10   # vessels inside the liver shift the mean
        corner = ct[:4, :4, :]
        assert -1030 <= corner.mean() <= -960
        assert ct.min() >= -1024 and ct.max() <= 3071


def test_spacing_rules_and_ranges():
    for i in range(40):
        g512 = case_geometry(i, 0, 512)
        sp, sp2, ss = g512["spacing"]
        assert sp == sp2 and 0.6 <= sp <= 0.92
        assert ss in (0.7, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0)
        assert 195 <= ss * g512["n_slices"] <= 245
        g64 = case_geometry(i, 0, 64)
        assert g64["spacing"][0] == pytest.approx(sp * 8)
        assert ss <= g64["spacing"][2] <= max(ss, 1.5 * g64["spacing"][0]) + 1e-9
        assert 15 <= g64["n_slices"] <= 60
        for key in ("fov", "n_tumors", "axcodes"):
            assert g64[key] == g512[key]


def test_axcodes_vary(dataset):
    _, table = dataset
    codes = set(table["axcodes"])
    assert "LPS" in codes
    assert len(codes) >= 3
    assert any(c[0] not in "LR" for c in codes)  # at least one permuted axis order
    assert (table["axcodes"] == "LPS").sum() >= 3


def test_skip_existing_and_overwrite(tmp_path):
    root = tmp_path / "d"
    t1 = make_demo_dataset(root, n_cases=3, seed=0, size=SIZE, progress=False)
    paths = [p for i in range(3) for p in case_paths(root, i)]
    before = {p: p.stat().st_mtime_ns for p in paths}
    digest = _digest(root)
    time.sleep(0.01)
    t2 = make_demo_dataset(root, n_cases=3, seed=0, size=SIZE, progress=False)
    pd.testing.assert_frame_equal(t1, t2)
    assert all(p.stat().st_mtime_ns == before[p] for p in paths)
    # a missing file regenerates that case only, identically
    vol1, seg1 = case_paths(root, 1)
    vol1.unlink()
    make_demo_dataset(root, n_cases=3, seed=0, size=SIZE, progress=False)
    assert vol1.exists()
    assert all(p.stat().st_mtime_ns == before[p] for p in paths if p not in (vol1, seg1))
    assert _digest(root) == digest
    # without the CSV, skipped cases are described from their files
    (root / CSV_NAME).unlink()
    t3 = make_demo_dataset(root, n_cases=3, seed=0, size=SIZE, progress=False)
    assert (t3["n_tumors"] <= t1["n_tumors"]).all()  # touching tumors count once
    assert ((t3["n_tumors"] > 0) == (t1["n_tumors"] > 0)).all()
    np.testing.assert_allclose(t3["liver_ml"], t1["liver_ml"], rtol=1e-3)
    # overwrite rewrites the files, with the same bytes
    make_demo_dataset(root, n_cases=3, seed=0, size=SIZE, progress=False, overwrite=True)
    assert all(p.stat().st_mtime_ns != before[p] for p in paths if p not in (vol1, seg1))
    assert _digest(root) == digest
    # another seed recorded in the CSV is not silently mixed in
    make_demo_dataset(root, n_cases=3, seed=5, size=SIZE, progress=False)
    assert _digest(root) != digest


def test_small_case_has_the_requested_matrix():
    case = make_case(3, 0, 64)
    assert case.ct.shape[:2] == (64, 64) and case.mask.shape == case.ct.shape
    assert case.phase["name"] in PHASES


def test_each_part_draws_from_its_own_random_stream(monkeypatch):
    """Drawing the spine differently changes the spine only, not the kidneys or the rest."""
    from livertumor.demo.anatomy import painter, skeleton

    before = painter.Anatomy(0, 3, 400.0, n_tumors=2)
    spine_init = skeleton.Spine.__init__

    def greedy_spine(self, rng, body):
        rng.uniform(size=5)
        spine_init(self, rng, body)

    monkeypatch.setattr(skeleton.Spine, "__init__", greedy_spine)
    after = painter.Anatomy(0, 3, 400.0, n_tumors=2)
    assert after.spine.top_radius_mm != before.spine.top_radius_mm
    assert after.kidneys == before.kidneys
    assert after.tissue_hu == before.tissue_hu
    assert after.spleen.centre_mm == before.spleen.centre_mm
    assert after.liver.target_ml == before.liver.target_ml
    assert after.body.half_width_mm == before.body.half_width_mm


def test_tumor_centres_and_liver_size_do_not_depend_on_the_matrix():
    for i in (0, 2):
        small, large = make_case(i, 0, 64), make_case(i, 0, 128)
        assert len(small.tumors) == len(large.tumors) > 0
        for a, b in zip(small.tumors, large.tumors, strict=True):
            np.testing.assert_allclose(a["centre_mm"], b["centre_mm"], atol=1e-6)
            assert a["kind"] == b["kind"]
        assert small.liver_ml == pytest.approx(large.liver_ml, rel=0.05)


def test_every_block_of_eight_case_ids_has_every_phase_portal_venous_the_most():
    for seed in (0, 3):
        for block in range(3):
            phases = [case_geometry(i, seed, 64)["phase"]
                      for i in range(8 * block, 8 * block + 8)]
            assert set(phases) == set(PHASES)
            counts = {p: phases.count(p) for p in PHASES}
            assert max(counts, key=counts.get) == "portal venous"
            assert all(counts["portal venous"] > counts[p] for p in PHASES
                       if p != "portal venous")


def test_liver_hu_lies_in_its_phase_range(cases, dataset):
    _, table = dataset
    seen = set()
    for i, case in cases.items():
        name = case.phase["name"]
        seen.add(name)
        lo, hi = tissue_range("liver", name)
        assert lo <= case.phase["liver_hu"] <= hi
        # measured on the volume: the liver's median, vessels and tumors aside
        core = ndimage.binary_erosion(case.mask == 1)
        measured = float(np.median(case.ct[core]))
        assert measured == pytest.approx(case.phase["liver_hu"], abs=8)
        assert table.loc[i, "phase"] == name
        assert table.loc[i, "liver_hu"] == case.phase["liver_hu"]
    assert seen == set(PHASES)


def test_unenhanced_liver_is_brighter_than_the_spleen():
    from livertumor.demo.anatomy import painter
    from livertumor.demo.generator import SETTLE_SIZE
    from livertumor.demo.geometry import case_grid

    unenhanced = [i for i in range(16) if case_geometry(i, 0, 64)["phase"] == "unenhanced"]
    assert len(unenhanced) >= 2
    for i in unenhanced:
        geo = case_geometry(i, 0, 64)
        an = painter.Anatomy(0, i, geo["fov"], n_tumors=geo["n_tumors"], phase=geo["phase"])
        an.settle(case_grid(case_geometry(i, 0, SETTLE_SIZE), an.body, SETTLE_SIZE))
        canvas = an.paint(case_grid(geo, an.body, 64))
        spleen = (canvas.hu == np.float32(an.tissue_hu["spleen"])).transpose(1, 2, 0)
        spleen = ndimage.binary_erosion(spleen)
        assert spleen.sum() > 20
        case = make_case(i, 0, 64)
        liver = ndimage.binary_erosion(case.mask == 1)
        difference = np.median(case.ct[liver]) - np.median(case.ct[spleen])
        assert 4 <= difference <= 16   # drawn 6 to 14 HU apart, measured through noise
        assert 6 <= case.phase["liver_hu"] - case.phase["spleen_hu"] <= 14


def test_a_table_from_an_earlier_generator_is_not_trusted(tmp_path):
    root = tmp_path / "d"
    make_demo_dataset(root, n_cases=2, seed=0, size=SIZE, progress=False)
    digest = _digest(root)
    old = pd.read_csv(root / CSV_NAME).drop(columns=["phase"])
    old.to_csv(root / CSV_NAME, index=False)
    vol0 = case_paths(root, 0)[0]
    vol0.write_bytes(b"written by an earlier generator")
    table = make_demo_dataset(root, n_cases=2, seed=0, size=SIZE, progress=False)
    assert list(table["phase"]) == [make_case(i, 0, SIZE).phase["name"] for i in range(2)]
    assert _digest(root) == digest   # regenerated, byte for byte


# the sign of a lesion's contrast to the liver, by kind and phase
SIGN = {("hypervascular", "late arterial"): +1}


def _sign(kind, phase):
    return SIGN.get((kind, phase), -1)


def _plans(seed, case_id):
    from livertumor.demo.anatomy import painter

    geo = case_geometry(case_id, seed, 64)
    an = painter.Anatomy(seed, case_id, geo["fov"], n_tumors=geo["n_tumors"], phase=geo["phase"])
    return geo["phase"], an.tumor_plans


@pytest.fixture(scope="module")
def lesion_cases():
    """Cases at 128 px holding, for every kind and phase, tumors of 10 mm and more."""
    wanted: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for seed in (0, 1):
        for i in range(16):
            phase, plans = _plans(seed, i)
            for plan in plans:
                if plan["diameter_mm"] >= 10:
                    found = wanted.setdefault((plan["kind"], phase), [])
                    if len(found) < 2 and (seed, i) not in found:
                        found.append((seed, i))
    assert set(wanted) == {(k, p) for k in KINDS for p in PHASES}
    ids = sorted({key for found in wanted.values() for key in found})
    return [make_case(i, seed, 128) for seed, i in ids]


def test_each_lesion_kind_has_its_contrast_sign_in_its_phase(lesion_cases):
    """Measured on the volume: mean HU inside the tumor's label minus the median of the liver
    around it (2 voxels), for tumors of 10 mm and more that touch no other tumor."""
    measured = {}
    for case in lesion_cases:
        phase = case.phase["name"]
        comps, _ = ndimage.label(case.mask == 2)
        owners = np.bincount([comps[tuple(int(round(v)) for v in t["centre_voxel"])]
                              for t in case.tumors], minlength=comps.max() + 1)
        for t in case.tumors:
            comp = comps[tuple(int(round(v)) for v in t["centre_voxel"])]
            assert np.sign(t["contrast_hu"]) == _sign(t["kind"], phase)
            if t["diameter_mm"] < 10 or comp == 0 or owners[comp] > 1:
                continue
            region = comps == comp
            shell = ndimage.binary_dilation(region, iterations=2) & (case.mask == 1)
            contrast = case.ct[region].mean() - np.median(case.ct[shell])
            assert np.sign(contrast) == _sign(t["kind"], phase), (case.case_id, t)
            assert abs(contrast) >= 5, (case.case_id, t, contrast)
            measured.setdefault((t["kind"], phase), []).append(contrast)
    assert len(measured) >= 10   # nearly every kind in every phase was measured
    assert all(np.mean(v) > 25 for k, v in measured.items() if k[0] == "hypervascular"
               and k[1] == "late arterial")
    assert all(np.mean(v) < -25 for k, v in measured.items() if k[0] == "cyst")


def test_small_tumors_are_common_and_painted():
    diameters = [p["diameter_mm"] for i in range(16) for p in _plans(0, i)[1]]
    small = [d for d in diameters if 5 <= d < 10]
    assert len(small) >= 0.2 * len(diameters)
    assert max(diameters) >= 30 and min(diameters) >= 5
    case = make_case(2, 0, 256)
    painted = [t for t in case.tumors if t["diameter_mm"] < 10]
    assert painted and all(t["volume_ml"] > 0 for t in painted)


def test_labels_mark_exactly_the_lesions():
    """Painted with and without tumors: every voxel a tumor changed is labelled tumor, and
    nearly every tumor voxel differs visibly from what lay under it."""
    from livertumor.demo.anatomy import painter
    from livertumor.demo.generator import SETTLE_SIZE
    from livertumor.demo.geometry import case_grid

    for i in (1, 2, 7):
        geo = case_geometry(i, 0, 96)
        an = painter.Anatomy(0, i, geo["fov"], n_tumors=geo["n_tumors"], phase=geo["phase"])
        an.settle(case_grid(case_geometry(i, 0, SETTLE_SIZE), an.body, SETTLE_SIZE))
        grid = case_grid(geo, an.body, 96)
        plain = an.paint(grid, liver_tumors=False)
        canvas = an.paint(grid)
        tumor = canvas.lab == 2
        changed = canvas.hu != plain.hu
        assert tumor.sum() > 50
        assert not (changed & ~tumor).any()
        # a few voxels change little: the outermost edge, blended into the liver, or a lesion
        # crossing a vessel as bright as itself
        assert (np.abs(canvas.hu - plain.hu)[tumor] < 3).mean() < 0.1
        assert not (tumor & (plain.lab != 1)).any()   # tumors lie in the liver
        assert ((canvas.lab == 1) == ((plain.lab == 1) & ~tumor)).all()


def test_lesions_of_10_to_20_mm_keep_10_hu_of_contrast_after_the_scanner_blur():
    """Each lesion painted alone in a uniform liver at 0.7 mm, blurred as at 512 px (the
    widest in-plane blur, 1 mm), no noise: its mean inside the label differs from the liver
    by 10 HU or more, on the side its kind has in that phase."""
    from livertumor.demo.anatomy.canvas import Canvas, Grid
    from livertumor.demo.anatomy.tumors import draw_tumor_plans, paint_tumor

    axis = np.arange(-16, 16.01, 0.7)
    grid = Grid(x=axis, y=axis, z=axis)
    checked = 0
    for phase in PHASES:
        liver = float(np.mean(tissue_range("liver", phase)))
        plans = draw_tumor_plans(np.random.default_rng(11), 150, phase, liver)
        for plan in plans:
            if not 10 <= plan["diameter_mm"] < 20:
                continue
            canvas = Canvas(grid)
            canvas.hu[:] = liver
            canvas.lab[:] = 1
            paint_tumor(canvas, plan, np.zeros(3))
            blurred = ndimage.gaussian_filter(canvas.hu, (0.45, 1 / 0.7, 1 / 0.7))
            contrast = blurred[canvas.lab == 2].mean() - liver
            assert np.sign(contrast) == _sign(plan["kind"], phase)
            assert abs(contrast) >= 10, (phase, plan["kind"], plan["diameter_mm"], contrast)
            checked += 1
    assert checked > 100


def test_noise_falls_with_the_square_root_of_the_voxel_volume():
    from livertumor.demo.geometry import case_geometry

    for case_id in range(6):
        fine, coarse = case_geometry(case_id, 0, 512), case_geometry(case_id, 0, 256)
        assert 10 <= fine["noise_hu"] <= 20
        volume = [np.prod(g["spacing"]) for g in (fine, coarse)]
        assert coarse["noise_hu"] == pytest.approx(fine["noise_hu"] * np.sqrt(volume[0]
                                                                             / volume[1]))
        assert coarse["noise_hu"] < fine["noise_hu"]


def test_cases_made_by_several_processes_are_the_same_bytes(tmp_path):
    one = make_demo_dataset(tmp_path / "one", n_cases=3, seed=0, size=64, progress=False,
                            workers=1)
    two = make_demo_dataset(tmp_path / "two", n_cases=3, seed=0, size=64, progress=False,
                            workers=2)
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")
    assert one.equals(two)
