"""export_slices: split, manifest, determinism across workers, resume after a kill, bad cases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from livertumor import LiverTumorError, freqhist_bins, read_mask, read_nii
from livertumor.demo_data import make_demo_dataset
from livertumor.export import export_slices, split_cases, tree_digest
from livertumor.volumes import canonical_affine_for, reorient_image

from conftest import anatomy, write_case

ARGS = dict(every=2, size=48, test_fraction=0.25, seed=3, progress=False)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, n_cases=6, seed=0, size=64, progress=False)
    return root


@pytest.fixture(scope="module")
def exported(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "out"
    return export_slices(demo_dir, out, workers=1, **ARGS)


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


def test_manifest_lists_every_file_with_its_counts(exported):
    out, m = exported.out_dir, exported.manifest
    assert list(m.columns) == ["case_id", "split", "slice_index", "image", "mask",
                               "liver_pixels", "tumor_pixels"]
    assert set(m["split"]) == {"train", "test"}
    per_case = m.groupby("case_id")["split"].nunique()
    assert (per_case == 1).all()  # no patient on both sides
    assert (m["slice_index"] % 2 == 0).all()
    for row in m.sample(12, random_state=0).itertuples():
        with Image.open(out / row.image) as im:
            assert im.mode == "RGB" and im.size == (48, 48)
        label = np.asarray(Image.open(out / row.mask))
        assert label.shape == (48, 48) and set(np.unique(label)) <= {0, 1, 2}
        assert int((label >= 1).sum()) == row.liver_pixels
        assert int((label == 2).sum()) == row.tumor_pixels
        assert row.image.startswith(f"{row.split}/images/{row.case_id:04d}_")
    on_disk = {p.relative_to(out).as_posix() for p in out.glob("*/*/*.*")}
    assert on_disk == set(m["image"]) | set(m["mask"])
    assert not list(out.rglob(".*.part"))


def test_exported_masks_are_the_resized_canonical_slices(exported, demo_dir):
    row = exported.manifest[exported.manifest["tumor_pixels"] > 0].iloc[0]
    case = exported.cases.set_index("case_id").loc[row.case_id]
    mask = read_mask(case.mask_path)[:, :, row.slice_index]
    expected = np.asarray(Image.fromarray(mask).resize((48, 48), Image.NEAREST))
    np.testing.assert_array_equal(np.asarray(Image.open(exported.out_dir / row["mask"])),
                                  expected)


def test_histogram_breaks_come_from_training_cases_only(exported):
    prep = json.loads((exported.out_dir / "preprocessing.json").read_text())
    cases = exported.cases.set_index("case_id")
    train = [c for c in cases.index if cases.loc[c, "split"] == "train"]
    assert prep["bins_from"]["cases"] == sorted(train)
    pooled = np.concatenate([np.rint(read_nii(cases.loc[c, "volume_path"])[:, :, ::2]).ravel()
                             for c in train])
    np.testing.assert_array_equal(prep["bins"], freqhist_bins(pooled, prep["n_bins"]))
    assert prep["size"] == 48 and prep["every"] == 2 and prep["orientation"] == "PLS"
    assert prep["windows"] == [[150.0, 30.0], [400.0, 50.0]]
    assert len(prep["source_fingerprint"]) == 64


def test_output_is_byte_identical_whatever_the_worker_count(exported, demo_dir, tmp_path):
    again = export_slices(demo_dir, tmp_path / "two", workers=2, **ARGS)
    assert tree_digest(again.out_dir) == tree_digest(exported.out_dir)


def test_changed_arguments_are_refused(exported, demo_dir):
    with pytest.raises(LiverTumorError, match="size differ"):
        export_slices(demo_dir, exported.out_dir, **{**ARGS, "size": 64})


def test_a_killed_export_resumes_to_the_same_result(exported, demo_dir, tmp_path):
    out = tmp_path / "killed"
    code = ("import sys; from livertumor.export import export_slices; "
            f"export_slices(sys.argv[1], sys.argv[2], workers=1, **{ARGS!r})")
    proc = subprocess.Popen([sys.executable, "-c", code, str(demo_dir), str(out)])
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / ".export").glob("case-*.json")):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.csv").exists()  # final files only at the very end
    done_before = len(list((out / ".export").glob("case-*.json")))
    assert 1 <= done_before < 6
    result = export_slices(demo_dir, out, workers=1, **ARGS)
    assert len(result.exported_now) == 6 - done_before
    assert tree_digest(out) == tree_digest(exported.out_dir)


def broken_corpus(root):
    """Good cases plus one of each kind of bad input."""
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
    write_case(root, 6, nan_ct, mask)                                       # NaN voxel
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 2), np.int16), np.eye(4)),
             root / "volume_pt1" / "volume-7.nii")
    write_case(root, 7, None, mask[:8, :8, :4])                             # 4-D volume
    write_case(root, 8, ct, None)                                           # no mask
    return ct, mask


def test_bad_cases_are_listed_and_the_others_go_through(tmp_path):
    broken_corpus(tmp_path / "data")
    result = export_slices(tmp_path / "data", tmp_path / "out", every=1, size=32,
                           test_fraction=0.5, seed=0, workers=2, progress=False)
    cases = result.cases.set_index("case_id")
    assert list(cases.loc[[0, 1], "status"]) == ["ok", "ok"]
    expect = {2: "truncated", 3: "not a readable NIfTI", 4: "shape", 5: "unexpected label",
              6: "NaN", 7: "not 3-D", 8: "no segmentation-8.nii"}
    for cid, words in expect.items():
        assert cases.loc[cid, "status"] in ("bad", "unpaired"), cid
        assert words in cases.loc[cid, "reason"], (cid, cases.loc[cid, "reason"])
    assert set(result.manifest["case_id"]) == {0, 1}
    assert "case 5 (bad)" in result.summary_text()


def test_a_mask_stored_in_another_orientation_exports_like_an_aligned_one(tmp_path):
    ct, mask = anatomy((32, 28, 8))
    write_case(tmp_path / "a", 0, ct, mask, axcodes=("L", "P", "S"))
    write_case(tmp_path / "a", 1, ct, mask, axcodes=("L", "P", "S"))
    write_case(tmp_path / "b", 0, ct, mask, axcodes=("L", "P", "S"), mask_axcodes=("S", "A", "R"))
    write_case(tmp_path / "b", 1, ct, mask, axcodes=("L", "P", "S"))
    args = dict(every=1, size=32, test_fraction=0.5, seed=0, workers=1, progress=False)
    a = export_slices(tmp_path / "a", tmp_path / "out_a", **args)
    b = export_slices(tmp_path / "b", tmp_path / "out_b", **args)
    digest_a, digest_b = tree_digest(a.out_dir), tree_digest(b.out_dir)
    same = {k for k in digest_a if k.endswith((".png", ".jpg"))}
    assert same and all(digest_a[k] == digest_b[k] for k in same)
    pd.testing.assert_frame_equal(a.manifest, b.manifest)


def test_cli_exit_status(tmp_path):
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
