"""export_slices: split, manifest, preprocessing, determinism across workers, resume after a
kill, bad cases, orientation, memory."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from livertumor import LiverTumorError, NiftiVolume, freqhist_bins, read_mask, read_nii
from livertumor.data.preprocessing import context_plane, jpeg_bytes, slice_channels
from livertumor.data.slice_images import SliceImager
from livertumor.data.volumes import canonical_affine_for, reorient_image
from livertumor.demo.generator import make_demo_dataset
from livertumor.export import export_slices, load_export, split_cases, tree_digest
from livertumor.export.result import MANIFEST_COLUMNS

from conftest import anatomy, write_case

ARGS = dict(every=2, size=48, test_fraction=0.25, seed=3, progress=False)
N_DEMO = 6


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, n_cases=N_DEMO, seed=0, size=64, progress=False)
    return root


@pytest.fixture(scope="module")
def exported(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "out"
    return export_slices(demo_dir, out, workers=1, **ARGS)


def run_killed(demo_dir, out, die_in: str, on_call: int) -> int:
    """Run the export in a subprocess that SIGKILLs itself in the ``on_call``-th call of
    ``_survey_case`` or of ``_flush_to_disk`` (after a case's files are written under their
    temporary names, before they are renamed). The hook lives here, not in the library."""
    owner = {"_survey_case": "pipeline", "_flush_to_disk": "slice_files"}[die_in]
    code = f"""
import os, signal, sys
import livertumor.export.{owner} as E
from livertumor.export import export_slices
calls = 0
def hook(original):
    def wrapped(*args):
        global calls
        calls += 1
        if calls == {on_call}:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args)
    return wrapped
E.{die_in} = hook(E.{die_in})
export_slices(sys.argv[1], sys.argv[2], workers=1, **{ARGS!r})
"""
    proc = subprocess.run([sys.executable, "-c", code, str(demo_dir), str(out)], timeout=120)
    return proc.returncode


# ---------------------------------------------------------------------------------- the split

def test_split_is_by_patient_stratified_and_deterministic():
    has_tumor = {i: i % 3 != 0 for i in range(30)}  # 20 with tumor, 10 without
    split = split_cases(has_tumor, 0.2, seed=5)
    assert split == split_cases(has_tumor, 0.2, seed=5)
    assert split != split_cases(has_tumor, 0.2, seed=6)
    test = [c for c, s in split.items() if s == "test"]
    assert sum(has_tumor[c] for c in test) == 4 and sum(not has_tumor[c] for c in test) == 2
    # over many seeds every tumor case lands in test about equally often
    hits = np.zeros(30)
    for seed in range(400):
        s = split_cases(has_tumor, 0.2, seed)
        hits += [s[i] == "test" for i in range(30)]
    tumor_rates = hits[[i for i in range(30) if has_tumor[i]]] / 400
    assert tumor_rates.min() > 0.12 and tumor_rates.max() < 0.28


def test_split_of_tiny_datasets_keeps_one_case_on_each_side():
    assert sorted(split_cases({0: True, 1: False}, 0.6, 0).values()) == ["test", "train"]
    assert sorted(split_cases({0: True, 1: True}, 0.1, 0).values()) == ["test", "train"]
    assert split_cases({0: True}, 0.5, 0) == {0: "train"}
    assert set(split_cases({i: i % 2 == 0 for i in range(9)}, 0.0, 0).values()) == {"train"}
    with pytest.raises(ValueError, match="test_fraction"):
        split_cases({0: True}, 1.0, 0)


# ------------------------------------------------------------------------ manifest and files

def test_manifest_lists_every_file_with_its_counts(exported):
    out, m = exported.out_dir, exported.manifest
    assert list(m.columns) == MANIFEST_COLUMNS
    pd.testing.assert_frame_equal(pd.read_csv(out / "manifest.csv"), m)
    assert set(m["split"]) == {"train", "test"}
    assert (m.groupby("case_id")["split"].nunique() == 1).all()  # no patient on both sides
    assert (m["slice_index"] % 2 == 0).all()
    assert m.equals(m.sort_values(["case_id", "slice_index"]))
    for row in m.sample(12, random_state=0).itertuples():
        with Image.open(out / row.image) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (48, 48)
        with Image.open(out / row.mask) as im:
            assert im.format == "PNG" and im.mode == "L"
            label = np.asarray(im)
        assert label.shape == (48, 48) and set(np.unique(label)) <= {0, 1, 2}
        assert int((label >= 1).sum()) == row.liver_pixels
        assert int((label == 2).sum()) == row.tumor_pixels
        assert row.image == f"{row.split}/images/{row.case_id:04d}_{row.slice_index:04d}.jpg"
    on_disk = {p.relative_to(out).as_posix() for p in out.glob("t*/*/*.*")}
    assert on_disk == set(m["image"]) | set(m["mask"])
    assert not list(out.rglob(".*.part"))


def test_cases_table_gives_each_case_its_split_or_the_reason(exported, demo_dir):
    cases = exported.cases.set_index("case_id")
    assert sorted(cases.index) == list(range(N_DEMO))
    assert (cases["status"] == "ok").all() and (cases["reason"] == "").all()
    per_case = exported.manifest.groupby("case_id")
    assert (per_case["split"].first() == cases["split"]).all()
    assert (per_case.size() == cases["slices_exported"]).all()
    for _, row in cases.iterrows():
        assert row.has_tumor == bool((read_mask(row.mask_path) == 2).any())
        assert row.slices_exported == len(range(0, read_nii(row.volume_path).shape[2], 2))


def test_exported_images_are_the_preprocessing_definition_byte_for_byte(exported):
    """What inference computes from a volume (preprocessing.slice_channels) is what was saved."""
    prep = exported.preprocessing
    cases = exported.cases.set_index("case_id")
    for row in exported.manifest.sample(10, random_state=1).itertuples():
        vol = NiftiVolume(cases.loc[row.case_id, "volume_path"])
        expected = jpeg_bytes(slice_channels(vol.hu_slice(row.slice_index), prep), 90)
        assert (exported.out_dir / row.image).read_bytes() == expected


@pytest.mark.parametrize("dtype,slope,inter", [
    (np.int16, 1.0, 0.0), (np.int16, 0.5, -1024.0), (np.uint16, 1.0, -1024.0),
    (np.uint8, 4.0, -200.0), (np.int32, 1.0, 0.0), (np.float32, 1.0, 0.0)])
@pytest.mark.parametrize("size", [0, 20])
def test_lookup_table_images_equal_slice_channels_for_any_stored_type(tmp_path, dtype, slope,
                                                                       inter, size):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    lo, hi = (max(int(info.min), -1100), min(int(info.max), 1400)) if info else (-1100, 1400)
    stored = rng.integers(lo, hi, size=(30, 26, 3)).astype(dtype)
    nib.save(nib.Nifti1Image(stored, canonical_affine_for((0.8, 0.8, 2.0))), tmp_path / "v.nii")
    header = nib.load(tmp_path / "v.nii").header.copy()
    header["scl_slope"], header["scl_inter"] = slope, inter  # nibabel's writer would reset them
    data = bytearray((tmp_path / "v.nii").read_bytes())
    data[:348] = header.binaryblock
    (tmp_path / "v.nii.gz").write_bytes(gzip.compress(bytes(data)))
    vol = NiftiVolume(tmp_path / "v.nii.gz")
    assert (vol.slope or 1.0, vol.inter or 0.0) == (slope, inter)
    prep = {"windows": [[150.0, 30.0], [400.0, 50.0]], "size": size,
            "bins": freqhist_bins(vol.read().ravel(), 20).tolist()}
    imager = SliceImager(vol, prep)
    assert (imager._lut is not None) == (np.dtype(dtype).itemsize <= 2 and info is not None)
    for k in range(3):
        np.testing.assert_array_equal(imager(k), slice_channels(vol.hu_slice(k), prep))
        np.testing.assert_array_equal(imager(k, first_only=True),
                                      context_plane(vol.hu_slice(k), prep))


def test_exported_masks_are_the_resized_canonical_slices(exported):
    row = exported.manifest[exported.manifest["tumor_pixels"] > 0].iloc[0]
    case = exported.cases.set_index("case_id").loc[row.case_id]
    mask = read_mask(case.mask_path)[:, :, row.slice_index]
    expected = np.asarray(Image.fromarray(mask).resize((48, 48), Image.NEAREST))
    np.testing.assert_array_equal(np.asarray(Image.open(exported.out_dir / row["mask"])),
                                  expected)


@pytest.mark.parametrize("axcodes", [("L", "P", "S"), ("R", "A", "I"), ("S", "P", "L")])
def test_slices_are_radiological_whatever_the_stored_axis_order(tmp_path, axcodes):
    """Liver (a box on the patient's right, anterior) shows on the image's left, at the top."""
    ct, mask = anatomy((32, 28, 8))
    for cid in (0, 1):
        write_case(tmp_path / "data", cid, ct, mask, axcodes=axcodes)
    result = export_slices(tmp_path / "data", tmp_path / "out", every=1, size=0,
                           test_fraction=0.5, seed=0, workers=1, progress=False)
    for row in result.manifest.itertuples():
        label = np.asarray(Image.open(result.out_dir / row.mask))
        np.testing.assert_array_equal(label, mask[:, :, row.slice_index])
        if row.liver_pixels:
            rows, cols = np.nonzero(label)
            assert cols.mean() < label.shape[1] / 2 and rows.mean() < label.shape[0] / 2
            # the image lines up: liver (110 HU) is white in the liver window (red), the
            # tumor (45 HU) about 0.6 of it; JPEG blurs the edges, so compare means
            red = np.asarray(Image.open(result.out_dir / row.image))[..., 0].astype(float)
            assert red[label == 1].mean() > 225
            if row.tumor_pixels:
                assert 120 < red[label == 2].mean() < 190


def test_a_mask_stored_in_another_orientation_exports_like_an_aligned_one(tmp_path):
    ct, mask = anatomy((32, 28, 8))
    write_case(tmp_path / "a", 0, ct, mask, axcodes=("L", "P", "S"))
    write_case(tmp_path / "a", 1, ct, mask, axcodes=("L", "P", "S"))
    write_case(tmp_path / "b", 0, ct, mask, axcodes=("L", "P", "S"), mask_axcodes=("S", "A", "R"))
    write_case(tmp_path / "b", 1, ct, mask, axcodes=("L", "P", "S"), mask_axcodes=("R", "A", "I"))
    args = dict(every=1, size=32, test_fraction=0.5, seed=0, workers=1, progress=False)
    a = export_slices(tmp_path / "a", tmp_path / "out_a", **args)
    b = export_slices(tmp_path / "b", tmp_path / "out_b", **args)
    digest_a, digest_b = tree_digest(a.out_dir), tree_digest(b.out_dir)
    same = {k for k in digest_a if k.endswith((".png", ".jpg", "manifest.csv"))}
    assert len(same) == 2 * 2 * 8 + 1 and all(digest_a[k] == digest_b[k] for k in same)


def test_compressed_files_export_like_uncompressed_ones(tmp_path):
    """.nii.gz volumes and masks (read slab by slab) give the bytes of the .nii ones."""
    ct, mask = anatomy((32, 28, 8))
    for cid, axcodes in ((0, ("L", "P", "S")), (1, ("R", "A", "I"))):
        write_case(tmp_path / "nii", cid, ct, mask, axcodes=axcodes)
        write_case(tmp_path / "gz", cid, ct, mask, axcodes=axcodes, gz=True)
    args = dict(every=1, size=32, test_fraction=0.5, seed=0, workers=1, progress=False)
    a = tree_digest(export_slices(tmp_path / "nii", tmp_path / "out_nii", **args).out_dir)
    b = tree_digest(export_slices(tmp_path / "gz", tmp_path / "out_gz", **args).out_dir)
    same = [k for k in a if k.endswith((".png", ".jpg", "manifest.csv"))]
    assert len(same) == 2 * 2 * 8 + 1 and all(a[k] == b[k] for k in same)


# ------------------------------------------------------------------------ preprocessing.json

def test_histogram_breaks_come_from_training_cases_only(exported):
    prep = json.loads((exported.out_dir / "preprocessing.json").read_text())
    assert prep == exported.preprocessing
    cases = exported.cases.set_index("case_id")
    train = [c for c in cases.index if cases.loc[c, "split"] == "train"]
    assert prep["bins_from"]["cases"] == sorted(train)
    pooled = np.concatenate([np.rint(read_nii(cases.loc[c, "volume_path"])[:, :, ::2]).ravel()
                             for c in train])
    assert prep["bins_from"]["voxels"] == pooled.size
    np.testing.assert_array_equal(prep["bins"], freqhist_bins(pooled, prep["n_bins"]))


def test_preprocessing_json_holds_everything_inference_needs(exported, demo_dir):
    from livertumor.data.cases import data_fingerprint

    prep = exported.preprocessing
    assert prep["windows"] == [[150.0, 30.0], [400.0, 50.0]]
    assert prep["channels"] == ["liver", "abdomen_soft", "histogram-scaled"]
    assert prep["size"] == 48 and prep["every"] == 2 and prep["orientation"] == "PLS"
    assert prep["jpeg_quality"] == 90 and prep["n_bins"] == 100
    assert prep["test_fraction"] == 0.25 and prep["seed"] == 3
    assert prep["labels"] == {"0": "background", "1": "liver", "2": "tumor"}
    assert np.all(np.diff(prep["bins"]) > 0) and len(prep["bins"]) <= 102
    assert prep["source_fingerprint"] == data_fingerprint(demo_dir)


# -------------------------------------------------------------------- determinism and resume

def test_output_is_byte_identical_whatever_the_worker_count(exported, demo_dir, tmp_path):
    again = export_slices(demo_dir, tmp_path / "two", workers=2, **ARGS)
    assert tree_digest(again.out_dir) == tree_digest(exported.out_dir)
    pd.testing.assert_frame_equal(again.manifest, exported.manifest)


def test_a_finished_export_is_not_read_again(exported, demo_dir, monkeypatch):
    import livertumor.export.pipeline as export_module

    def fail(*_):
        raise AssertionError("a finished export read its volumes again")

    monkeypatch.setattr(export_module, "_survey_case", fail)
    monkeypatch.setattr(export_module, "_export_case", fail)
    before = tree_digest(exported.out_dir)
    again = export_slices(demo_dir, exported.out_dir, workers=1, **ARGS)
    assert again.exported_now == [] and tree_digest(exported.out_dir) == before
    assert "already done before: 6" in again.summary_text()


@pytest.mark.parametrize("die_in,on_call", [("_flush_to_disk", 3), ("_survey_case", 4)])
def test_a_killed_export_resumes_to_the_same_result(exported, demo_dir, tmp_path, die_in,
                                                    on_call):
    out = tmp_path / "killed"
    assert run_killed(demo_dir, out, die_in, on_call) == -signal.SIGKILL
    assert not (out / "manifest.csv").exists()  # final files only at the very end
    records = list((out / ".export").glob("case-*.json"))
    if die_in == "_flush_to_disk":
        assert len(records) == on_call - 1
        assert list(out.rglob(".*.part"))  # the third case died with its files unrenamed
    result = export_slices(demo_dir, out, workers=2, **ARGS)
    assert len(result.exported_now) == N_DEMO - len(records)
    assert not list(out.rglob(".*.part"))
    assert tree_digest(out) == tree_digest(exported.out_dir)


def test_damaged_records_and_files_are_redone(exported, demo_dir, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(exported.out_dir, out)
    m = exported.manifest
    first = m[m["case_id"] == 1].iloc[0]
    (out / first.image).write_bytes((out / first.image).read_bytes()[:100])  # torn file
    (out / ".export" / "case-2.json").write_text("")  # record lost in a power cut
    (out / ".export" / "case-3.json").write_text('{"case_id": 3, "spl')
    (out / m[m["case_id"] == 4].iloc[-1]["mask"]).unlink()
    result = export_slices(demo_dir, out, workers=1, **ARGS)
    assert result.exported_now == [1, 2, 3, 4]
    assert tree_digest(out) == tree_digest(exported.out_dir)


def test_changed_arguments_or_data_are_refused_and_overwrite_replaces(demo_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    out = tmp_path / "out"
    export_slices(data, out, workers=1, **ARGS)
    with pytest.raises(LiverTumorError, match=r"size \(was 48, now 64\).*--overwrite"):
        export_slices(data, out, workers=1, **{**ARGS, "size": 64})
    with pytest.raises(LiverTumorError, match=r"windows \(was \['liver', 'abdomen_soft'\]"):
        export_slices(data, out, workers=1, **{**ARGS, "windows": ("liver", "liver_wide")})
    shutil.copy(data / "segmentations" / "segmentation-0.nii",
                data / "segmentations" / "segmentation-77.nii")
    with pytest.raises(LiverTumorError, match="the data"):
        export_slices(data, out, workers=1, **ARGS)
    replaced = export_slices(data, out, workers=1, overwrite=True, **{**ARGS, "size": 64})
    fresh = export_slices(data, tmp_path / "fresh", workers=1, **{**ARGS, "size": 64})
    assert tree_digest(replaced.out_dir) == tree_digest(fresh.out_dir)  # no stale files


def test_a_folder_that_is_not_an_export_is_left_alone(demo_dir, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(LiverTumorError, match="not empty.*holds no export"):
            export_slices(demo_dir, out, workers=1, overwrite=overwrite, **ARGS)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_running_export_locks_the_folder_and_a_dead_ones_lock_is_taken(demo_dir, tmp_path):
    import socket

    out = tmp_path / "out"
    (out / ".export").mkdir(parents=True)
    host = socket.gethostname()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".export" / "lock").write_text(json.dumps({"pid": sleeper.pid, "host": host}))
        with pytest.raises(LiverTumorError, match=f"another export \\(pid {sleeper.pid}"):
            export_slices(demo_dir, out, workers=1, **ARGS)
    finally:
        sleeper.kill()
        sleeper.wait()
    result = export_slices(demo_dir, out, workers=1, **ARGS)  # the sleeper is gone: stale
    assert len(result.exported_now) == N_DEMO and not (out / ".export" / "lock").exists()


def test_load_export_reads_the_result_back(exported):
    loaded = load_export(exported.out_dir)
    pd.testing.assert_frame_equal(loaded.manifest, exported.manifest)
    assert loaded.preprocessing == exported.preprocessing
    pd.testing.assert_frame_equal(loaded.split_summary(), exported.split_summary())
    assert list(loaded.cases["case_id"]) == list(exported.cases["case_id"])
    with pytest.raises(LiverTumorError, match="no manifest.csv"):
        load_export(exported.out_dir / "train")


# --------------------------------------------------------------------------------- bad cases

def broken_corpus(root):
    """Good cases 0, 1 and 10 (float mask) plus one of each kind of bad input."""
    ct, mask = anatomy((32, 28, 8))
    write_case(root, 0, ct, mask, axcodes=("L", "P", "S"))
    write_case(root, 1, ct, mask, axcodes=("L", "P", "S"), mask_axcodes=("R", "A", "I"))
    vpath, _ = write_case(root, 2, ct, mask)                               # truncated
    vpath.write_bytes(vpath.read_bytes()[:-500])
    (root / "volume_pt1" / "volume-3.nii").write_bytes(b"not a nifti file" * 40)
    write_case(root, 3, None, mask)                                         # not NIfTI
    write_case(root, 4, ct, None)                                           # grid mismatch
    nib.save(reorient_image(mask[:, :, :6], canonical_affine_for((0.75, 0.8, 2.5)),
                            ("P", "L", "S")), root / "segmentations" / "segmentation-4.nii")
    bad_labels = mask.copy()
    bad_labels[0, 0, 0] = 7
    write_case(root, 5, ct, bad_labels)                                     # labels 0/1/2/7
    nan_ct = ct.astype(np.float32)
    nan_ct[3, 3, 3] = np.nan
    write_case(root, 6, nan_ct, mask)                                       # NaN, exported slice
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 2), np.int16), np.eye(4)),
             root / "volume_pt1" / "volume-7.nii")
    write_case(root, 7, None, mask[:8, :8, :4])                             # 4-D volume
    write_case(root, 8, ct, None)                                           # no mask
    vpath, _ = write_case(root, 9, ct, mask, gz=True)                       # truncated .gz
    vpath.write_bytes(vpath.read_bytes()[:-900])
    nan_odd = ct.astype(np.float32)
    nan_odd[3, 3, 1] = np.inf
    write_case(root, 11, nan_odd, mask)                                     # inf, odd slice
    write_case(root, 10, ct, mask.astype(np.float32))                       # fine: float mask
    return ct, mask


def test_bad_cases_are_listed_and_the_others_go_through(tmp_path):
    broken_corpus(tmp_path / "data")
    result = export_slices(tmp_path / "data", tmp_path / "out", every=2, size=32,
                           test_fraction=0.4, seed=0, workers=2, progress=False)
    cases = result.cases.set_index("case_id")
    assert list(cases.loc[[0, 1, 10], "status"]) == ["ok", "ok", "ok"]
    expect = {2: "truncated", 3: "not a readable NIfTI", 4: "shape", 5: "unexpected label",
              6: "NaN", 7: "not 3-D", 8: "no segmentation-8.nii", 9: "cannot be read",
              11: "infinite"}
    for cid, words in expect.items():
        assert cases.loc[cid, "status"] in ("bad", "unpaired"), cid
        assert words in cases.loc[cid, "reason"], (cid, cases.loc[cid, "reason"])
        assert cases.loc[cid, "split"] == "" and cases.loc[cid, "slices_exported"] == 0
    assert "volume-2.nii" in cases.loc[2, "reason"]  # the reason names the file
    assert set(result.manifest["case_id"]) == {0, 1, 10}
    assert result.complete
    text = result.summary_text()
    assert "exported 3 of 12 cases" in text and "case 5 (bad)" in text
    assert len(text.splitlines()) < 25
    on_disk = pd.read_csv(tmp_path / "out" / "cases.csv", keep_default_na=False)
    assert list(on_disk["status"]) == list(result.cases["status"])


def test_cli_exit_status_and_summary(tmp_path):
    broken_corpus(tmp_path / "data")
    cmd = [sys.executable, "-m", "livertumor", "export", "--quiet", "--size", "32"]
    res = subprocess.run(cmd + [str(tmp_path / "data"), str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "train:" in res.stdout and "case 2 (bad)" in res.stdout
    only_bad = tmp_path / "bad"
    (only_bad / "volume_pt1").mkdir(parents=True)
    (only_bad / "volume_pt1" / "volume-1.nii").write_bytes(b"garbage" * 100)
    res = subprocess.run(cmd + [str(only_bad), str(tmp_path / "out2")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "no case could be exported" in res.stderr
    assert "cases.csv" in res.stderr and (tmp_path / "out2" / "cases.csv").exists()
    res = subprocess.run(cmd + ["--every", "0", str(tmp_path / "data"), str(tmp_path / "o3")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "every must be at least 1" in res.stderr
    assert not (tmp_path / "o3").exists()


# -------------------------------------------------------------------------------- streaming

def test_no_whole_volume_float_copy_is_made(tmp_path):
    """Python-heap peak (tracemalloc sees numpy buffers, not the memory-mapped file) of a
    one-case-per-split export stays below the volume's own int16 size."""
    rng = np.random.default_rng(0)
    ct = rng.integers(-1000, 1500, size=(192, 192, 128)).astype(np.int16)  # 9 MiB int16
    mask = np.zeros(ct.shape, np.uint8)
    mask[40:100, 20:80, 10:80] = 1
    for cid in (0, 1):
        write_case(tmp_path / "data", cid, ct, mask)
    tracemalloc.start()
    try:
        export_slices(tmp_path / "data", tmp_path / "out", every=1, size=64,
                      test_fraction=0.5, seed=0, workers=1, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < ct.nbytes, f"peak {peak / 2**20:.1f} MiB for a {ct.nbytes / 2**20:.1f} MiB volume"


@pytest.mark.slow
def test_an_export_killed_from_outside_resumes_to_the_same_result(tmp_path):
    """SIGINT (Ctrl-C) and then SIGKILL of the command and its workers, at arbitrary moments."""
    data = tmp_path / "data"
    # enough work (8 cases, every slice) that a signal sent when the first records appear
    # lands well before the end, even on a loaded machine
    make_demo_dataset(data, n_cases=8, seed=1, size=256, progress=False)
    args = ["--every", "1", "--size", "128", "--workers", "2", "--quiet"]
    cmd = [sys.executable, "-m", "livertumor", "export", *args, str(data)]
    reference = tmp_path / "reference"
    subprocess.run(cmd + [str(reference)], check=True, capture_output=True)
    out = tmp_path / "out"
    interrupted, seen = 0, []
    for sig in (signal.SIGINT, signal.SIGKILL):
        if (out / "manifest.csv").exists():
            break  # the previous run got to the end before its signal: nothing left to stop
        # a shell's background jobs inherit SIGINT ignored; give the command a terminal's default
        proc = subprocess.Popen(cmd + [str(out)], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        n_done = len(list((out / ".export").glob("case-*.json")))
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None and \
                len(list((out / ".export").glob("case-*.json"))) <= n_done:
            time.sleep(0.01)
        running = proc.poll() is None
        os.killpg(proc.pid, sig)
        proc.wait(timeout=60)
        seen.append((sig, running, proc.returncode, proc.stderr.read()[-500:]))
        if running and proc.returncode != 0:  # stopped mid-way (not a race with its own end)
            interrupted += 1
            assert not (out / "manifest.csv").exists()
    assert interrupted >= 1, seen
    subprocess.run(cmd + [str(out)], check=True, capture_output=True)
    assert tree_digest(out) == tree_digest(reference)
