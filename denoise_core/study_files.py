"""What a study directory holds: the contract between the study that writes it and the reports that read it.

``STORAGE/NAME/``, as ``study.study`` writes it and ``results.study_dir`` reads it::

    study.yaml                   the resolved study configuration (every StudyConfig field)
    trials.csv, trials.parquet   one row per trial: trial_id, status, param_<setting>, best_<metric>, checkpoint, path
    trial_<id>/                  Tune's trial directory: result.json (one JSON line per epoch), checkpoint_*/checkpoint.pt
    train_runs/                  Ray Train's runs, for trials trained by a TorchTrainer
    best/model.pt                the best usable trial's best weights, self-contained; written last, so it marks a finished study
    best/holdout.csv             that model's scores on the fixed noisy hold-out
    best/train.yaml              its training settings, a recipe ``python -m denoise_core.train`` replays
    best/trial.yaml              its row of the trial table
    optuna.db, optuna-artifacts/ the Optuna study (unless optuna_storage names a server) and its image grids

A trial's status says what happened to it: ``completed``, ``stopped by ASHA``, ``interrupted``,
``failed: REASON`` (its loss diverged) or ``error: LAST LINE`` (it raised). Only completed and ASHA-stopped
trials with a finite selection metric are usable: their best weights are a fair model to select.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

STUDY_CONFIG = "study.yaml"
TRIALS_CSV = "trials.csv"
TRIALS_PARQUET = "trials.parquet"
TRIAL_DIR_PREFIX = "trial_"
RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"
TRAIN_RUNS = "train_runs"
BEST_MODEL = "best/model.pt"
BEST_HOLDOUT = "best/holdout.csv"
BEST_RECIPE = "best/train.yaml"
BEST_TRIAL = "best/trial.yaml"
OPTUNA_DB = "optuna.db"
OPTUNA_ARTIFACTS = "optuna-artifacts"

COMPLETED = "completed"
STOPPED_BY_ASHA = "stopped by ASHA"
INTERRUPTED = "interrupted"
FAILED = "failed"  # "failed: REASON"
ERROR = "error"  # "error: LAST LINE"
USABLE_STATUSES = (COMPLETED, STOPPED_BY_ASHA)

METRIC_MODES = {"val_loss": "min", "val_psnr": "max", "val_ssim": "max"}  # the validation metrics that select, and their direction
DEFAULT_METRIC = "val_psnr"  # the same for every loss, so trials with mse and mae compare fairly
DEFAULT_MODE = METRIC_MODES[DEFAULT_METRIC]
OBJECTIVE_MODES = {"parameters": "min"}  # what a study may optimise beside its metric (a trial-table column), and its direction


def trial_dirname(trial_id: str) -> str:
    return f"{TRIAL_DIR_PREFIX}{trial_id}"


def selection_column(metric: str) -> str:
    """The trial-table column of a metric at the trial's best epoch (``val_psnr`` -> ``best_val_psnr``)."""
    return f"best_{metric}"


def trial_status(error: Any, metrics: Mapping[str, Any], *, ended: bool, planned_epochs: int, asha: bool) -> str:
    """What happened to a trial, in words (see the module docstring).

    ``error`` is what the trial raised (None: nothing), ``metrics`` its last report, ``ended`` whether the run
    saw it end (not cut short by a stop), ``planned_epochs`` its epochs when the report does not say, and
    ``asha`` whether a scheduler could stop it early.
    """
    if error is not None:
        return f"{ERROR}: {str(error).strip().splitlines()[-1][:200]}"
    if metrics.get("diverged"):
        return f"{FAILED}: {metrics.get('error', 'loss diverged')}"
    if not ended:
        return INTERRUPTED
    if metrics.get("epoch", 0) >= metrics.get("epochs_planned", planned_epochs) or metrics.get("stopped_early"):
        return COMPLETED
    return STOPPED_BY_ASHA if asha else INTERRUPTED


def usable_rows(trials: pd.DataFrame, column: str) -> pd.Series:
    """For each row of a trial table, whether the trial is usable: a usable status and a finite ``column``."""
    if column not in trials or "status" not in trials:
        return pd.Series(False, index=trials.index)
    values = pd.to_numeric(trials[column], errors="coerce").astype(float)
    return trials["status"].isin(USABLE_STATUSES) & pd.Series(np.isfinite(values.to_numpy()), index=trials.index)
