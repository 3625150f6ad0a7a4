"""Parameter overrides of a run (``run --set KEY=VALUE``): parsing, checking against the
notebooks' declared parameters, and where they apply. No notebook is executed."""

from __future__ import annotations

from pathlib import Path

import pytest

from livertumor.errors import LiverTumorError
from livertumor.series.overrides import (
    check_overrides,
    overrides_for,
    parse_assignment,
    parse_value,
    split_key,
)
from livertumor.series.runner import (
    _declared_parameters,
    _notebook_parameters,
    load_profile,
    run_series,
)

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def full():
    """The full profile's entries and the parameters their notebooks declare."""
    profile = load_profile("full", PROJECT / "notebooks" / "params")
    return profile["notebooks"], _declared_parameters(profile["notebooks"], PROJECT, "full")


def entry(entries, name):
    return next(e for e in entries if e["name"] == name)


@pytest.mark.parametrize(("text", "value"), [
    ("64", 64), ("0.5", 0.5), ("1e-4", 1e-4), ("-2.5E3", -2500.0), ("true", True),
    ("false", False), ("unet", "unet"), ("mixed_float16", "mixed_float16"),
    ("validation", "validation"), ("[liver, abdomen_soft]", ["liver", "abdomen_soft"]),
    ("'64'", "64"), ("null", None), ("", None),
])
def test_values_are_read_as_yaml(text, value):
    got = parse_value(text)
    assert got == value and type(got) is type(value)


def test_a_value_that_is_not_yaml_is_refused():
    with pytest.raises(LiverTumorError, match="not a YAML value"):
        parse_value("[liver, abdomen_soft")


def test_assignments_split_into_key_and_value():
    assert parse_assignment("image_size=64") == ("image_size", 64)
    assert parse_assignment("04_training_unet.epochs=1") == ("04_training_unet.epochs", 1)
    assert parse_assignment("windows=[liver, bone]") == ("windows", ["liver", "bone"])
    assert parse_assignment("title=a=b") == ("title", "a=b")
    assert split_key("04_training_unet.epochs") == ("04_training_unet", "epochs")
    assert split_key("epochs") == (None, "epochs")


@pytest.mark.parametrize("text", ["image_size", "=64", "image size=64", "04_training.=1",
                                  "1x=2"])
def test_malformed_assignments_are_refused(text):
    with pytest.raises(LiverTumorError, match="KEY=VALUE"):
        parse_assignment(text)


def test_known_parameters_pass_the_check(full):
    entries, declared = full
    check_overrides({"image_size": 64, "size": 64, "04_training_unet.epochs": 1,
                     "04_training.base_filters": 8, "05_evaluation.batch_size": 8},
                    entries, declared, "full")


@pytest.mark.parametrize(("key", "message"), [
    ("imag_size", r"override imag_size: unknown parameter 'imag_size' \(no notebook of "
                  r"profile 'full' declares it\); did you mean image_size"),
    ("04_training_unet.size", r"override 04_training_unet\.size: unknown parameter 'size' "
                              r"\(notebook 04_training_unet does not declare it\)"),
    ("04_trainig_unet.epochs", r"'04_trainig_unet' is not a notebook of profile 'full' "
                               r"\(01_data_loading, .*04_training_unet"),
    ("seed", r"override seed: seed is set by the runner; use --seed"),
    ("04_training_unet.export_dir", r"export_dir is set by the runner; use --export-dir"),
])
def test_overrides_that_change_nothing_or_belong_to_the_runner_are_refused(full, key,
                                                                           message):
    entries, declared = full
    with pytest.raises(LiverTumorError, match=message):
        check_overrides({"image_size": 64, key: 1}, entries, declared, "full")


def test_an_override_applies_where_the_parameter_is_declared(full):
    entries, declared = full
    overrides = {"05_evaluation.batch_size": 8, "batch_size": 4, "size": 64,
                 "04_training.epochs": 2, "04_training_unet.epochs": 1}

    def applied(name):
        return overrides_for(entry(entries, name), overrides, declared[name])

    assert applied("01_data_loading") == {}
    assert applied("03_slice_export") == {"size": 64}
    assert applied("04_training_unet") == {"batch_size": 4, "epochs": 1}  # its own wins
    assert applied("04_training_resnet50_unet") == {"batch_size": 4, "epochs": 2}
    assert applied("05_evaluation") == {"batch_size": 8}  # scoped wins, in any order


def test_overrides_replace_the_profile_and_the_shared_values(full):
    entries, declared = full
    unet = entry(entries, "04_training_unet")
    shared = {"export_dir": "/x", "output_dir": "/o", "seed": 0, "data_dir": "/d"}
    params = _notebook_parameters(unet, shared, declared["04_training_unet"], PROJECT,
                                  {"image_size": 64, "04_training_unet.patience": 0})
    assert params["image_size"] == 64 and params["patience"] == 0
    assert params["precision"] == "mixed_float16" and params["export_dir"] == "/x"
    assert "data_dir" not in params  # not declared by 04
    assert _notebook_parameters(unet, shared, declared["04_training_unet"], PROJECT) == {
        "export_dir": "/x", "output_dir": "/o", "seed": 0, **unet["parameters"]}


def test_an_unknown_key_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(LiverTumorError, match="imag_size"):
        run_series("full", data_dir=tmp_path / "missing", outputs_dir=tmp_path / "outputs",
                   project_dir=PROJECT, overrides={"image_size": 64, "imag_size": 64})
    assert not (tmp_path / "outputs").exists()


def test_the_run_command_takes_repeated_set_options(tmp_path, capsys):
    from livertumor.cli import build_parser, main

    args = build_parser().parse_args(["run", "--profile", "full", "--set", "image_size=64",
                                      "--set", "04_training_unet.epochs=1"])
    assert args.overrides == [("image_size", 64), ("04_training_unet.epochs", 1)]
    assert build_parser().parse_args(["run"]).overrides is None

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["run", "--set", "image_size"])
    assert exit_info.value.code == 2 and "KEY=VALUE" in capsys.readouterr().err

    status = main(["run", "--profile", "full", "--data-dir", str(tmp_path / "missing"),
                   "--project-dir", str(PROJECT), "--outputs-dir", str(tmp_path / "out"),
                   "--set", "epoch=1"])
    err = capsys.readouterr().err
    assert status == 2 and "override epoch: unknown parameter 'epoch'" in err
    assert "did you mean epochs" in err and not (tmp_path / "out").exists()


def test_common_parameters_take_the_run_s_export_folder_and_seed(tmp_path, monkeypatch):
    from livertumor.series.runner import _common_parameters

    monkeypatch.chdir(tmp_path)
    common = {"seed": 0, "export_dir": "data/processed/demo", "name": "x"}
    project = tmp_path / "project"
    assert _common_parameters(common, project, None, None) == {
        "seed": 0, "export_dir": str(project / "data/processed/demo"), "name": "x"}
    assert _common_parameters(common, project, None, 2)["export_dir"] == str(
        project / "data/processed/demo-seed2")  # an export holds one split
    mine = _common_parameters(common, project, "exp", 2)
    assert mine["seed"] == 2 and mine["export_dir"] == str(tmp_path / "exp")
