"""The study-directory contract (``denoise_core.study_files``): one set of defaults, statuses and usable trials for
the study that writes a directory and the reports that read it."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from denoise_core.study_files import (COMPLETED, DEFAULT_METRIC, DEFAULT_MODE, INTERRUPTED, METRIC_MODES, STOPPED_BY_ASHA, STUDY_CONFIG, TRIALS_CSV,
                                      selection_column, trial_status, usable_rows)
from results.study_dir import ranked_trials, read_study
from study.config import StudyConfig, StudyConfigError, build_config


def write_study(root: Path, config_text: str, rows: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / STUDY_CONFIG).write_text(config_text)
    pd.DataFrame(rows).to_csv(root / TRIALS_CSV, index=False)
    return root


def test_study_config_defaults_are_the_contracts():
    assert (StudyConfig().metric, StudyConfig().mode) == (DEFAULT_METRIC, DEFAULT_MODE) == ("val_psnr", "max")
    smoke = build_config("smoke")
    assert (smoke.metric, smoke.mode) == (DEFAULT_METRIC, DEFAULT_MODE)


def test_a_study_yaml_without_metric_or_mode_reads_as_study_config_selects(tmp_path):
    study = read_study(write_study(tmp_path / "bare", "name: bare\n", [{"trial_id": "a", "status": COMPLETED, "best_val_psnr": 20.0}]))
    assert study.metric == selection_column(StudyConfig().metric) == "best_val_psnr"
    assert study.epoch_metric == StudyConfig().metric and study.mode == StudyConfig().mode
    by_loss = read_study(write_study(tmp_path / "loss", "metric: val_loss\n", [{"trial_id": "a", "status": COMPLETED, "best_val_loss": 0.1}]))
    assert by_loss.mode == "min"


@pytest.mark.parametrize("metric", sorted(METRIC_MODES))
def test_study_config_accepts_each_metric_only_in_its_contract_mode(metric):
    assert StudyConfig(metric=metric, mode=METRIC_MODES[metric]).mode == METRIC_MODES[metric]
    with pytest.raises(StudyConfigError, match=f"mode for {metric} must be {METRIC_MODES[metric]}"):
        StudyConfig(metric=metric, mode="max" if METRIC_MODES[metric] == "min" else "min")


def test_study_yaml_is_read_with_yaml_1_2_numbers(tmp_path):
    text = "name: numbers\nsearch:\n  lr: {loguniform: [1e-4, 1e-2]}\ntrain: {lr: 5e-3}\n"
    study = read_study(write_study(tmp_path / "numbers", text, [{"trial_id": "a", "status": COMPLETED, "best_val_psnr": 20.0}]))
    assert study.config["search"]["lr"] == {"loguniform": [0.0001, 0.01]} and study.config["train"]["lr"] == 0.005


@pytest.mark.parametrize("error, metrics, ended, asha, status", [
    (RuntimeError("Traceback\n  ...\nValueError: worker died"), {}, True, True, "error: ValueError: worker died"),
    (None, {"diverged": 1, "error": "loss is nan at epoch 2"}, True, True, "failed: loss is nan at epoch 2"),
    (None, {"diverged": 1}, True, True, "failed: loss diverged"),
    (None, {"epoch": 2, "epochs_planned": 4}, False, True, INTERRUPTED),
    (None, {"epoch": 4, "epochs_planned": 4}, True, True, COMPLETED),
    (None, {"epoch": 3}, True, True, COMPLETED),  # no epochs_planned in the report: the planned 3
    (None, {"epoch": 2, "epochs_planned": 4, "stopped_early": 1}, True, True, COMPLETED),  # early stopping ends a trial normally
    (None, {"epoch": 2, "epochs_planned": 4}, True, True, STOPPED_BY_ASHA),
    (None, {"epoch": 2, "epochs_planned": 4}, True, False, INTERRUPTED),
])
def test_trial_status_says_what_happened(error, metrics, ended, asha, status):
    assert trial_status(error, metrics, ended=ended, planned_epochs=3, asha=asha) == status


def test_usable_trials_are_completed_or_asha_stopped_with_a_finite_metric(tmp_path):
    rows = [
        {"trial_id": "a", "status": COMPLETED, "best_val_psnr": 21.0},
        {"trial_id": "b", "status": STOPPED_BY_ASHA, "best_val_psnr": 23.0},
        {"trial_id": "c", "status": COMPLETED, "best_val_psnr": math.nan},
        {"trial_id": "d", "status": COMPLETED, "best_val_psnr": -math.inf},
        {"trial_id": "e", "status": INTERRUPTED, "best_val_psnr": 30.0},
        {"trial_id": "f", "status": "failed: loss diverged", "best_val_psnr": 29.0},
        {"trial_id": "g", "status": COMPLETED, "best_val_psnr": 22.0},
    ]
    table = pd.DataFrame(rows)
    assert usable_rows(table, "best_val_psnr").tolist() == [True, True, False, False, False, False, True]
    assert not usable_rows(table, "best_val_ssim").any() and usable_rows(table.iloc[:0], "best_val_psnr").empty
    study = read_study(write_study(tmp_path / "ranked", "name: ranked\n", rows))
    assert ranked_trials(study)["trial_id"].tolist() == ["b", "g", "a"]
