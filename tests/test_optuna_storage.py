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


def test_importance_reads_the_studys_own_database_and_leaves_it_as_it_was(recorded):
    from results.importance import optuna_study
    from results.study_dir import read_study

    _, summary, study = recorded
    db = Path(summary.study_uri) / "optuna.db"
    before = db.read_bytes()
    table_says_all_scored_the_same = read_study(summary.study_uri)
    table_says_all_scored_the_same.trials["best_val_psnr"] = 20.0
    replay, count, source = optuna_study(table_says_all_scored_the_same)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert source == "optuna.db" and count == len(complete) == len(replay.trials) >= 1
    assert [t.value for t in replay.trials] == pytest.approx([t.value for t in complete]) and 20.0 not in [t.value for t in replay.trials]
    assert [t.params for t in replay.trials] == [t.params for t in complete]
    assert [t.distributions for t in replay.trials] == [t.distributions for t in complete]
    assert complete[0].distributions["lr"].log
    assert db.read_bytes() == before


def test_a_damaged_optuna_db_is_a_one_line_error_and_a_study_without_one_reads_its_trial_table(tmp_path):
    from denoise_core.errors import InputError
    from results.importance import optuna_study, param_importance
    from results.study_dir import read_study
    from test_search_report import write_study

    study = read_study(write_study(tmp_path))
    assert optuna_study(study)[1:] == (4, "trials.csv")  # a, d, f and h
    (study.path / "optuna.db").write_bytes(b"not a database, though named like one\n" * 100)
    with pytest.raises(InputError, match="optuna.db is not a readable Optuna database") as error:
        param_importance(study)
    assert "\n" not in str(error.value)


def finished_metrics(epoch: int, best: float) -> dict:
    return {"epoch": epoch, "epochs_planned": epoch, "val_psnr": best, "best_val_psnr": best, "best_epoch": epoch}


def test_the_searcher_resumes_from_plain_json_and_fails_the_trial_asked_after_its_last_save(tmp_path):
    from study.searcher import RecordingSearch

    config = build_config("smoke", assignments=[("name", "unit"), ("storage", str(tmp_path))])
    url = storage_url(config)
    searcher = RecordingSearch(config, url)
    searcher.suggest("a"), searcher.suggest("b")
    searcher.on_trial_result("a", {"epoch": 1, "val_psnr": 20.0})
    searcher.on_trial_complete("b", finished_metrics(3, 22.0))
    state = tmp_path / "searcher-state.json"
    searcher.save(str(state))
    searcher.suggest("c")  # asked after the last save: a hard stop now loses it
    assert json.loads(state.read_text()) == {"trials": {"a": 0, "b": 1}, "told": ["b"], "recorded": {"a": 1, "b": 3}}
    resumed = RecordingSearch(config, url)
    resumed.restore(str(state))
    resumed.on_trial_result("a", {"epoch": 1, "val_psnr": 99.0})  # recorded before the stop: not again
    resumed.on_trial_result("a", {"epoch": 2, "val_psnr": 20.5})
    resumed.on_trial_complete("a", finished_metrics(3, 21.0))
    resumed.on_trial_complete("b", finished_metrics(3, 5.0))  # told before the stop: stays as it was
    trials = optuna.load_study(study_name="unit", storage=url).trials
    assert [(t.user_attrs["tune_trial_id"], t.state.name, t.value) for t in trials] == [("a", "COMPLETE", 21.0), ("b", "COMPLETE", 22.0),
                                                                                         ("c", "FAIL", None)]
    assert trials[0].intermediate_values == {1: 20.0, 2: 20.5, 3: 21.0} and trials[0].user_attrs["status"] == "completed"


def test_seeded_searchers_ask_for_the_same_trials(tmp_path):
    from study.searcher import RecordingSearch

    asked = []
    for folder in ("one", "two"):
        config = build_config("smoke", assignments=[("name", "seeded"), ("storage", str(tmp_path / folder)), ("seed", 5)])
        searcher = RecordingSearch(config, storage_url(config))
        asked.append([searcher.suggest(f"t{i}") for i in range(4)])
    assert asked[0] == asked[1] and len({json.dumps(params, sort_keys=True) for params in asked[0]}) == 4


def test_a_searcher_state_that_is_not_its_json_is_refused_in_one_line_before_it_is_read_as_code(tmp_path):
    import pickle

    from study.searcher import read_state

    crafted = tmp_path / "searcher-state-x.json"
    crafted.write_bytes(pickle.dumps({"trials": {}}))
    with pytest.raises(StudyConfigError, match="is damaged: it is not the searcher state a study writes"):
        read_state(str(crafted))
    config = build_config("smoke", assignments=[("name", "old"), ("storage", str(tmp_path))])
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "study.yaml").write_text("name: old\n")
    (tmp_path / "old" / "searcher-state-2026-11-01_10-00-00.pkl").write_bytes(pickle.dumps({"trials": {}}))
    with pytest.raises(StudyConfigError, match="begun by an older facestudy.*cannot be resumed") as error:
        preflight(config, resume=True)
    assert "\n" not in str(error.value)
