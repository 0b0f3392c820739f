"""The report's "The search" section (results/search.py, results/importance.py) on a study directory written here by hand:
trials.csv, study.yaml and each trial's result.json with known timestamps, epochs, statuses and two nodes. No training, no Ray."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from results.html import Figure, Text, render_html
from results.importance import FANOVA, PED_ANOVA, param_importance
from results.search import asha_rungs, learning_curves, optimization_history, parse_line, read_histories, timeline
from results.sections import search_section
from results.study_dir import Study, read_study

NODE_A, NODE_B = "10.0.0.1", "10.0.0.2"
SEARCH = {"lr": {"loguniform": [0.0001, 0.01]}, "model.dropout": {"uniform": [0.0, 0.2]}, "loss": {"choice": ["mse", "mae"]}}
CONFIG = {"name": "hand-made", "metric": "val_psnr", "mode": "max", "scheduler": "asha", "grace_period": 1, "reduction_factor": 2,
          "train": {"epochs": 4}, "search": SEARCH}
# trial id, status, node that trained it, epochs as (epoch, val_psnr, timestamp, time_this_iter_s, iterations_since_restore)
TRIALS = (
    ("a", "completed", NODE_A, [(1, 20.0, 1100, 100.0, 1), (2, 22.0, 1200, 100.0, 2), (3, 23.0, 1300, 100.0, 3), (4, 24.0, 1400, 100.0, 4)]),
    ("b", "stopped by ASHA", NODE_B, [(1, 18.0, 1050, 50.0, 1)]),
    ("c", "stopped by ASHA", NODE_B, [(1, 19.0, 1150, 90.0, 1), (2, 21.0, 1250, 100.0, 2)]),
    ("d", "completed", NODE_A, [(1, 21.0, 1110, 100.0, 1), (2, 23.0, 1210, 100.0, 2), (3, 25.0, 1310, 100.0, 3), (4, 26.0, 1390, 80.0, 4)]),
    ("e", "failed: loss diverged", NODE_B, [(1, None, 1300, 40.0, 1)]),
    ("h", "completed", NODE_A, [(1, 20.0, 1500, 100.0, 1), (2, 23.0, 1600, 100.0, 2), (3, 24.0, 1900, 100.0, 1), (4, 25.0, 2000, 100.0, 2)]),
)
BEST = {"a": 24.0, "b": 18.0, "c": 21.0, "d": 26.0, "e": math.nan, "h": 25.0, "f": 30.0, "g": math.nan}


def result_line(trial_id: str, node: str, epoch: int, value: float | None, timestamp: int, took: float, restored: int) -> str:
    """A line as Tune writes it; the trainable's own node differs from the node that trained, and some lines carry val_images."""
    record = {"epoch": epoch, "val_psnr": value, "best_val_psnr": value}
    if epoch == 2:
        record["val_images"] = [[[1, 2], [3, 4]], [[255, 0], [7, 8]]]
    record |= {"timestamp": timestamp, "time_this_iter_s": took, "training_iteration": epoch, "iterations_since_restore": restored,
               "trial_id": trial_id, "node_ip": "10.0.0.9", "train_node_ip": node}
    if epoch == 3:
        record["val_images"] = [[[9]]]  # the last key: its comma stays behind when it is cut out
    return json.dumps(record)


def write_study(root: Path, config: dict = CONFIG) -> Path:
    """Six trials with result.json, one (f) whose result.json is damaged, one (g) with none."""
    study = root / "hand-made"
    rows = []
    for index, (trial_id, status, node, epochs) in enumerate(TRIALS):
        folder = study / f"trial_{trial_id}"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text("".join(result_line(trial_id, node, *epoch) + "\n" for epoch in epochs))
        rows.append({"trial_id": trial_id, "status": status, "param_lr": 0.001 * (index + 1), "param_model.dropout": 0.03 * index,
                     "param_loss": "mse" if index % 2 else "mae", "best_val_psnr": BEST[trial_id], "node_ip": "10.0.0.9"})
    (study / "trial_f").mkdir()
    (study / "trial_f" / "result.json").write_text(result_line("f", NODE_A, 1, 30.0, 1100, 100.0, 1) + "\n" + '{"epoch": 2, "val_ps')
    rows.append({"trial_id": "f", "status": "completed", "param_lr": 0.008, "param_model.dropout": 0.1, "param_loss": "mae", "best_val_psnr": 30.0})
    rows.append({"trial_id": "g", "status": "error: RuntimeError: worker died", "param_lr": 0.009, "param_model.dropout": 0.2, "param_loss": "mse"})
    pd.DataFrame(rows).to_csv(study / "trials.csv", index=False)
    (study / "study.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return study


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Study:
    return read_study(write_study(tmp_path_factory.mktemp("search")))


@pytest.fixture(scope="module")
def epochs(study) -> pd.DataFrame:
    return read_histories(study).epochs


def test_val_images_are_cut_out_before_parsing_wherever_they_sit():
    middle = parse_line('{"epoch": 2, "val_images": [[[1, 2], [3, 255]]], "timestamp": 5}')
    last = parse_line('{"epoch": 3, "val_images": [[[9]]]}')
    assert middle == {"epoch": 2, "timestamp": 5} and last["epoch"] == 3


def test_histories_hold_every_readable_epoch_and_name_the_skipped_trials(study, epochs):
    histories = read_histories(study)
    assert sorted(epochs["trial_id"].unique()) == ["a", "b", "c", "d", "e", "h"]
    assert len(epochs) == 4 + 1 + 2 + 4 + 1 + 4
    assert epochs.set_index(["trial_id", "epoch"]).at[("d", 3), "value"] == 25.0
    assert set(epochs.loc[epochs["trial_id"] == "c", "node"]) == {NODE_B}  # train_node_ip, not the trainable's node_ip
    damaged, missing = [n for n in histories.notes if "Trial f" in n], [n for n in histories.notes if "no result.json" in n]
    assert len(damaged) == 1 and "damaged" in damaged[0] and "line 2" in damaged[0]
    assert len(missing) == 1 and "1 of 8 trials" in missing[0] and "(g)" in missing[0]


def test_history_is_in_finishing_order_with_the_best_so_far_of_usable_trials(study, epochs):
    history = optimization_history(study, epochs)
    assert list(history["trial_id"]) == ["b", "c", "e", "d", "a", "h"]  # last results at 1050, 1250, 1300, 1390, 1400, 2000
    assert list(history["order"]) == [1, 2, 3, 4, 5, 6]
    assert list(history["finished"]) == [1050, 1250, 1300, 1390, 1400, 2000]
    assert math.isnan(history["best_val_psnr"].iloc[2])  # the failed trial never scored
    assert list(history["best_so_far"]) == [18.0, 21.0, 21.0, 26.0, 26.0, 26.0]


def test_best_so_far_follows_the_mode(study, epochs):
    lower = Study(study.path, {**study.config, "mode": "min"}, study.trials)
    assert list(optimization_history(lower, epochs)["best_so_far"]) == [18.0, 18.0, 18.0, 18.0, 18.0, 18.0]


def test_asha_cuts_are_at_the_last_epoch_of_each_stopped_trial(study, epochs):
    curves = learning_curves(study, epochs)
    cuts = curves[curves["cut"]]
    assert list(zip(cuts["trial_id"], cuts["epoch"], cuts["val_psnr"])) == [("b", 1, 18.0), ("c", 2, 21.0)]
    assert list(curves.loc[curves["trial_id"] == "h", "val_psnr"]) == [20.0, 23.0, 24.0, 25.0]
    assert "e" not in set(curves["trial_id"])  # its one epoch has no score


@pytest.mark.parametrize(("grace", "factor", "epochs", "rungs"), [(1, 2, 4, [1, 2]), (3, 3, 12, [3, 9]), (3, 3, 9, [3]), (2, 3, 2, [])])
def test_asha_rungs_lie_below_the_last_epoch(grace, factor, epochs, rungs):
    assert asha_rungs({"scheduler": "asha", "grace_period": grace, "reduction_factor": factor, "train": {"epochs": epochs}}) == rungs


def test_rungs_reach_the_most_epochs_the_search_can_choose():
    config = {"scheduler": "asha", "grace_period": 2, "reduction_factor": 2, "train": {"epochs": 4}, "search": {"epochs": {"choice": [4, 16]}}}
    assert asha_rungs(config) == [2, 4, 8]
    assert asha_rungs({**config, "scheduler": "fifo"}) == []


def test_timeline_has_a_bar_per_stretch_from_the_first_epochs_start_to_the_last_result(study, epochs):
    bars = timeline(study, epochs)
    found = {(row.trial_id, row.segment): (row.node, row.start, row.end, row.lane) for row in bars.itertuples()}
    assert found == {
        ("a", 0): (NODE_A, 1000.0, 1400.0, 0), ("d", 0): (NODE_A, 1010.0, 1390.0, 1),  # ran at once on one node: two lanes
        ("h", 0): (NODE_A, 1400.0, 1600.0, 0), ("h", 1): (NODE_A, 1800.0, 2000.0, 0),  # restored: a second stretch
        ("b", 0): (NODE_B, 1000.0, 1050.0, 0), ("c", 0): (NODE_B, 1060.0, 1250.0, 0), ("e", 0): (NODE_B, 1260.0, 1300.0, 0),
    }
    assert list(dict.fromkeys(bars["node"])) == [NODE_A, NODE_B]


def test_the_section_writes_every_figure_and_table_and_notes_the_damaged_file(study, tmp_path):
    section = search_section(study, tmp_path)
    assert section.title == "The search"
    figures = [block.file for block in section.blocks if isinstance(block, Figure)]
    assert figures == ["optimization_history.png", "learning_curves.png", "timeline.png", "importance.png", "parallel_coordinates.png"]
    for name in ("optimization_history", "learning_curves", "timeline"):
        assert (tmp_path / f"{name}.csv").is_file() and (tmp_path / f"{name}.png").stat().st_size > 5_000
    notes = " ".join(block.text for block in section.blocks if isinstance(block, Text))
    assert "Trial f: its result.json is damaged" in notes and "epochs 1 and 2" in notes
    assert list(pd.read_csv(tmp_path / "timeline.csv")["trial_id"]) == ["a", "d", "h", "h", "b", "c", "e"]
    assert render_html("t", "s", [section], tmp_path).count("<img ") == 5


def test_a_study_without_any_result_json_still_gets_importance(tmp_path):
    study = read_study(write_study(tmp_path, {**CONFIG, "scheduler": "fifo"}))
    for trial in study.path.glob("trial_*"):
        (trial / "result.json").unlink()
    section = search_section(study, tmp_path)
    texts = " ".join(block.text for block in section.blocks if isinstance(block, Text))
    assert "8 of 8 trials have no result.json" in texts and "No optimization history" in texts and "No timeline" in texts
    assert [block.file for block in section.blocks if isinstance(block, Figure)] == ["importance.png", "parallel_coordinates.png"]


def completed_trials(count: int) -> Study:
    """``count`` completed trials in which the learning rate decides the score and dropout barely matters."""
    rng = np.random.default_rng(0)
    lr = 10 ** rng.uniform(-4, -2, count)
    dropout = rng.uniform(0.0, 0.2, count)
    trials = pd.DataFrame({"trial_id": [f"t{i:02d}" for i in range(count)], "status": "completed", "param_lr": lr, "param_model.dropout": dropout,
                           "param_loss": ["mse", "mae"] * (count // 2) + ["mse"] * (count % 2),
                           "best_val_psnr": 20 + 3 * np.log10(lr) + 0.1 * dropout})
    return Study(Path("/nonexistent"), CONFIG, trials)


def test_fanova_stands_beside_ped_anova_from_ten_completed_trials():
    nine, ten = param_importance(completed_trials(9)), param_importance(completed_trials(10))
    assert nine.evaluators == [PED_ANOVA] and "fewer than 10 trials" in nine.reason
    assert ten.evaluators == [PED_ANOVA, FANOVA] and "fANOVA importance" in ten.reason and "over 10 completed trials" in ten.reason
    for importance in (nine, ten):
        assert set(importance.table["parameter"]) == {"lr", "model.dropout", "loss"}
        for column in importance.evaluators:
            assert np.isfinite(importance.table[column]).all() and importance.table[column].sum() == pytest.approx(1.0)
    assert ten.table.set_index("parameter")[FANOVA].idxmax() == "lr"


def test_ashas_stopped_trials_do_not_count_towards_fanova():
    study = completed_trials(12)
    study.trials.loc[study.trials.index[:3], "status"] = "stopped by ASHA"
    importance = param_importance(study)
    assert importance.trials == 9 and importance.evaluators == [PED_ANOVA]


def test_fanova_is_the_same_on_every_run():
    first, second = param_importance(completed_trials(12)), param_importance(completed_trials(12))
    pd.testing.assert_frame_equal(first.table, second.table)


def test_trials_that_all_scored_the_same_have_no_importance():
    study = completed_trials(12)
    study.trials["best_val_psnr"] = 20.0
    importance = param_importance(study)
    assert importance.table is None and "all scored the same" in importance.reason


def test_a_fifo_study_has_curves_without_rungs(tmp_path):
    study = read_study(write_study(tmp_path, {**CONFIG, "scheduler": "fifo"}))
    blocks = search_section(study, tmp_path).blocks
    curves = next(block.text for block in blocks if isinstance(block, Text) and block.text.startswith("Learning curves"))
    assert "ran without ASHA (scheduler: fifo)" in curves and "rung" not in curves
