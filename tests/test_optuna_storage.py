"""The study's Optuna study in its database: what optuna-dashboard and optuna.load_study see."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from denoise_core.errors import OutputExists
from study.config import StudyConfigError, build_config
from study.optuna_db import check_new, storage_url
from study.study import preflight, run_study
from test_study import run_cli, smoke

optuna = pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def recorded(study_env):
    config = smoke(study_env, "recorded", num_samples=4, max_concurrent=2, train__epochs=4, grace_period=1, reduction_factor=2)
    summary = run_study(config)
    study_dir = Path(summary.study_uri)
    return config, summary, optuna.load_study(study_name=config.name, storage=f"sqlite:///{study_dir}/optuna.db")


def epochs_of(study_dir: Path, trial_id: str) -> list[dict]:
    return [json.loads(line) for line in (study_dir / f"trial_{trial_id}" / "result.json").read_text().splitlines()]


def test_every_trial_is_in_the_database_with_the_state_that_says_what_happened(recorded):
    config, summary, study = recorded
    trials = summary.trials.set_index("trial_id")
    assert len(study.trials) == config.num_samples == len(trials)
    assert {t.user_attrs["tune_trial_id"] for t in study.trials} == set(trials.index)
    expected = {"completed": "COMPLETE", "stopped by ASHA": "PRUNED"}
    for trial in study.trials:
        row = trials.loc[trial.user_attrs["tune_trial_id"]]
        assert trial.state.name == expected[row["status"]]
        assert trial.user_attrs["status"] == row["status"]
        assert trial.user_attrs["epochs"] == row["epochs_run"]
        assert trial.user_attrs["best_val_psnr"] == pytest.approx(row["best_val_psnr"])
        for name, value in trial.params.items():
            column = row[f"param_{name}"]
            assert value == pytest.approx(column) if isinstance(value, float) else str(value) == str(column)
        if trial.state.name == "COMPLETE":
            assert trial.value == pytest.approx(row["best_val_psnr"])
    assert {"COMPLETE", "PRUNED"} == {t.state.name for t in study.trials}, "ASHA should have stopped a trial with these settings"
    assert study.best_trial.user_attrs["tune_trial_id"] in trials.index
    assert study.metric_names == [config.metric]


def test_each_epoch_is_one_intermediate_value_and_each_grid_an_artifact(recorded):
    from optuna.artifacts import get_all_artifact_meta

    _, summary, study = recorded
    study_dir = Path(summary.study_uri)
    for trial in study.trials:
        epochs = epochs_of(study_dir, trial.user_attrs["tune_trial_id"])
        assert trial.intermediate_values == pytest.approx({e["epoch"]: e["val_psnr"] for e in epochs})
        grids = get_all_artifact_meta(trial, storage=study._storage)
        assert sorted(meta.filename for meta in grids) == [f"grid-epoch-{e['epoch']:03d}.png" for e in epochs]
        for meta in grids:
            png = (study_dir / "optuna-artifacts" / meta.artifact_id).read_bytes()
            assert png.startswith(b"\x89PNG") and meta.mimetype == "image/png"


def test_the_best_models_holdout_scores_are_study_attributes(recorded):
    _, summary, study = recorded
    holdout = pd.read_csv(Path(summary.study_uri) / "best" / "holdout.csv")
    recorded_scores = study.user_attrs["best_holdout"]
    assert list(recorded_scores) == list(holdout["condition"])
    for row in holdout.itertuples():
        assert recorded_scores[row.condition]["psnr"] == pytest.approx(row.psnr)
    assert study.user_attrs["best_tune_trial_id"] == summary.best_trial
    assert study.trials[study.user_attrs["best_trial_number"]].user_attrs["tune_trial_id"] == summary.best_trial


def test_a_diverged_trial_is_a_failed_optuna_trial(study_env):
    config = smoke(study_env, "diverged-db", num_samples=1, search={}, train__lr=1e30, train__epochs=2, train__model__base_width=4,
                   train__model__batchnorm=False, train__model__residual=True)
    summary = run_study(config)
    trial, = optuna.load_study(study_name=config.name, storage=f"sqlite:///{summary.study_uri}/optuna.db").trials
    assert trial.state.name == "FAIL" and trial.user_attrs["status"].startswith("failed: ")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("command", ["optuna-dashboard", "study.dashboard"])
def test_optuna_dashboard_serves_the_study_over_http(recorded, command):
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is the [dashboard] extra: pip install -e '.[dashboard]'")
    config, summary, study = recorded
    port = free_port()
    study_dir = Path(summary.study_uri)
    if command == "optuna-dashboard":
        argv = [str(Path(sys.executable).parent / "optuna-dashboard"), "--quiet", "--artifact-dir", str(study_dir / "optuna-artifacts"),
                f"sqlite:///{study_dir}/optuna.db"]
    else:
        argv = [sys.executable, "-m", "study.dashboard", str(study_dir)]
    server = subprocess.Popen([*argv, "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = get_json(f"http://127.0.0.1:{port}/api/studies")
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read() if server.poll() is not None else "no answer"
                time.sleep(0.3)
        listed, = [s for s in studies["study_summaries"] if s["study_name"] == config.name]
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{listed['study_id']}")
        assert len(detail["trials"]) == config.num_samples
        assert sorted(t["state"] for t in detail["trials"]) == sorted(t.state.name.capitalize() for t in study.trials)
        assert detail["user_attrs"] and {"key": "best_holdout"} in [{"key": a["key"]} for a in detail["user_attrs"]]
        first = detail["trials"][0]
        assert [v["step"] for v in first["intermediate_values"]] == sorted(study.trials[first["number"]].intermediate_values)
        assert {a["key"] for a in first["user_attrs"]} >= {"status", "best_val_psnr", "settings", "tune_trial_id"}
        artifact = first["artifacts"][0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/artifacts/{listed['study_id']}/{first['trial_id']}/{artifact['artifact_id']}",
                                    timeout=10) as response:
            assert response.read().startswith(b"\x89PNG")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_new_study_never_joins_an_optuna_study_of_the_same_name(recorded, tmp_path):
    config, summary, _ = recorded
    url = f"sqlite:///{summary.study_uri}/optuna.db"
    with pytest.raises(OutputExists, match="already holds a study named 'recorded'"):
        check_new(url, config.name)
    other = build_config("smoke", assignments=[("name", "recorded"), ("storage", str(tmp_path)), ("optuna_storage", url),
                                               ("data", config.data)])
    with pytest.raises(OutputExists, match="already holds"):
        preflight(other)
    assert not (tmp_path / "recorded").exists()


@pytest.mark.parametrize("args, message", [
    (["--storage", "s3://bucket/studies"], "pass --optuna-storage URL"),
    (["--optuna-storage", "optuna.db"], "optuna_storage must be a database URL"),
    (["--optuna-storage", "postgresql://optuna@127.0.0.1:1/optuna"], "optuna_storage postgresql://optuna@127.0.0.1:1/optuna"),
    (["--optuna-storage", "nosuchdb://x/y"], "cannot be opened"),
])
def test_a_bad_optuna_storage_is_a_one_line_error_before_ray_starts(study_env, tmp_path, args, message):
    result = run_cli("--preset", "smoke", "--name", "db", "--storage", tmp_path, "--data", study_env["data"], *args)
    assert result.returncode == 2, result.stderr[-800:]
    assert message in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
    assert "Ray" not in result.stdout + result.stderr


def test_the_default_database_is_sqlite_in_the_study_directory(tmp_path):
    config = build_config("smoke", assignments=[("name", "x"), ("storage", str(tmp_path))])
    assert storage_url(config) == f"sqlite:///{tmp_path.resolve()}/x/optuna.db"
    with pytest.raises(StudyConfigError, match="--optuna-storage"):
        storage_url(build_config("smoke", assignments=[("storage", "s3://bucket/studies")]))


def test_a_study_started_before_studies_kept_a_database_is_exported_without_one(tmp_path):
    from study.optuna_db import has_study, record_best

    url = f"sqlite:///{tmp_path}/old/optuna.db"
    record_best(url, "old", "abc", pd.DataFrame({"condition": ["sp:0.5"], "psnr": [30.0], "ssim": [0.9]}))
    assert not has_study(url, "old") and not (tmp_path / "old").exists()
