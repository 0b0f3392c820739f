"""Studies against a real PostgreSQL server (the cluster's ``--optuna-storage postgresql:///optuna``), read back with Optuna's API.

One server (``postgres_server`` in conftest) serves the whole module; each study is the smoke preset's tiny one.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from denoise_core.errors import OutputExists
from study.study import preflight, run_study
from conftest import free_port
from test_optuna_storage import get_json
from test_study import result_lines, smoke

optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.slow  # five Ray studies against a server: minutes on 2 cores; CI runs them in its slow step
STATES = {"completed": "COMPLETE", "stopped by ASHA": "PRUNED"}


@pytest.fixture(scope="module")
def first_study(postgres_server, study_env):
    """A smoke study whose ASHA stops some trials, with its Optuna study on the server."""
    config = smoke(study_env, "pg-first", optuna_storage=postgres_server.url(), num_samples=4, max_concurrent=2, train__epochs=3,
                   train__train_size=256, grace_period=1, reduction_factor=2)
    return config, run_study(config)


def load(config):
    return optuna.load_study(study_name=config.name, storage=config.optuna_storage)


def epochs_of(study_dir: Path, trial_id: str) -> dict[int, float]:
    """Each epoch's validation PSNR, as the trial reported it to Tune."""
    lines = (study_dir / f"trial_{trial_id}" / "result.json").read_text().splitlines()
    return {row["epoch"]: row["val_psnr"] for row in map(json.loads, lines)}


def assert_one_optuna_trial_per_tune_trial(config, study_dir: Path, table: pd.DataFrame) -> list:
    """Every Tune trial is exactly one Optuna trial, none lost, none twice, with its state and every epoch's value."""
    trials = table.set_index("trial_id")
    assert len(trials) == config.num_samples
    recorded = load(config).trials
    assert sorted(t.user_attrs["tune_trial_id"] for t in recorded) == sorted(trials.index)
    assert [t.number for t in recorded] == list(range(config.num_samples))
    for trial in recorded:
        row = trials.loc[trial.user_attrs["tune_trial_id"]]
        assert trial.state.name == STATES[row["status"]] and trial.user_attrs["status"] == row["status"]
        assert trial.intermediate_values == pytest.approx(epochs_of(study_dir, row.name))
        assert len(trial.intermediate_values) == row["epochs_run"]
        if trial.state.name == "COMPLETE":
            assert trial.value == pytest.approx(row["best_val_psnr"])
    return recorded


def test_a_smoke_study_writes_every_trial_with_its_state_and_intermediate_values(first_study):
    config, summary = first_study
    recorded = assert_one_optuna_trial_per_tune_trial(config, Path(summary.study_uri), summary.trials)
    assert {t.state.name for t in recorded} == {"COMPLETE", "PRUNED"}, "ASHA should have stopped a trial with these settings"
    assert load(config).user_attrs["best_tune_trial_id"] == summary.best_trial


def test_two_studies_share_one_database_under_different_names(postgres_server, study_env, first_study):
    config, _ = first_study
    before = load(config).trials
    second = smoke(study_env, "pg-second", optuna_storage=postgres_server.url(), num_samples=1, search={}, scheduler="none", train__epochs=1)
    summary = run_study(second)
    assert set(optuna.get_all_study_names(postgres_server.url())) >= {config.name, second.name}
    assert load(config).trials == before
    only, = load(second).trials
    assert only.user_attrs["tune_trial_id"] == summary.best_trial and only.state.name == "COMPLETE"
    same_name = smoke(study_env, config.name, storage=str(study_env["root"] / "elsewhere"), optuna_storage=postgres_server.url())
    with pytest.raises(OutputExists, match=f"{postgres_server.url()} already holds a study named '{config.name}'"):
        preflight(same_name)


def first_answer(server: subprocess.Popen, url: str, seconds: float = 120):
    """``url``'s JSON once ``server`` answers; the server's own error if it exits first."""
    deadline = time.monotonic() + seconds
    while server.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            return get_json(url)
        time.sleep(0.3)
    pytest.fail(server.stderr.read() if server.poll() is not None else f"no answer from {url} in {seconds:g} s")


def test_the_dashboard_reads_the_study_from_the_server(postgres_server, first_study):
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is the [dashboard] extra: pip install -e '.[dashboard]'")
    config, summary = first_study
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "study.dashboard", summary.study_uri, "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        studies = first_answer(server, f"http://127.0.0.1:{port}/api/studies")
        listed, = [s for s in studies["study_summaries"] if s["study_name"] == config.name]
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{listed['study_id']}")
        by_number = {t.number: t for t in load(config).trials}
        assert sorted(t["number"] for t in detail["trials"]) == sorted(by_number)
        for trial in detail["trials"]:
            assert trial["state"] == by_number[trial["number"]].state.name.capitalize()
            assert {v["step"]: v["value"] for v in trial["intermediate_values"]} == pytest.approx(by_number[trial["number"]].intermediate_values)
        first = detail["trials"][0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/artifacts/{listed['study_id']}/{first['trial_id']}/"
                                    f"{first['artifacts'][0]['artifact_id']}", timeout=10) as response:
            assert response.read().startswith(b"\x89PNG")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert postgres_server.url() in server.stdout.read()


@contextlib.contextmanager
def once(condition, action):
    """``action`` once ``condition()`` holds, from a thread polling it while the study runs in this one; never after the block."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            if condition():
                action()
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def test_an_interrupted_study_resumes_the_same_optuna_study_without_losing_or_repeating_a_trial(postgres_server, study_env):
    config = smoke(study_env, "pg-interrupted", optuna_storage=postgres_server.url(), num_samples=2, max_concurrent=1, search={},
                   scheduler="none")
    study_dir = Path(config.study_uri)
    with once(lambda: 3 in result_lines(study_dir).values(), lambda: os.kill(os.getpid(), signal.SIGTERM)):
        interrupted = run_study(config)
    assert interrupted.interrupted and interrupted.stop_signal == signal.SIGTERM
    before = load(config).trials
    finished = [t for t in before if t.state.name == "COMPLETE"]
    assert finished and {t.state.name for t in before} <= {"COMPLETE", "RUNNING"}, [t.state.name for t in before]
    resumed = run_study(config, resume=True)
    assert not resumed.interrupted and resumed.best_model
    after = assert_one_optuna_trial_per_tune_trial(config, study_dir, resumed.trials)
    assert [after[t.number] for t in finished] == finished
    assert list(optuna.get_all_study_names(postgres_server.url())).count(config.name) == 1


def test_a_server_that_goes_away_mid_study_is_a_one_line_error_naming_it_and_the_study_resumes(postgres_server, study_env, capsys):
    from study.run import main

    url = postgres_server.url()
    argv = ["--preset", "smoke", "--name", "pg-lost", "--storage", str(study_env["storage"]), "--data", str(study_env["data"]),
            "--optuna-storage", url, "--num-samples", "2", "--max-concurrent", "1", "--set", "scheduler=none", "--set", "search={}"]
    study_dir = study_env["storage"] / "pg-lost"
    try:
        with once(lambda: any(result_lines(study_dir).values()), lambda: postgres_server.stop("immediate")), \
                pytest.raises(SystemExit) as stopped:
            main(argv)
    finally:
        if not postgres_server.running():
            postgres_server.start()
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and error.strip().count("\n") == 0, error
    assert f"the Optuna storage {url} stopped answering mid-study" in error and "--name pg-lost" in error and "--resume" in error
    assert not (study_dir / "best").exists()
    with pytest.raises(SystemExit) as finished:
        main(["--name", "pg-lost", "--storage", str(study_env["storage"]), "--resume"])
    assert finished.value.code == 0, capsys.readouterr().err
    config = smoke(study_env, "pg-lost", optuna_storage=url, num_samples=2, search={}, scheduler="none")
    trials = pd.read_csv(study_dir / "trials.csv", dtype={"trial_id": str})
    assert set(trials["status"]) == {"completed"} and (study_dir / "best" / "model.pt").exists()
    assert_one_optuna_trial_per_tune_trial(config, study_dir, trials)
