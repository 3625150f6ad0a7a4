"""Sharded export: N processes fill one folder; the merge equals a single-machine export."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from livertumor import LiverTumorError, find_cases
from livertumor.demo.faults import write_broken_examples
from livertumor.demo.generator import make_demo_dataset
from livertumor.export import export_slices, merge_export, parse_shard, shard_plan, tree_digest
from livertumor.export.shards import ShardsMissing

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
    plan = shard_plan(find_cases(demo_dir), 3)
    assert set(plan) == set(pd.read_csv(single / "cases.csv")["case_id"])
    for i in range(3):
        part = json.loads((out / ".export" / f"shard-{i}-of-3.json").read_text())
        assert {row["case_id"] for row in part["cases"]} == {c for c, s in plan.items() if s == i}


def test_shards_run_one_after_another_and_the_merge_waits_for_all(demo_dir, single, tmp_path):
    out = tmp_path / "out"
    first = export_slices(demo_dir, out, workers=1, shard="2/3", **ARGS)
    assert first.shard == "2/3" and not first.merged
    assert not (out / "manifest.csv").exists()
    assert set(first.manifest["case_id"]) <= {c for c in first.cases["case_id"]}
    plan = shard_plan(find_cases(demo_dir), 3)
    assert set(first.cases["case_id"]) == {c for c, s in plan.items() if s == 2}
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


def test_shard_plan_is_the_same_in_every_process_and_balanced_by_voxels():
    rng = np.random.default_rng(0)
    cases = pd.DataFrame({"case_id": np.arange(131), "rows": 512, "columns": 512,
                          "slices": rng.integers(42, 988, 131)})  # LiTS: 42-987 slices
    cases.loc[[5, 17], "slices"] = np.nan  # unreadable headers weigh nothing
    plan = shard_plan(cases, 3)
    code = ("import io, json, sys, pandas as pd; from livertumor.export import shard_plan; "
            "cases = pd.read_json(io.StringIO(sys.stdin.read())); "
            "print(json.dumps(sorted(shard_plan(cases, 3).items())))")
    other = subprocess.run([sys.executable, "-c", code], input=cases.to_json(),
                           capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert [tuple(x) for x in json.loads(other.stdout)] == sorted(plan.items())
    voxels = cases["rows"] * cases["columns"] * cases["slices"].fillna(0)
    load = [voxels[cases["case_id"].map(plan) == i].sum() for i in range(3)]
    assert set(plan) == set(range(131)) and set(plan.values()) == {0, 1, 2}
    assert max(load) - min(load) <= voxels.max()  # within one case of even
    assert set(shard_plan(cases, 1).values()) == {0}
    # the plan does not depend on the table's row order
    assert shard_plan(cases.sample(frac=1, random_state=1), 3) == plan


def _write_many(path):
    from livertumor.atomic import write_bytes

    for _ in range(300):
        write_bytes(path, b"same bytes from every writer\n")


def test_processes_writing_the_same_file_at_once_do_not_trip_over_each_other(tmp_path):
    # shards write settings.json and the surveys of cases they both check
    import multiprocessing

    path = tmp_path / "settings.json"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(path,)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    assert path.read_bytes() == b"same bytes from every writer\n"
    assert not list(tmp_path.glob(".*.part"))
