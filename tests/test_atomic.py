"""atomic: complete files or none, temporary names, formats picked from the suffix."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest

from livertumor.atomic import atomic_path, temporary_name, write_json, write_text


def test_temporary_names_are_hidden_per_process_and_keep_the_format_suffix(tmp_path):
    pid = os.getpid()
    assert temporary_name(tmp_path / "a.csv") == tmp_path / f".a.csv.{pid}.part"
    assert (temporary_name(tmp_path / "x.nii.gz", keep_suffix=True)
            == tmp_path / f".x.{pid}.part.nii.gz")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise RuntimeError("killed mid-way")
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_writers_that_pick_the_format_from_the_suffix_get_it(tmp_path):
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    path = tmp_path / "sub" / "v.nii.gz"
    with atomic_path(path, keep_suffix=True, durable=True) as tmp:
        nib.save(img, tmp)
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # gzip, as the final name asks
    np.testing.assert_array_equal(np.asarray(nib.load(path).dataobj), img.dataobj)
    assert write_text(tmp_path / "t.txt", "é\n").read_bytes() == "é\n".encode()
