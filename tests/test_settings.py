"""The one configuration pipeline: YAML 1.2 numbers, dotted overrides, deep merges, typed building, resume rules."""

import pytest
import yaml

from denoise_core.settings import (SettingsError, apply_assignments, build, differences, load_yaml, merge, override, parse_assignment,
                                   resume_changes, to_dict)
from denoise_core.fit import TrainConfig
from denoise_core.train import main as train_main, resolve_config
from results.options import ReportOptions
from study.config import StudyConfig, StudyConfigError, build_config, resume_config, to_yaml


def test_yaml_numbers_follow_yaml_1_2():
    values = load_yaml("lr: 1e-3\nbig: 1E5\nhalf: .5\nwhole: 3\nnoise: sp:0.05-0.5\nnothing: null\nflag: true", "test")
    assert values == {"lr": 0.001, "big": 100000.0, "half": 0.5, "whole": 3, "noise": "sp:0.05-0.5", "nothing": None, "flag": True}
    assert isinstance(values["whole"], int) and isinstance(values["lr"], float)
    assert yaml.safe_load("lr: 1e-3")["lr"] == "1e-3"  # what PyYAML alone reads


def test_set_reads_yaml_values_and_dotted_keys():
    assert parse_assignment("train.lr=1e-3") == ("train.lr", 0.001)
    assert parse_assignment("search.lr={loguniform: [1e-4, 1e-2]}") == ("search.lr", {"loguniform": [0.0001, 0.01]})
    for bad in ("train.lr", "=3", "train..lr=1"):
        with pytest.raises(SettingsError, match="write KEY=VALUE"):
            parse_assignment(bad)


def test_dotted_assignments_reach_any_depth_and_merges_are_deep():
    base = {"train": {"lr": 0.1, "model": {"skip": False, "dropout": 0.1}}, "search": {"lr": {"choice": [1]}}}
    assert apply_assignments(base, [("train.model.dropout", 0.3)]) == {"train": {"lr": 0.1, "model": {"skip": False, "dropout": 0.3}},
                                                                       "search": {"lr": {"choice": [1]}}}
    merged = merge(base, {"train": {"model": {"skip": True}}, "search": {"loss": {"choice": ["mse"]}}}, whole=("search",))
    assert merged["train"] == {"lr": 0.1, "model": {"skip": True, "dropout": 0.1}}
    assert merged["search"] == {"loss": {"choice": ["mse"]}}  # a file's search space replaces the preset's
    with pytest.raises(SettingsError, match="'lr' is a value"):
        apply_assignments(base, [("train.lr.x", 1)])


def test_building_checks_every_type_with_the_dotted_path():
    assert build(TrainConfig, {"lr": 1, "model": {"dropout": 0}}).lr == 1.0
    cases = [({"lr": "abc"}, "lr: expected a number, got 'abc'"), ({"epochs": 2.5}, "epochs: expected a whole number"),
             ({"model": {"skip": "yes"}}, "model.skip: expected true or false"), ({"model": 5}, "model: expected a mapping"),
             ({"noise": 5}, "noise: expected text"), ({"model": {"widht": 3}}, r"unknown setting\(s\) model.widht"),
             ({"loss": "huber"}, "loss must be one of")]
    for values, message in cases:
        with pytest.raises(SettingsError, match=message) as error:
            build(TrainConfig, values)
        assert "\n" not in str(error.value)


def test_override_is_the_one_way_to_change_a_config():
    tuned = override(TrainConfig(), {"lr": 1e-3, "model.bottleneck_size": 64})
    assert tuned.lr == 1e-3 and tuned.model.bottleneck_size == 64 and tuned.epochs == TrainConfig().epochs
    assert differences(to_dict(TrainConfig()), to_dict(tuned)) == ["lr", "model.bottleneck_size"]


def test_study_config_takes_yaml_1_2_numbers_in_files_and_set(tmp_path):
    config_file = tmp_path / "study.yaml"
    config_file.write_text("train:\n  lr: 1e-3\n  model: {dropout: 5e-2}\nsearch:\n  weight_decay: {loguniform: [1e-6, 1e-3]}\n")
    config = build_config("smoke", str(config_file), [parse_assignment("train.weight_decay=1e-5")])
    assert config.train.lr == 0.001 and config.train.model.dropout == 0.05 and config.train.weight_decay == 1e-5
    assert config.search == {"weight_decay": {"loguniform": [1e-6, 1e-3]}}
    assert config.train.model.base_width == 8  # the preset's model settings are kept under the file's


@pytest.mark.parametrize("text, message", [("- 1\n- 2\n", "must hold a mapping"), ("a: [1,\n", "not valid YAML at line"),
                                           ("train: {lr: abc}\n", "train.lr: expected a number"), ("train: {model: 5}\n", "train.model: expected a mapping")])
def test_bad_config_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(StudyConfigError, match=message) as error:
        build_config("smoke", str(path))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("preset", ["smoke", "local", "workstation", "full"])
def test_resume_rebuilds_exactly_the_saved_config_of_every_preset(preset):
    config = build_config(preset, assignments=[("name", "x"), ("train.epochs", 7)])
    resumed = resume_config(to_yaml(config), assignments=[("name", "x")])
    assert resumed == config
    assert resumed.train.train_size == config.train.train_size


def test_resuming_a_study_saved_before_the_recipe_defaults_keeps_what_its_trials_ran():
    saved = yaml.safe_load(to_yaml(build_config("smoke", assignments=[("name", "x")])))
    for key in ("loss", "lr", "batch_size"):
        del saved["train"][key]
    del saved["train"]["model"]["gate"]
    resumed = resume_config(yaml.safe_dump(saved))
    assert (resumed.train.loss, resumed.train.lr, resumed.train.batch_size, resumed.train.model.gate) == ("mse", 2e-3, 128, False)
    assert resumed.train.model.base_width == 8  # what it saved is kept


def test_resume_may_change_only_the_documented_settings():
    config = build_config("full", assignments=[("name", "x")])
    resumed = resume_config(to_yaml(config), assignments=[("holdout_conditions", ["sp:0.5"]), ("holdout_faces", 100), ("report", False)])
    assert resumed.holdout_conditions == ("sp:0.5",) and resumed.holdout_faces == 100 and resumed.train == config.train
    with pytest.raises(StudyConfigError, match=r"--resume cannot change num_samples, train.lr .*only data, holdout_conditions"):
        resume_config(to_yaml(config), assignments=[("train.lr", 0.5), ("num_samples", 3)])
    with pytest.raises(StudyConfigError, match="hold-out condition 'sp:x'"):
        resume_config(to_yaml(config), assignments=[("holdout_conditions", ["sp:x"])])


def test_train_cli_resume_keeps_the_saved_run_and_refuses_other_changes():
    saved = to_dict(override(TrainConfig(), {"epochs": 12, "lr": 0.01}))
    assert resolve_config({}, [], saved=saved).epochs == 12  # not TrainConfig's default of 30
    assert resolve_config({}, [("epochs", 20)], saved=saved).epochs == 20
    with pytest.raises(SettingsError, match="--resume cannot change lr"):
        resolve_config({}, [("lr", 0.5)], saved=saved)
    with pytest.raises(SettingsError, match="--resume cannot change model.dropout"):
        resolve_config({"model": {"dropout": 0.3}}, [], saved=saved)


def test_train_cli_generates_a_flag_for_every_setting(capsys):
    with pytest.raises(SystemExit):
        train_main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--min-delta", "--amp", "--model-batchnorm", "--model-upsample", "--model-mirror", "--init", "--set"):
        assert flag in text


def test_the_study_takes_the_train_clis_flags_for_its_training_settings():
    from study.run import parse_args, resolve

    argv = ["--preset", "smoke", "--lr", "1e-3", "--model-dropout", "0.05", "--epochs", "2", "--no-model-batchnorm", "--train-seed", "7",
            "--seed", "3", "--holdout-conditions", "sp:0.5,gauss:25", "--set", "train.weight_decay=0"]
    config = resolve(*parse_args(argv))
    assert (config.train.lr, config.train.model.dropout, config.train.epochs, config.train.model.batchnorm) == (0.001, 0.05, 2, False)
    assert (config.train.seed, config.seed, config.holdout_conditions, config.train.weight_decay) == (7, 3, ("sp:0.5", "gauss:25"), 0.0)
    assert resolve(*parse_args([*argv, "--set", "train.lr=0.004"])).train.lr == 0.004  # --set comes after the flags


def test_one_resumable_list_per_kind_of_run_is_what_resume_checks():
    saved = to_dict(TrainConfig())
    for name in TrainConfig.RESUMABLE:
        assert resume_changes(TrainConfig, saved, {**saved, name: "changed"}) == []
    assert resume_changes(TrainConfig, saved, {**saved, "lr": 1.0, "model": {**saved["model"], "skip": not saved["model"]["skip"]}}) == ["lr", "model.skip"]
    study = to_dict(build_config("smoke"))
    assert resume_changes(StudyConfig, study, {**study, "report_options": {"faces": 0}, "num_samples": 99}) == ["num_samples"]


def test_report_options_are_checked_once_by_their_own_schema():
    assert build(ReportOptions, {"faces": 0, "analysis_faces": 0}) == ReportOptions(faces=None, analysis_faces=None)
    for values, message in [({"faces": -1}, "faces must be >= 0"), ({"top": 0}, "top must be >= 1"), ({"colour": 1}, "unknown setting"),
                            ({"bm3d_conditions": ["sp:x"]}, "sp:x")]:
        with pytest.raises(SettingsError, match=message):
            build(ReportOptions, values)
        with pytest.raises(StudyConfigError, match="report_options"):
            build_config("smoke", assignments=[("report_options", values)])


def test_the_results_clis_take_their_options_through_the_pipeline(tmp_path):
    from results.compare import COMPARED, parse_args as compare_args
    from results.report import options_from, parse_args as report_args

    options = options_from(*report_args(["--overwrite", "--no-cache", "s", "--faces", "0", "--no-analysis", "--bm3d-conditions",
                                         "gauss:25, sp:0.1", "--set", "tune_faces=8"]))  # a switch before the study directory takes no value
    assert options == ReportOptions(faces=None, analysis=False, cache=False, bm3d_conditions=("gauss:25", "sp:0.1"), overwrite=True, tune_faces=8)
    (tmp_path / "options.yaml").write_text("top: 5\nfaces: 40\n")
    args, flags = compare_args(["a", "b", "--out", "o", "--config", str(tmp_path / "options.yaml"), "--faces", "20"])
    assert options_from(args, flags, COMPARED) == ReportOptions(top=5, faces=20)
    assert options_from(*compare_args(["a", "--out", "o"]), COMPARED).top == 1
