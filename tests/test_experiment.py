"""Controlled experiments: the grid over levels and seeds, the checks on an experiment file, and a tiny one end to end on Ray."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from denoise_core.errors import MissingFile, OutputExists
from denoise_core.settings import differences, to_dict
from study.config import trial_config
from study.experiment import ExperimentError, base_config, load_experiment, preflight, search_space, trial_grid
from denoise_core.space import assignments

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "study" / "experiments").glob("*.yaml"))


def experiment_file(tmp_path: Path, **settings) -> Path:
    values = {"name": "tiny", "factor": "loss", "levels": ["mse", "psnr"], "seeds": [0, 1], "reference": str(REPO / "models" / "fer2013-blind.yaml"),
              "train": {"init": None, "epochs": 2, "train_size": 500, "val_size": 100}, "storage": str(tmp_path / "studies"), **settings}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_experiment_builds_its_grid(path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = load_experiment(path)
    base = base_config(config)
    grid = trial_grid(config, base)
    assert len(grid) == len(config.levels) * len(config.seeds) >= 8
    assert base.init is None and base.patience == base.epochs and base.val_noise is not None


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_trials_differ_only_in_the_factor_and_seed(path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = load_experiment(path)
    grid = trial_grid(config, base_config(config))
    first = to_dict(grid[0][2])
    for level, seed, trial in grid:
        assert set(differences(first, to_dict(trial))) <= {config.factor, "seed"}
        assert (trial.val_size, trial.val_noise, trial.patience) == (grid[0][2].val_size, grid[0][2].val_noise, grid[0][2].patience)
        assert trial.epochs == grid[0][2].epochs or config.factor == "epochs"
        assert trial.patience >= trial.epochs  # no trial stops early
        assert to_dict(trial)["seed"] == seed
    assert sorted({(repr(level), seed) for level, seed, _ in grid}) == sorted({(repr(v), s) for v in config.levels for s in config.seeds})


def test_the_trial_function_builds_the_same_configs_as_the_grid(tmp_path):
    config = load_experiment(experiment_file(tmp_path))
    base = base_config(config)
    for level, seed, trial in trial_grid(config, base):
        built = trial_config(to_dict(base), assignments(search_space(config), {"loss": level, "seed": seed}))
        assert built == trial


def test_set_assignments_change_the_budget_of_every_trial(tmp_path):
    config = load_experiment(experiment_file(tmp_path), [("train.epochs", 1), ("seeds", [3])])
    (_, seed, trial), *_ = trial_grid(config, base_config(config))
    assert (trial.epochs, trial.patience, seed) == (1, 1, 3)


@pytest.mark.parametrize("settings, message", [
    ({"factor": "seed"}, "seed is the replicate"),
    ({"factor": "val_noise"}, "cannot vary"),
    ({"factor": "model.bottlenek_size"}, "not a training setting"),
    ({"levels": ["mse"]}, "at least two values"),
    ({"levels": ["mse", "mse"]}, "twice"),
    ({"level_names": ["one"]}, "one name per level"),
    ({"seeds": []}, "one or more distinct"),
    ({"train": {"loss": "mae"}}, "the factor and seed come from levels and seeds"),
    ({"storage": "s3://bucket/studies"}, "local"),
    ({"holdout_conditions": ["sp:0.1-0.5"]}, "range"),
    ({"colour": "red"}, "unknown setting"),
])
def test_bad_experiment_files_are_one_line_errors(tmp_path, settings, message):
    with pytest.raises(ExperimentError, match=message):
        load_experiment(experiment_file(tmp_path, **settings))


def test_concurrency_fits_the_cluster_and_impossible_trials_are_refused(tmp_path):
    from study.experiment import plan_concurrency

    config = load_experiment(experiment_file(tmp_path))
    assert plan_concurrency(config, {"CPU": 2.0}) == 2
    assert plan_concurrency(load_experiment(experiment_file(tmp_path, max_concurrent=1)), {"CPU": 8.0}) == 1
    assert plan_concurrency(load_experiment(experiment_file(tmp_path, gpus_per_trial=0.5)), {"CPU": 8.0, "GPU": 1.0}) == 2
    with pytest.raises(ExperimentError, match="GPUs"):
        plan_concurrency(load_experiment(experiment_file(tmp_path, gpus_per_trial=1.0)), {"CPU": 8.0})
    with pytest.raises(ExperimentError, match="CPUs"):
        plan_concurrency(load_experiment(experiment_file(tmp_path, cpus_per_trial=4.0)), {"CPU": 2.0})


def test_a_level_the_training_settings_refuse_is_named(tmp_path):
    config = load_experiment(experiment_file(tmp_path, levels=["mse", "huber"]))
    with pytest.raises(ExperimentError, match="level huber"):
        trial_grid(config, base_config(config))


def test_a_noise_level_with_an_empty_alternative_is_named(tmp_path):
    config = load_experiment(experiment_file(tmp_path, factor="noise", levels=["sp:0.1|", "sp:0.2"], train={"init": None, "val_noise": "sp:0.1"}))
    with pytest.raises(ExperimentError, match=r"level sp:0\.1\|: .*alternative 2 of 2 is empty"):
        trial_grid(config, base_config(config))


def test_an_init_that_is_not_a_model_is_refused_before_training(tmp_path):
    config = load_experiment(experiment_file(tmp_path, train={"init": str(REPO / "models" / "fer2013-blind.yaml"), "epochs": 2}))
    with pytest.raises(ValueError, match=r"init \(from the reference or train:\): .*fer2013-blind\.yaml is a recipe"):
        base_config(config)
    with pytest.raises(MissingFile, match=r"init \(from the reference or train:\): model file .*nowhere\.pt does not exist"):
        base_config(load_experiment(experiment_file(tmp_path, train={"init": str(tmp_path / "nowhere.pt"), "epochs": 2})))


def test_noise_as_the_factor_needs_a_fixed_validation_noise(tmp_path):
    reference = tmp_path / "reference.yaml"
    reference.write_text("epochs: 2\nnoise: sp:0.1-0.5\n")
    config = load_experiment(experiment_file(tmp_path, factor="noise", levels=["sp:0.1-0.5", "sp:0.1-0.9"], reference=str(reference), train={}))
    with pytest.raises(ExperimentError, match="val_noise"):
        base_config(config)


def test_a_missing_reference_is_named(tmp_path):
    config = load_experiment(experiment_file(tmp_path, reference=str(tmp_path / "nowhere.yaml")))
    with pytest.raises(MissingFile, match="nowhere.yaml"):
        base_config(config)


def test_an_existing_experiment_is_never_overwritten(tmp_path):
    config = load_experiment(experiment_file(tmp_path))
    Path(config.uri).mkdir(parents=True)
    (Path(config.uri) / "mine.txt").write_text("keep")
    with pytest.raises(OutputExists, match="already exists"):
        preflight(config, resume=False)
    assert (Path(config.uri) / "mine.txt").read_text() == "keep"


@pytest.mark.slow  # a Ray grid, its scoring and its report: minutes on 2 cores
def test_tiny_experiment_runs_end_to_end_and_reports(study_env, tmp_path):
    from results.experiment_report import build_experiment_report
    from study.experiment import run_experiment

    reference = tmp_path / "reference.yaml"
    reference.write_text(yaml.safe_dump({"model": {"base_width": 4, "bottleneck_size": 4, "stages": 2}, "noise": "sp:0.1-0.5", "batch_size": 32}))
    config = load_experiment(experiment_file(
        tmp_path, name="tiny-loss", reference=str(reference), storage=str(study_env["storage"]), data=str(study_env["data"]), label="loss",
        train={"epochs": 1, "train_size": 128, "val_size": 32}, holdout_faces=24, holdout_conditions=["sp:0.1", "sp:0.5"], verbose=0))
    summary = run_experiment(config)
    trials = pd.read_csv(summary.path / "trials.csv")
    assert not summary.interrupted and list(trials["status"]) == ["completed"] * 4
    assert list(zip(trials["level"], trials["seed"])) == [("mse", 0), ("mse", 1), ("psnr", 0), ("psnr", 1)]
    assert (trials["epochs_run"] == 1).all()
    first_results = [json.loads(path.read_text().splitlines()[0]) for path in summary.path.glob("trial_*/result.json")]
    assert len(first_results) == 4 and len({result["pid"] for result in first_results}) == 2  # 2 at a time: later trials reuse their processes
    scores = pd.read_parquet(summary.path / "scores.parquet")
    assert len(scores) == 4 * 2 * 24 and scores.groupby("trial_id")["face"].nunique().eq(24).all()
    assert (scores.groupby(["condition", "face"])["noisy_psnr"].nunique() == 1).all()  # every trial saw the same noisy faces
    report = build_experiment_report(summary.path)
    levels = pd.read_csv(report / "levels.csv")
    assert set(levels["seeds"]) == {2} and len(levels) == 2 * 2
    verdicts = pd.read_csv(report / "verdicts_psnr.csv")
    assert len(verdicts) == 2 and verdicts["verdict"].str.startswith("loss mse").all()
    assert "The answer" in (report / "index.html").read_text() and (report / "levels.png").is_file()
    with pytest.raises(OutputExists):
        build_experiment_report(summary.path)
    one_process = run_experiment(load_experiment(experiment_file(
        tmp_path, name="tiny-loss-in-one-process", reference=str(reference), storage=str(study_env["storage"]), data=str(study_env["data"]),
        label="loss", max_concurrent=1, train={"epochs": 1, "train_size": 128, "val_size": 32}, holdout_faces=24,
        holdout_conditions=["sp:0.1", "sp:0.5"], verbose=0)))
    again = pd.read_csv(one_process.path / "trials.csv")  # trial (mse, 1) ran in a fresh process above, in a reused one here
    assert again[["best_val_psnr", "best_val_ssim"]].values.tolist() == trials[["best_val_psnr", "best_val_ssim"]].values.tolist()


def test_face_scores_hold_every_face_and_average_to_the_holdout_table():
    import numpy as np

    from denoise_core.data import to_float
    from denoise_core.evaluate import evaluate_on_holdout, face_scores
    from denoise_core.holdout import make_holdout
    from synthetic import smooth_faces

    holdout = make_holdout(smooth_faces(8), ("sp:0.1", "sp:0.5"), seed=1)
    clean = to_float(holdout.clean)

    def half_oracle(noisy: np.ndarray) -> np.ndarray:
        return np.concatenate([clean[:4], noisy[4:]])

    faces = face_scores(half_oracle, holdout, faces=6)
    assert list(faces.columns) == ["condition", "face", "psnr", "ssim", "noisy_psnr", "noisy_ssim", "ssim_gauss", "noisy_ssim_gauss"]
    assert len(faces) == 2 * 6 and list(faces["face"][:6]) == list(range(6))
    assert (faces[faces["face"] < 4]["psnr"] == 60.0).all() and (faces[faces["face"] >= 4]["psnr"] == faces[faces["face"] >= 4]["noisy_psnr"]).all()
    table = evaluate_on_holdout(half_oracle, holdout, faces=6).set_index("condition")
    means = faces.groupby("condition")[["psnr", "ssim", "noisy_psnr"]].mean()
    assert np.allclose(means.loc[table.index].to_numpy(), table[["psnr", "ssim", "noisy_psnr"]].to_numpy())
