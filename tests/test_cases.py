"""find_cases and the `cases` CLI: pairing, header checks, bad and unpaired cases."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd

from livertumor import find_cases
from livertumor.data.cases import CASE_COLUMNS
from livertumor.data.volumes import canonical_affine_for, reorient_image

from conftest import SPACING, anatomy, write_case


def build_corpus(root):
    """Six cases: two good (one with the mask stored in another orientation), one mask on a
    shifted grid, one truncated volume, one volume without mask, one mask without volume,
    plus a 4-D volume and an identity-affine case (ok, with a warning)."""
    ct, mask = anatomy()
    write_case(root, 0, ct, mask, axcodes=("L", "P", "S"))
    write_case(root, 1, ct, mask, axcodes=("L", "P", "S"), mask_axcodes=("R", "A", "I"), gz=True)
    vpath, mpath = write_case(root, 2, ct, None)
    nib.save(reorient_image(mask, canonical_affine_for(SPACING, (0, 0, 0)), ("P", "L", "S")),
             root / "segmentations" / "segmentation-2.nii")
    vpath, _ = write_case(root, 3, ct, mask)
    data = vpath.read_bytes()
    vpath.write_bytes(data[: len(data) - 100])
    write_case(root, 4, ct, None)
    write_case(root, 5, None, mask)
    (root / "volume_pt2").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 2), np.int16), np.eye(4)),
             root / "volume_pt2" / "volume-6.nii")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), np.eye(4)),
             root / "segmentations" / "segmentation-6.nii")
    img = nib.Nifti1Image(ct, np.eye(4))
    nib.save(img, root / "volume_pt2" / "volume-28.nii")
    nib.save(nib.Nifti1Image(mask, np.eye(4)), root / "segmentations" / "segmentation-28.nii")
    (root / "segmentations" / "notes.txt").write_text("not an image")
    (root / "volume_pt2" / ".volume-9.nii.part").write_bytes(b"half")


def test_find_cases_lists_every_case_with_status_and_reason(tmp_path):
    build_corpus(tmp_path)
    t = find_cases(tmp_path).set_index("case_id")
    assert list(find_cases(tmp_path).columns) == CASE_COLUMNS
    assert sorted(t.index) == [0, 1, 2, 3, 4, 5, 6, 28]
    assert t.loc[0, "status"] == "ok" and t.loc[0, "reason"] == ""
    assert t.loc[1, "status"] == "ok", t.loc[1, "reason"]
    assert (t.loc[1, "volume_axcodes"], t.loc[1, "mask_axcodes"]) == ("LPS", "RAI")
    assert t.loc[2, "status"] == "bad"
    assert "segmentation-2.nii" in t.loc[2, "reason"] and "origin" in t.loc[2, "reason"]
    assert t.loc[3, "status"] == "bad" and "truncated" in t.loc[3, "reason"]
    assert "volume-3.nii" in t.loc[3, "reason"]
    assert t.loc[4, "status"] == "unpaired" and "segmentation-4.nii" in t.loc[4, "reason"]
    assert t.loc[5, "status"] == "unpaired" and "volume-5.nii" in t.loc[5, "reason"]
    assert t.loc[6, "status"] == "bad" and "not 3-D" in t.loc[6, "reason"]
    assert t.loc[28, "status"] == "ok" and "identity affine" in t.loc[28, "warnings"]
    assert t.loc[0, "warnings"] == ""


def test_find_cases_reports_canonical_shape_and_spacing(tmp_path):
    ct, mask = anatomy()
    write_case(tmp_path, 7, ct, mask, axcodes=("S", "R", "A"))
    row = find_cases(tmp_path).iloc[0]
    assert (row["rows"], row["columns"], row["slices"]) == ct.shape
    np.testing.assert_allclose(
        [row["spacing_row_mm"], row["spacing_col_mm"], row["slice_thickness_mm"]], SPACING,
        rtol=1e-6)


def test_duplicate_case_ids_are_bad(tmp_path):
    ct, mask = anatomy()
    write_case(tmp_path, 3, ct, mask)
    write_case(tmp_path, 3, ct, None, gz=True)
    row = find_cases(tmp_path).iloc[0]
    assert row["status"] == "bad" and "found 2 times" in row["reason"]


def test_missing_data_dir_is_a_named_error(tmp_path):
    import pytest

    from livertumor import LiverTumorError

    with pytest.raises(LiverTumorError, match="data directory not found"):
        find_cases(tmp_path / "nope")


def test_cases_cli_prints_the_table_and_writes_csv(tmp_path):
    build_corpus(tmp_path / "data")
    out = tmp_path / "cases.csv"
    res = subprocess.run([sys.executable, "-m", "livertumor", "cases", str(tmp_path / "data"),
                          "--csv", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "8 cases: 3 ok, 3 bad, 2 unpaired; 1 with header warnings" in res.stdout
    assert "truncated" in res.stdout
    table = pd.read_csv(out)
    assert len(table) == 8 and set(table["status"]) == {"ok", "bad", "unpaired"}


def test_cases_cli_on_missing_dir_fails_with_a_message(tmp_path):
    res = subprocess.run([sys.executable, "-m", "livertumor", "cases", str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert "data directory not found" in res.stderr and "Traceback" not in res.stderr
