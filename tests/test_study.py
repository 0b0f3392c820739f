"""The study on a real Ray instance, the smoke preset and a slice of the real data."""

import hashlib
import json
import math
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from denoise_core.checkpoint import load_checkpoint, load_model
from denoise_core.errors import OutputExists
from study.config import StudyConfigError, build_config
from study.study import plan_resources, preflight, run_study
from study.trial import report_to_train, train_worker, tune_trial_with_trainer
from conftest import QUIET_RAY

REPO = Path(__file__).resolve().parents[1]
def smoke(study_env, name, **overrides):
    """The smoke preset in this test's storage; ``overrides`` are dotted settings (``train__lr`` for ``train.lr``)."""
    settings = {"name": name, "storage": str(study_env["storage"]), "data": str(study_env["data"]), **overrides}
    return build_config("smoke", assignments=[(key.replace("__", "."), value) for key, value in settings.items()])


@pytest.fixture(scope="module")
def finished(study_env):
    config = smoke(study_env, "finished")
    return config, run_study(config)


def result_lines(study_dir: Path) -> dict[str, int]:
    return {p.parent.name: len(p.read_text().splitlines()) for p in study_dir.glob("trial_*/result.json")}


def test_smoke_study_trials_finish_with_finite_metrics(finished):
    config, summary = finished
    trials = summary.trials
    assert len(trials) == config.num_samples
    assert set(trials["status"]) <= {"completed", "stopped by ASHA"}
    for column in ("best_val_loss", "best_val_psnr", "best_val_ssim", "time_s", "parameters"):
        assert trials[column].map(math.isfinite).all()
    assert (trials["best_val_psnr"] > trials["noisy_val_psnr"]).all()


def test_later_trials_run_in_the_processes_of_ended_trials(finished):
    """Tune hands the third trial the process of one that ended: 3 trials, 2 at a time, in 2 processes, every one of
    them trained and scored."""
    config, summary = finished
    first_results = [json.loads(path.read_text().splitlines()[0]) for path in Path(summary.study_uri).glob("trial_*/result.json")]
    assert len(first_results) == config.num_samples == 3 and config.max_concurrent == 2 and not config.grow_trials
    assert len({result["pid"] for result in first_results}) == 2
    assert all(math.isfinite(result["val_psnr"]) and result["val_psnr"] > result["noisy_psnr"] for result in first_results)


def test_best_model_is_exported_and_beats_the_noisy_input_on_the_holdout(finished):
    config, summary = finished
    study_dir = Path(summary.study_uri)
    model, checkpoint = load_model(study_dir / "best" / "model.pt")
    best_row = summary.trials.iloc[0]
    assert summary.best_trial == best_row["trial_id"]
    assert checkpoint["best_metrics"]["val_loss"] == pytest.approx(best_row["best_val_loss"])
    holdout = pd.read_csv(study_dir / "best" / "holdout.csv")
    assert list(holdout["condition"]) == list(config.holdout_conditions)
    impulse = holdout[holdout["condition"] == "sp:0.5"].iloc[0]
    assert impulse["psnr"] > impulse["noisy_psnr"] + 3.0
    assert (holdout["faces"] == config.holdout_faces).all()


def test_trial_table_is_written_as_csv_and_parquet(finished):
    _, summary = finished
    study_dir = Path(summary.study_uri)
    csv, parquet = pd.read_csv(study_dir / "trials.csv"), pd.read_parquet(study_dir / "trials.parquet")
    assert list(csv["trial_id"].astype(str)) == list(parquet["trial_id"].astype(str)) == list(summary.trials["trial_id"])
    assert {"param_lr", "param_loss", "param_model.bottleneck_size", "best_epoch", "best_val_psnr", "parameters", "time_s"} <= set(csv.columns)
    assert (study_dir / "study.yaml").read_text().startswith("name: finished")
    assert pd.api.types.is_integer_dtype(parquet["param_model.bottleneck_size"])  # a whole-number choice stays whole in the tables


def test_every_trial_writes_tensorboard_scalars_images_and_hparams(finished):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    _, summary = finished
    trial_dirs = sorted(Path(summary.study_uri).glob("trial_*"))
    assert len(trial_dirs) == len(summary.trials)
    for trial_dir in trial_dirs:
        events = EventAccumulator(str(trial_dir), size_guidance={"images": 0, "scalars": 0})
        events.Reload()
        epochs = json.loads(trial_dir.joinpath("result.json").read_text().splitlines()[-1])["epoch"]
        psnr = events.Scalars("val/psnr")
        assert [e.step for e in psnr] == list(range(1, epochs + 1))
        assert psnr[-1].value == pytest.approx(json.loads(trial_dir.joinpath("result.json").read_text().splitlines()[-1])["val_psnr"])
        assert {"train/loss", "val/loss", "val/ssim", "val/noisy_input_psnr", "train/lr"} <= set(events.Tags()["scalars"])
        assert not [tag for tag in events.Tags()["scalars"] if tag.startswith("ray/")]
        assert len(events.Images("val/noisy_denoised_clean")) == epochs
        start, experiment = (HParamsPluginData.FromString(events.summary_metadata[f"_hparams_/{tag}"].plugin_data.content)
                             for tag in ("session_start_info", "experiment"))
        sampled = json.loads(trial_dir.joinpath("params.json").read_text())
        assert type(sampled["model.bottleneck_size"]) is int  # an int through Optuna, Tune's config and its files
        assert start.session_start_info.hparams["model.bottleneck_size"].string_value == str(sampled["model.bottleneck_size"])  # 8, not 8.000
        assert start.session_start_info.hparams["lr"].number_value == pytest.approx(sampled["lr"])
        infos = {info.name: info for info in experiment.experiment.hparam_infos}
        assert [v.string_value for v in infos["model.bottleneck_size"].domain_discrete.values] == ["4", "8"]  # every choice, in order
        assert "val_images" not in trial_dir.joinpath("result.json").read_text()
        assert "val_images" not in trial_dir.joinpath("progress.csv").read_text()


def test_starting_an_existing_study_again_is_refused(finished, study_env):
    config, summary = finished
    before = result_lines(Path(summary.study_uri))
    with pytest.raises(FileExistsError, match="already exists.*--resume"):
        run_study(config)
    assert result_lines(Path(summary.study_uri)) == before


def test_resume_of_a_finished_study_is_refused_and_keeps_its_best_model(finished):
    config, summary = finished
    study_dir = Path(summary.study_uri)
    before = result_lines(study_dir), (study_dir / "best" / "model.pt").read_bytes()
    with pytest.raises(OutputExists, match="has finished.*nothing to resume"):
        run_study(config, resume=True)
    assert (result_lines(study_dir), (study_dir / "best" / "model.pt").read_bytes()) == before


def test_diverging_trial_is_recorded_as_failed(study_env):
    config = smoke(study_env, "diverging", num_samples=1, search={}, train__lr=1e30, train__epochs=2, train__model__base_width=4,
                   train__model__batchnorm=False, train__model__residual=True)
    summary = run_study(config)
    status = summary.trials.iloc[0]["status"]
    assert status.startswith("failed: ") and "not finite" in status
    assert summary.best_model is None


def worker_dying_once_after_epoch_1(marker: Path, trained: Path):
    """The real Train worker loop, except that the first worker to report epoch 1 dies once Ray Train has taken up that
    epoch's checkpoint (a worker that dies at once loses its last report, and so its checkpoint, with it); every worker
    notes each epoch it trained in ``trained`` (epoch and process id, a line each). Ray pickles what it calls by value
    (this module cannot be imported on a worker), so everything it needs is defined in here."""
    def registered_epochs(train_storage: str) -> set:
        """The epochs whose checkpoints Ray Train has taken up: those its checkpoint manager lists in the run's snapshot."""
        found = set()
        for snapshot in Path(train_storage).glob("*/checkpoint_manager_snapshot.json"):
            try:
                found |= {result["metrics"].get("epoch") for result in json.loads(snapshot.read_text())["checkpoint_results"]}
            except (OSError, ValueError, KeyError):  # being written
                continue
        return found

    def worker_loop(params):
        def report(metrics, directory):
            with trained.open("a") as notes:
                notes.write(f"{metrics.get('epoch')} {os.getpid()}\n")
            report_to_train(metrics, directory)
            if metrics.get("epoch") == 1 and not marker.exists():
                deadline = time.monotonic() + 120
                while 1 not in registered_epochs(params["train_storage"]) and time.monotonic() < deadline:
                    time.sleep(0.2)
                marker.write_text(f"worker {os.getpid()} killed after epoch 1\n")
                os._exit(1)

        train_worker(params, report=report)

    return worker_loop


def epoch_scores(study_dir: Path) -> dict[str, list]:
    """Every epoch Tune received from the study's one trial, in order: its number and validation loss, PSNR and SSIM."""
    trial_dir, = study_dir.glob("trial_*")
    lines = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    return {key: [line[key] for line in lines] for key in ("epoch", "val_loss", "val_psnr", "val_ssim")}


def test_a_killed_train_worker_restarts_from_its_checkpoint_and_scores_as_if_it_had_not_died(study_env, tmp_path):
    marker, trained = tmp_path / "worker-killed", tmp_path / "epochs-trained"
    dying = worker_dying_once_after_epoch_1(marker, trained)
    one_trial = {"num_samples": 1, "cpus_per_worker": 0.9, "scheduler": "none", "search": {}}

    def trial_with_a_dying_worker(sampled, settings):
        tune_trial_with_trainer(sampled, settings, worker_loop=dying)

    killed = run_study(smoke(study_env, "trainer", train_workers=1, **one_trial), trial=trial_with_a_dying_worker)
    assert "killed after epoch 1" in marker.read_text()
    epochs, workers = zip(*(line.split() for line in trained.read_text().splitlines()))
    assert epochs == ("1", "2", "3") and workers[0] != workers[1] == workers[2]  # the new worker went on from epoch 1's checkpoint
    unharmed = run_study(smoke(study_env, "unharmed", train_workers=0, **one_trial))
    row = killed.trials.iloc[0]
    assert row["status"] == "completed" and row["epochs_run"] == 3
    assert row["best_val_psnr"] > row["noisy_val_psnr"]
    after_the_kill, without = epoch_scores(Path(killed.study_uri)), epoch_scores(Path(unharmed.study_uri))
    assert after_the_kill["epoch"] == without["epoch"] == [1, 2, 3]
    for score in ("val_loss", "val_psnr", "val_ssim"):
        assert after_the_kill[score] == pytest.approx(without[score], rel=1e-6), score
    assert row["best_val_psnr"] == pytest.approx(unharmed.trials.iloc[0]["best_val_psnr"], rel=1e-6)
    assert len(list((Path(killed.study_uri) / "train_runs").iterdir())) == 1
    load_model(Path(killed.study_uri) / "best" / "model.pt")


def test_a_search_over_seeds_is_accepted_once_the_validation_noise_has_its_own_seed():
    config = build_config("smoke", assignments=[("search.seed", {"choice": [0, 1, 2]}), ("train.val_seed", 7)])
    assert config.search["seed"] == {"choice": [0, 1, 2]} and config.train.val_seed == 7


@pytest.mark.parametrize("assignments, message", [
    ({"num_samples": 0}, "num_samples must be >= 1"),
    ({"colour": 1}, r"unknown setting\(s\) colour"),
    ({"train.epoch": 3}, r"unknown setting\(s\) train.epoch"),
    ({"train.lr": "abc"}, "train.lr: expected a number, got 'abc'"),
    ({"train.model": 5}, "train.model: expected a mapping of settings"),
    ({"search.model.widht": {"choice": [8]}}, "unknown setting 'model.widht'"),
    ({"search.lr": {"loguniform": [0, 1]}}, "positive low bound"),
    ({"search.loss": {"choice": ["huber"]}}, "search: 'loss' value 'huber'.*loss must be one of"),
    ({"search.model.dropout": {"uniform": [0.1, 3.0]}}, r"search: 'model.dropout' value 3.0 .*dropout must be in \[0, 1\)"),
    ({"search.epochs": {"randint": [1, 4]}, "grace_period": 5}, r"grace_period \(5\) must be <= the epochs a trial can train \(3\)"),
    ({"train.epochs": 1, "grace_period": 2}, r"grace_period \(2\) must be <= the epochs a trial can train \(1\)"),
    ({"search.noise": {"choice": ["sp:0.1", "sp:0.5"]}, "train.val_noise": None}, "search varies noise but train.val_noise is not set"),
    ({"search.seed": {"choice": [0, 1, 2]}}, "search varies seed: that changes the validation faces or their noise"),
    ({"search.val_size": {"randint": [100, 400]}}, "search varies val_size: .* ranked on different validation problems"),
    ({"search.restart": {"choice": {"first": {"seed": 1}, "second": {"seed": 2}}}}, "search varies seed:"),
    ({"search.val_unique": {"choice": [True, False]}}, "search varies val_unique:"),
    ({"search.val_seed": {"choice": [1, 2]}}, "search varies val_seed:"),
    ({"holdout_conditions": ["sp:0.1", "sp:O.5"]}, "hold-out condition 'sp:O.5' is not a noise condition"),
    ({"metric": "test_psnr"}, "metric must be"),
    ({"metric": "val_loss", "mode": "min"}, "compares mse with mae"),
    ({"mode": "min"}, "mode for val_psnr must be max"),
    ({"report_options": {"bm3d_face": 4}}, r"unknown setting\(s\) report_options\.bm3d_face; known: top, faces"),
    ({"report_options": {"bm3d_faces": 0}}, "report_options: bm3d_faces must be >= 1, got 0"),
    ({"report_options": {"bm3d_conditions": ["gauss:-5"]}}, "report_options: bm3d_conditions: bad noise spec"),
    ({"report_options": {"bm3d_conditions": "gauss:25"}}, "report_options.bm3d_conditions: expected a list"),
    ({"report_options": {"faces": True}}, "report_options.faces: expected a whole number"),
])
def test_bad_study_config_is_a_one_line_error(assignments, message):
    with pytest.raises(StudyConfigError, match=message) as error:
        build_config("smoke", assignments=list(assignments.items()))
    assert "\n" not in str(error.value)


def test_report_options_merge_key_by_key_over_the_preset():
    local = build_config("local")
    assert local.report_options["bm3d_faces"] == 4
    merged = build_config("local", assignments=[("report_options.faces", 0)])
    assert merged.report_options == {**local.report_options, "faces": 0}


def test_gpu_request_without_gpus_is_refused_before_any_trial():
    config = build_config("smoke", assignments=[("gpus_per_trial", 0.5)])
    with pytest.raises(StudyConfigError, match="cluster has no GPUs"):
        plan_resources(config, {"CPU": 8.0})


def test_resources_pack_trials_for_what_the_cluster_has():
    plain = build_config("smoke", assignments=[("max_concurrent", 0), ("num_samples", 20)])
    assert plan_resources(plain, {"CPU": 2.0}).concurrent == 2
    trainer = build_config("smoke", assignments=[("max_concurrent", 0), ("num_samples", 20), ("train_workers", 1)])
    assert plan_resources(trainer, {"CPU": 2.0}).concurrent == 1
    gpu = build_config("full", assignments=[("max_concurrent", 0)])
    packed = plan_resources(gpu, {"CPU": 16.0, "GPU": 1.0})
    assert packed.gpu == 0.25 and packed.concurrent == 4


def test_cli_reports_config_errors_in_one_line_before_starting_ray(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "study" / "run.py"), "--preset", "smoke", "--set", "colour=1",
                             "--storage", str(tmp_path)], capture_output=True, text=True, env={**os.environ, **QUIET_RAY})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown setting(s) colour" in result.stderr
    assert not any(tmp_path.iterdir())


def test_interrupted_study_resumes_without_rerunning_finished_trials(study_env, tmp_path):
    storage = tmp_path / "studies"
    command = [sys.executable, str(REPO / "study" / "run.py"), "--preset", "smoke", "--name", "interrupted", "--storage", str(storage),
               "--data", str(study_env["data"]), "--num-samples", "3", "--max-concurrent", "1", "--num-cpus", "1", "--set", "scheduler=none"]
    env = dict(os.environ)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    study_dir = storage / "interrupted"
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and not any(n == 3 for n in result_lines(study_dir).values()):
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert "--resume" in process.stderr.read() and not (study_dir / "best").exists()
    finished_before = {k: v for k, v in result_lines(study_dir).items() if v == 3}
    assert finished_before, "no trial finished before the interruption"
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = result_lines(study_dir)
    assert {k: after[k] for k in finished_before} == finished_before
    trials = pd.read_csv(study_dir / "trials.csv")
    assert len(trials) == 3 and set(trials["status"]) == {"completed"}
    assert optuna_trials(study_dir) == {(trial_id, "COMPLETE") for trial_id in trials["trial_id"].astype(str)}


def test_a_copied_interrupted_study_resumes_in_its_own_folder_and_leaves_the_original_as_it_was(study_env, finished, tmp_path):
    from test_postgres import once

    config = smoke(study_env, "original", num_samples=2, max_concurrent=1, search={}, scheduler="none", report=False)
    study_dir = Path(config.study_uri)
    with once(lambda: 3 in result_lines(study_dir).values(), lambda: os.kill(os.getpid(), signal.SIGTERM)):
        assert run_study(config).interrupted
    assert "tuner.pkl" in json.loads((study_dir / "resume-manifest.json").read_text())["files"]
    original = hashlib.sha256((study_dir / "optuna.db").read_bytes()).hexdigest()
    copy = smoke(study_env, "original", storage=str(tmp_path / "copies"), num_samples=2, max_concurrent=1, search={}, scheduler="none",
                 report=False)
    copy_dir = Path(copy.study_uri)
    shutil.copytree(study_dir, copy_dir)
    databases = {"deleted": (None, r"optuna\.db is missing"), "emptied": (b"", r"not a SQLite database"),
                 "truncated": ((study_dir / "optuna.db").read_bytes()[:3000], r"cannot be (opened|read)"),
                 "swapped": ((Path(finished[1].study_uri) / "optuna.db").read_bytes(), r"holds no study named 'original' \(it holds 'finished'\)")}
    for case, (content, message) in databases.items():
        (copy_dir / "optuna.db").unlink(missing_ok=True)
        if content is not None:
            (copy_dir / "optuna.db").write_bytes(content)
        with pytest.raises(Exception, match=message) as refused:
            preflight(copy, resume=True)
        assert type(refused.value).__name__ in ("MissingFile", "StudyConfigError") and "\n" not in str(refused.value), case
    shutil.copy(study_dir / "optuna.db", copy_dir / "optuna.db")
    resumed = run_study(copy, resume=True)
    assert not resumed.interrupted and resumed.best_model
    assert hashlib.sha256((study_dir / "optuna.db").read_bytes()).hexdigest() == original and not (study_dir / "best").exists()
    assert optuna_trials(copy_dir) == {(trial_id, "COMPLETE") for trial_id in resumed.trials["trial_id"].astype(str)}


def test_a_crafted_tuner_pkl_is_refused_before_it_is_unpickled(tmp_path):
    from synthetic import Payload
    from study import signing

    study_dir = tmp_path / "sent"
    study_dir.mkdir()
    (study_dir / "tuner.pkl").write_bytes(pickle.dumps({"benign": 1}))
    (study_dir / "experiment_state-1.json").write_text("{}")
    signing.sign(str(study_dir))
    signing.verify(str(study_dir), "sent")
    marker = tmp_path / "payload-ran"
    (study_dir / "tuner.pkl").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(StudyConfigError, match=r"sent/tuner\.pkl changed after your driver closed study 'sent'"):
        signing.verify(str(study_dir), "sent")
    (study_dir / "tuner.pkl").write_bytes(pickle.dumps({"benign": 1}))
    (study_dir / "trial_1").mkdir()
    (study_dir / "trial_1" / "error.pkl").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(StudyConfigError, match=r"trial_1/error\.pkl is a pickle that resume-manifest\.json does not list"):
        signing.verify(str(study_dir), "sent")
    (study_dir / "trial_1" / "error.pkl").unlink()
    manifest = json.loads((study_dir / "resume-manifest.json").read_text())
    (study_dir / "resume-manifest.json").write_text(json.dumps({**manifest, "hmac": "0" * 64}))
    with pytest.raises(StudyConfigError, match=r"resume-manifest\.json is not signed with your study key"):
        signing.verify(str(study_dir), "sent")
    assert not marker.exists()


def test_a_study_key_that_others_can_read_is_refused(tmp_path, monkeypatch):
    from study import signing

    key = tmp_path / "key"
    monkeypatch.setenv("FACESTUDY_STUDY_KEY", str(key))
    assert len(signing.study_key()) == 64 and (key.stat().st_mode & 0o777) == 0o600
    key.chmod(0o644)
    with pytest.raises(StudyConfigError, match=r"is not private to you \(mode 0644\).*chmod 600"):
        signing.study_key()


def optuna_trials(study_dir: Path) -> set[tuple[str, str]]:
    """(Tune trial id, Optuna state) of every trial in the study's Optuna database."""
    import optuna

    study = optuna.load_study(study_name=study_dir.name, storage=f"sqlite:///{study_dir}/optuna.db")
    return {(t.user_attrs.get("tune_trial_id"), t.state.name) for t in study.trials}


def test_a_warm_started_trial_is_scored_on_the_initial_model_first(study_env, finished):
    _, summary = finished
    init = Path(summary.study_uri) / "best" / "model.pt"
    _, checkpoint = load_model(init)
    config = smoke(study_env, "warm", num_samples=1, search={}, scheduler="none", train__epochs=1, train__init=str(init),
                   train__model=checkpoint["config"]["model"], train__loss=checkpoint["config"]["loss"])  # the best trial's loss: mse or mae
    warm = run_study(config)
    first = json.loads(next(Path(warm.study_uri).glob("trial_*/result.json")).read_text().splitlines()[0])
    assert first["init_val_psnr"] == pytest.approx(checkpoint["best_metrics"]["val_psnr"], abs=1e-4)
    assert first["init_val_loss"] == pytest.approx(checkpoint["best_metrics"]["val_loss"], rel=1e-4)


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, str(REPO / "study" / "run.py"), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **QUIET_RAY}, timeout=timeout)


def test_every_check_that_needs_no_ray_fails_before_ray_starts(study_env, finished, tmp_path):
    config, summary = finished
    data = study_env["data"]
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    cases = [
        (["--name", config.name, "--storage", config.storage, "--data", data], "already exists"),
        (["--name", "new", "--storage", a_file, "--data", data], "is a file, not a directory"),
        (["--name", "nowhere", "--storage", tmp_path, "--data", data, "--resume"], "nothing to resume"),
        (["--name", "gpu", "--storage", tmp_path, "--data", data, "--gpus-per-trial", "0.5"], "this machine has no GPU"),
        (["--name", "nodata", "--storage", tmp_path, "--data", tmp_path / "missing.csv"], "missing.csv"),
        (["--preset", "full", "--epochs", "1", "--name", "short", "--storage", tmp_path, "--data", data], r"grace_period \(5\) must be <="),
        (["--name", "yaml", "--storage", tmp_path, "--data", data, "--set", "train.lr=1e-3", "--set", "train.weight_decay=abc"],
         "train.weight_decay: expected a number"),
    ]
    for args, message in cases:
        result = run_cli(*args) if "--preset" in args or "--resume" in args else run_cli("--preset", "smoke", *args)
        assert result.returncode == 2, (args, result.stderr[-500:])
        assert re.search(message, result.stderr) and result.stderr.strip().count("\n") == 0, (args, result.stderr)
        assert "Ray" not in result.stdout + result.stderr
    assert not (tmp_path / "short").exists() and not (tmp_path / "yaml").exists()


def test_an_interrupted_full_preset_study_resumes_with_the_full_presets_own_settings(study_env, tmp_path):
    storage = tmp_path / "studies"
    command = [sys.executable, str(REPO / "study" / "run.py"), "--preset", "full", "--name", "full", "--storage", str(storage),
               "--data", str(study_env["data"]), "--num-cpus", "2", "--num-samples", "2", "--max-concurrent", "1", "--epochs", "2",
               "--train-size", "128", "--val-size", "24", "--set", "train_workers=0", "--set", "grace_period=1", "--set", "holdout_faces=16",
               "--set", "report=false", "--set", "search.model.base_width={choice: [4, 8]}", "--set", "search.model.stages={choice: [2, 3]}"]
    env = {**os.environ, **QUIET_RAY}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    study_dir = storage / "full"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not result_lines(study_dir):
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=90) != 0
    saved = (study_dir / "study.yaml").read_text()
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=env, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (study_dir / "study.yaml").read_text() == saved
    trials = pd.read_csv(study_dir / "trials.csv")
    assert len(trials) == 2
    for checkpoint in trials["checkpoint"].dropna():
        trained = load_checkpoint(Path(checkpoint) / "checkpoint.pt")["config"]
        assert (trained["train_size"], trained["val_size"], trained["batch_size"], trained["patience"]) == (128, 24, 128, 8)
        assert trained["val_noise"] == "sp:0.02-0.95|gauss:5-55|sp:0.05-0.35+gauss:5-35"
        assert trained["model"]["base_width"] in (4, 8)


def two_trial_driver(study_env, tmp_path, name: str, epochs: int, ready) -> tuple[list[str], dict, subprocess.Popen, Path]:
    """A smoke study of 2 trials run one at a time in its own process, returned once ``ready(result_lines)`` holds."""
    storage = tmp_path / "studies"
    command = [sys.executable, str(REPO / "study" / "run.py"), "--preset", "smoke", "--name", name, "--storage", str(storage),
               "--data", str(study_env["data"]), "--num-samples", "2", "--max-concurrent", "1", "--num-cpus", "1", "--epochs", str(epochs),
               "--set", "scheduler=none", "--set", "report=false"]
    env = {**os.environ, **QUIET_RAY}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    study_dir = storage / name
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and not ready(result_lines(study_dir)):
        time.sleep(0.2)
    return command, env, process, study_dir


def test_ctrl_c_after_the_last_trial_started_is_an_interruption_not_a_success(study_env, tmp_path):
    command, env, process, study_dir = two_trial_driver(study_env, tmp_path, "terminated", 4,
                                                        lambda lines: len(lines) == 2 and min(lines.values()) >= 1)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=90) == 130
    assert "--resume" in process.stderr.read()
    assert not (study_dir / "best").exists()
    statuses = pd.read_csv(study_dir / "trials.csv").set_index("trial_id")["status"]
    assert "interrupted" in set(statuses) and "stopped by ASHA" not in set(statuses)
    assert ("RUNNING" in {state for _, state in optuna_trials(study_dir)}) and len(optuna_trials(study_dir)) == 2
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=env, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert set(pd.read_csv(study_dir / "trials.csv")["status"]) == {"completed"}
    assert optuna_trials(study_dir) == {(trial_id, "COMPLETE") for trial_id in pd.read_csv(study_dir / "trials.csv")["trial_id"].astype(str)}
    assert (study_dir / "best" / "model.pt").exists()


@pytest.mark.slow
def test_a_second_ctrl_c_ends_the_driver_at_once_in_one_line_and_the_study_resumes(study_env, tmp_path):
    command, env, process, study_dir = two_trial_driver(study_env, tmp_path, "twice", 3, lambda lines: len(lines) == 2 and 3 in lines.values())
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=90) == 130
    stderr = process.stderr.read()
    hard_stop = stderr.strip().splitlines()[-1]  # the first signal's lines come before it: Tune's "Stop signal received"
    assert "Traceback" not in stderr and stderr.count("stopped at once") == 1, stderr
    assert hard_stop.startswith("study: stopped at once by a second interrupt") and f"saved in {study_dir}" in hard_stop
    assert "--name twice" in hard_stop and hard_stop.endswith("--resume")
    finished_before = {name: count for name, count in result_lines(study_dir).items() if count == 3}
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=env, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = result_lines(study_dir)
    assert finished_before and {name: after[name] for name in finished_before} == finished_before  # nothing finished ran again
    trials = pd.read_csv(study_dir / "trials.csv")
    assert len(trials) == 2 and set(trials["status"]) == {"completed"} and (study_dir / "best" / "model.pt").exists()
    assert optuna_trials(study_dir) == {(trial_id, "COMPLETE") for trial_id in trials["trial_id"].astype(str)}


def test_trial_table_keeps_whole_numbers_whole_and_names_each_outcome():
    from types import SimpleNamespace

    from study.study import trial_table

    def result(trial_id, epoch, sampled, **metrics):
        return SimpleNamespace(metrics={"trial_id": trial_id, "epoch": epoch, "epochs_planned": 3, "best_val_psnr": 20.0 - epoch, **metrics},
                               config=sampled, error=None, path=f"/s/trial_{trial_id}", checkpoint=None)

    results = [result("a", 3, {"model.refine_width": 32, "lr": 0.01}), result("b", 1, {"lr": 0.02}),
               result("c", 2, {"lr": 0.03}), result("d", 1, {"lr": 0.04}, diverged=1, error="loss is not finite")]
    table = trial_table(results, build_config("smoke"), {"a": "TERMINATED", "b": "TERMINATED", "c": "RUNNING", "d": "TERMINATED"})
    assert str(table["param_model.refine_width"].dtype) == "Int64" and table.set_index("trial_id").at["a", "param_model.refine_width"] == 32
    assert table.set_index("trial_id")["status"].to_dict() == {"a": "completed", "b": "stopped by ASHA", "c": "interrupted",
                                                                "d": "failed: loss is not finite"}


def test_tunes_own_resume_advice_is_left_out_while_a_study_runs(caplog):
    """A study resumes with --resume, not Tune.restore(...): Tune's line would send the user the wrong way."""
    import logging

    from study.study import stop_signals

    tune_log = logging.getLogger("ray.tune.tune")
    with caplog.at_level(logging.WARNING), stop_signals("a second interrupt", lambda: None):
        tune_log.warning('Experiment has been interrupted, but the most recent state was saved.\nResume experiment with: Tuner.restore(path="x", trainable=...)')
        tune_log.warning("a trial failed")
    assert "a trial failed" in caplog.text and "Tuner.restore" not in caplog.text
    tune_log.warning('Resume experiment with: Tuner.restore(path="x", trainable=...)')
    assert "Tuner.restore" in caplog.text  # only while the study runs


@pytest.mark.parametrize("grow", [True, False])
def test_a_lone_trial_takes_the_cpu_left_idle_in_its_own_process(study_env, grow, capsys):
    """One trial at a time on 2 CPUs: with grow_trials it trains its epochs after the first with both CPUs (2 torch
    threads), in the same process, so Tune sees each epoch once; without it, it keeps one."""
    config = smoke(study_env, f"grow-{grow}", num_samples=1, max_concurrent=1, search={}, grow_trials=grow, train__epochs=3)
    summary = run_study(config)
    trial_dir, = (study_env["storage"] / config.name).glob("trial_*")
    results = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    assert [result["epoch"] for result in results] == [1, 2, 3] and len({result["pid"] for result in results}) == 1
    assert [result["threads"] for result in results] == ([1, 2, 2] if grow else [1, 1, 1])
    checkpoint = load_checkpoint(next(trial_dir.glob("checkpoint_*/checkpoint.pt")))
    assert checkpoint["config"]["num_threads"] == 1  # the threads it started with; each epoch's result names its own
    assert summary.trials.iloc[0]["status"] == "completed" and summary.best_model is not None
    assert ("epoch 2/3 on 2 threads" in capsys.readouterr().out) == grow
