"""The leaderboard: every trial with its hyperparameters, validation scores and its TEST scores.

Trials are ranked by the study's own validation metric, as model selection ranked them; the test columns are
shown beside it and never used to rank. A trial's test score is the mean over the study's salt-and-pepper
hold-out conditions (all of them, else every condition) on the first ``faces`` hold-out faces.
"""

from __future__ import annotations

import pandas as pd

from denoise_core.holdout import Holdout
from results.curves import model_curves, sp_conditions
from results.models import TrialModel, as_denoiser
from results.study_dir import Study, ranked_trials

VALIDATION = {"best_val_loss": "val_loss", "best_val_psnr": "val_psnr", "best_val_ssim": "val_ssim"}


def test_conditions(study: Study, available: tuple[str, ...]) -> tuple[str, ...]:
    """The conditions a trial's test score averages: the study's S&P conditions (else all of its conditions)."""
    own = tuple(c for c in study.conditions if c in available) or available
    return sp_conditions(own) or own


def trial_test_rows(models: list[TrialModel], holdout: Holdout, conditions: tuple[str, ...], faces: int | None, device) -> pd.DataFrame:
    """Curve-format rows (model = trial id) for every loaded trial at ``conditions``."""
    return model_curves({m.trial_id: as_denoiser(m.model, device) for m in models}, holdout, conditions, faces)


def leaderboard(study: Study, test_rows: pd.DataFrame, parameters: dict[str, int]) -> pd.DataFrame:
    """One row per trial, best validation metric first; trials that failed or were never scored last."""
    trials = study.trials.copy()
    order = {trial_id: rank for rank, trial_id in enumerate(ranked_trials(study)["trial_id"], start=1)}
    means = test_rows.groupby("model")[["psnr", "ssim"]].mean() if len(test_rows) else pd.DataFrame(columns=["psnr", "ssim"])
    table = pd.DataFrame({"rank": trials["trial_id"].map(order).astype("Int64"), "trial_id": trials["trial_id"], "status": trials["status"]})
    for source, name in VALIDATION.items():  # the scores first, so a wide table of settings never hides them
        table[name] = trials.get(source)
    table["test_psnr"] = trials["trial_id"].map(means["psnr"]) if len(means) else float("nan")
    table["test_ssim"] = trials["trial_id"].map(means["ssim"]) if len(means) else float("nan")
    for column in ("best_epoch", "epochs_run"):
        table[column] = trials.get(column)
    for column in study.param_columns:
        table[column[len("param_"):]] = trials[column]
    table["parameters"] = trials.get("parameters")
    if "parameters" in trials:
        table["parameters"] = table["parameters"].fillna(trials["trial_id"].map(parameters))
    else:
        table["parameters"] = trials["trial_id"].map(parameters)
    table["parameters"] = table["parameters"].astype("Int64")
    table["time_s"] = trials.get("time_s")
    return table.sort_values("rank", na_position="last", kind="stable").reset_index(drop=True)
