"""Sharded export: N processes fill one folder; the merge equals a single-machine export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pandas as pd
import pytest

from livertumor import LiverTumorError
from livertumor.demo_data import make_demo_dataset
from livertumor.demo_faults import write_broken_examples
from livertumor.export import (
    ShardsMissing,
    export_slices,
    merge_export,
    parse_shard,
    shard_of,
    tree_digest,
)

ARGS = dict(every=2, size=48, test_fraction=0.25, seed=3, progress=False)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, n_cases=7, seed=1, size=64, progress=False)
    write_broken_examples(root)  # a truncated volume and an unpaired mask go through the shards too
    return root


@pytest.fixture(scope="module")
def single(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "out"
    export_slices(demo_dir, out, workers=1, **ARGS)
    return out


def cli_export(demo_dir, out, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "livertumor", "export", str(demo_dir), str(out), "--every", "2",
         "--size", "48", "--test-fraction", "0.25", "--seed", "3", "--workers", "1", "--quiet",
         *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_three_shards_side_by_side_merge_to_the_single_machine_export(demo_dir, single,
                                                                      tmp_path):
    out = tmp_path / "out"
    procs = [cli_export(demo_dir, out, "--shard", f"{i}/3") for i in range(3)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n=====\n".join(outputs)
    assert sum("all shards finished" in o for o in outputs) >= 1, outputs
    assert tree_digest(out) == tree_digest(single)
    # each shard listed and exported exactly its own cases
    found = set(pd.read_csv(single / "cases.csv")["case_id"])
    for i in range(3):
        part = json.loads((out / ".export" / f"shard-{i}-of-3.json").read_text())
        assert {row["case_id"] for row in part["cases"]} == {
            c for c in found if shard_of(c, 3) == i}


def test_shards_run_one_after_another_and_the_merge_waits_for_all(demo_dir, single, tmp_path):
    out = tmp_path / "out"
    first = export_slices(demo_dir, out, workers=1, shard="2/3", **ARGS)
    assert first.shard == "2/3" and not first.merged
    assert not (out / "manifest.csv").exists()
    assert set(first.manifest["case_id"]) <= {c for c in first.cases["case_id"]}
    assert all(shard_of(c, 3) == 2 for c in first.cases["case_id"])
    with pytest.raises(ShardsMissing, match="shards 0/3, 1/3 have not finished"):
        merge_export(out)
    export_slices(demo_dir, out, workers=1, shard=(0, 3), **ARGS)
    last = export_slices(demo_dir, out, workers=1, shard="1/3", **ARGS)
    assert last.merged
    assert tree_digest(out) == tree_digest(single)
    # merging again (the CLI's --merge) rewrites the same bytes
    before = tree_digest(out)
    (out / "manifest.csv").unlink()
    done = subprocess.run([sys.executable, "-m", "livertumor", "export", "--merge", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert tree_digest(out) == before
    # a shard run again on a finished export does no work and merges the same files
    again = export_slices(demo_dir, out, workers=1, shard="0/3", **ARGS)
    assert again.exported_now == [] and again.merged and tree_digest(out) == before


def test_shard_arguments_are_checked(demo_dir, tmp_path):
    for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="I/N"):
            parse_shard(bad)
    assert parse_shard("1/4") == (1, 4)
    with pytest.raises(ValueError, match="overwrite"):
        export_slices(demo_dir, tmp_path / "o", shard="0/2", overwrite=True, **ARGS)
    with pytest.raises(LiverTumorError, match="no sharded export"):
        merge_export(tmp_path)
    # a shard with other arguments than the export in the folder is refused
    export_slices(demo_dir, tmp_path / "o", workers=1, shard="0/2", **ARGS)
    with pytest.raises(LiverTumorError, match="other arguments"):
        export_slices(demo_dir, tmp_path / "o", workers=1, shard="1/2",
                      **{**ARGS, "size": 32})
    done = subprocess.run([sys.executable, "-m", "livertumor", "export", "--merge",
                           str(tmp_path / "o")], capture_output=True, text=True)
    assert done.returncode == 2 and "1/2 have not finished" in done.stderr


def test_shard_of_is_stable_across_processes_and_balanced():
    ids = list(range(131))  # the LiTS training cases
    code = ("import json, sys; from livertumor.export import shard_of; "
            "print(json.dumps([shard_of(i, 3) for i in range(131)]))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"}, check=True)
    assert json.loads(other.stdout) == [shard_of(i, 3) for i in ids]
    sizes = Counter(shard_of(i, 3) for i in ids)
    assert set(sizes) == {0, 1, 2} and min(sizes.values()) >= 131 // 3 - 12
    assert [shard_of(i, 1) for i in ids] == [0] * 131
