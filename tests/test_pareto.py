"""Trade-offs as a front: the Pareto front of a trial table, the report's "Trade-offs" section, the ``objectives`` setting,
and a tiny multi-objective study on Ray whose Optuna study has two directions."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from results.html import Figure, Table, Text
from results.importance import param_importance
from results.pareto import pareto_front
from results.sections import front_table, tradeoffs_section
from results.study_dir import Study, read_study
from study.config import StudyConfigError, build_config

# trial id, status, val PSNR, parameters. The front (max PSNR, min parameters): a (fewest parameters), c and its exact
# tie d, e (the best PSNR). b is dominated by c (same parameters, lower PSNR), f by a (same PSNR, more parameters),
# g failed and h has no parameter count, so neither is on any front.
TABLE = (
    ("a", "completed", 20.0, 100), ("b", "completed", 21.0, 300), ("c", "completed", 23.0, 300), ("d", "stopped by ASHA", 23.0, 300),
    ("e", "completed", 25.0, 900), ("f", "completed", 20.0, 500), ("g", "failed: loss diverged", math.nan, 50),
    ("h", "completed", 30.0, None),
)
FRONT = ["a", "c", "d", "e"]


def trial_table() -> pd.DataFrame:
    return pd.DataFrame([{"trial_id": t, "status": s, "best_val_psnr": psnr, "parameters": n, "param_model.bottleneck_size": i}
                         for i, (t, s, psnr, n) in enumerate(TABLE)])


def test_the_front_holds_the_trials_no_other_trial_dominates_ties_included():
    trials = trial_table()
    front = pareto_front(trials, {"best_val_psnr": "max", "parameters": "min"})
    assert list(trials["trial_id"][front]) == FRONT


def test_the_front_follows_each_columns_direction():
    trials = trial_table()
    most_parameters = pareto_front(trials, {"best_val_psnr": "max", "parameters": "max"})
    assert list(trials["trial_id"][most_parameters]) == ["e"]
    one_column = pareto_front(trials, {"parameters": "min"})
    assert list(trials["trial_id"][one_column]) == ["g"]  # a failed trial's parameters are still a value of that column


def test_a_front_of_an_empty_table_or_without_columns():
    assert pareto_front(trial_table().head(0), {"parameters": "min"}).empty
    with pytest.raises(ValueError, match="directions must be 'min' or 'max'"):
        pareto_front(trial_table(), {"parameters": "smaller"})
    with pytest.raises(ValueError, match="at least one column"):
        pareto_front(trial_table(), {})


def hand_made(tmp_path: Path, objectives: list[str]) -> Study:
    folder = tmp_path / "hand-made"
    folder.mkdir()
    (folder / "study.yaml").write_text(yaml.safe_dump({"name": "hand-made", "metric": "val_psnr", "mode": "max", "objectives": objectives}))
    trial_table().to_csv(folder / "trials.csv", index=False)
    return read_study(folder)


@pytest.mark.parametrize("objectives, says", [(["parameters"], "This study optimised both"), ([], "optimised val_psnr alone")])
def test_the_tradeoffs_section_draws_the_front_and_tables_its_trials(tmp_path, objectives, says):
    study = hand_made(tmp_path, objectives)
    section = tradeoffs_section(study, tmp_path)
    assert section.title == "Trade-offs"
    assert says in " ".join(block.text for block in section.blocks if isinstance(block, Text))
    assert [block.file for block in section.blocks if isinstance(block, Figure)] == ["pareto_front.png"]
    assert (tmp_path / "pareto_front.png").stat().st_size > 1000
    table = next(block.frame for block in section.blocks if isinstance(block, Table))
    assert list(table["trial_id"]) == FRONT and list(table["parameters"]) == [100, 300, 300, 900]
    assert list(table.columns) == ["trial_id", "status", "model.bottleneck_size", "best_val_psnr", "parameters"]
    assert list(pd.read_csv(tmp_path / "pareto_front.csv")["trial_id"]) == FRONT


def test_a_study_without_parameter_counts_has_no_front(tmp_path):
    study = hand_made(tmp_path, [])
    study = Study(study.path, study.config, study.trials.drop(columns="parameters"))
    assert front_table(study).empty
    section = tradeoffs_section(study, tmp_path)
    assert "No front" in section.blocks[-1].text and not (tmp_path / "pareto_front.png").exists()


@pytest.mark.parametrize("objectives, message", [
    (["inference_ms"], "objectives: unknown objective.s. inference_ms; choose from parameters"),
    (["parameters", "parameters"], "objectives: each objective may be named once"),
    ("parameters", "objectives: expected a list"),
])
def test_an_unknown_or_repeated_objective_is_a_one_line_error(objectives, message):
    with pytest.raises(StudyConfigError, match=message) as error:
        build_config("smoke", assignments=[("objectives", objectives)])
    assert "\n" not in str(error.value)


def test_the_searcher_of_a_multi_objective_study_tells_both_values_and_tune_follows_the_metric(tmp_path):
    import optuna

    from study.optuna_db import storage_url
    from study.searcher import RecordingSearch

    config = build_config("smoke", assignments=[("name", "two"), ("storage", str(tmp_path)), ("objectives", ["parameters"])])
    searcher = RecordingSearch(config, storage_url(config))
    assert (searcher.metric, searcher.mode) == ("val_psnr", "max")
    searcher.suggest("a"), searcher.suggest("b")
    searcher.on_trial_result("a", {"epoch": 1, "val_psnr": 20.0})
    searcher.on_trial_result("a", {"epoch": 2, "val_psnr": 21.5})
    done = {"epoch": 3, "epochs_planned": 3, "best_val_psnr": 22.5, "best_epoch": 3}
    searcher.on_trial_complete("a", {**done, "parameters": 1234})
    searcher.on_trial_complete("b", done)  # no parameter count: it cannot be placed on the front
    recorded = optuna.load_study(study_name="two", storage=storage_url(config))
    assert [d.name for d in recorded.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert [(t.state.name, t.values) for t in recorded.trials] == [("COMPLETE", [22.5, 1234.0]), ("FAIL", None)]
    assert recorded.metric_names == ["val_psnr", "parameters"]
    assert recorded.trials[0].user_attrs["val_psnr_by_epoch"] == {"1": 20.0, "2": 21.5} and recorded.trials[0].intermediate_values == {}


def test_a_tiny_multi_objective_study_runs_end_to_end(study_env, tmp_path):
    """Four one-epoch Ray trials over the bottleneck size (about 45 s on two busy cores)."""
    import optuna

    from study.study import run_study

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"search": {"model.bottleneck_size": {"choice": [2, 4, 8, 16]}}}))
    settings = {"name": "pareto", "storage": str(study_env["storage"]), "data": str(study_env["data"]), "objectives": ["parameters"],
                "num_samples": 4, "scheduler": "none", "train.epochs": 1}
    summary = run_study(build_config("smoke", str(space), list(settings.items())))
    study_dir = Path(summary.study_uri)
    recorded = optuna.load_study(study_name="pareto", storage=f"sqlite:///{study_dir}/optuna.db")
    assert [d.name for d in recorded.directions] == ["MAXIMIZE", "MINIMIZE"]
    completed = [t for t in recorded.trials if t.state.name == "COMPLETE"]
    assert len(completed) == 4 and all(len(t.values) == 2 and all(map(math.isfinite, t.values)) for t in completed)
    assert all(set(t.user_attrs["val_psnr_by_epoch"]) == {"1"} for t in completed)  # one epoch each
    study = read_study(study_dir)
    front = front_table(study)
    optuna_front = {t.user_attrs["tune_trial_id"] for t in recorded.best_trials}
    assert set(front["trial_id"]) == optuna_front  # every trial completed, so the report's front is Optuna's
    by_id = study.trials.set_index("trial_id")
    assert list(front["parameters"]) == list(by_id.loc[front["trial_id"], "parameters"])
    assert front["parameters"].is_monotonic_increasing and front["best_val_psnr"].is_monotonic_increasing
    assert (study_dir / "best" / "model.pt").is_file()
    importance = param_importance(study)  # from optuna.db: each trial's first value, the validation metric
    assert importance.trials == 4 and "from optuna.db" in importance.reason
    assert by_id.loc[summary.best_trial, "best_val_psnr"] == by_id["best_val_psnr"].max()  # selection still follows the metric


def test_the_shipped_tradeoff_study_searches_width_and_bottleneck_on_two_objectives():
    config = build_config("local", config_file=str(Path(__file__).resolve().parents[1] / "study" / "configs" / "tradeoff.yaml"))
    assert config.objectives == ("parameters",)
    assert {"model.bottleneck_size", "model.base_width"} <= set(config.search)
    assert (config.num_samples, config.train.epochs) == (8, 6)
