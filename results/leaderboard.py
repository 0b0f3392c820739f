"""The leaderboard: every trial with its hyperparameters, validation scores and its TEST scores.

Trials are ranked by the study's own validation metric, as model selection ranked them; the test columns are
shown beside it and never used to rank. A trial's test score is the mean over the study's salt-and-pepper
hold-out conditions (all of them, else every condition) on the first ``faces`` hold-out faces.
"""

from __future__ import annotations

import pandas as pd

from denoise_core.evaluate import model_denoiser
from denoise_core.holdout import Holdout
from denoise_core.study_files import BEST_HOLDOUT
from results.curves import COLUMNS, SCORES, curve_row, model_curves, sp_conditions
from results.models import TrialModel
from results.study_dir import Study, ranked_trials

VALIDATION = {"best_val_loss": "val_loss", "best_val_psnr": "val_psnr", "best_val_ssim": "val_ssim"}


def test_conditions(study: Study, available: tuple[str, ...]) -> tuple[str, ...]:
    """The conditions a trial's test score averages: the study's S&P conditions (else all of its conditions)."""
    own = tuple(c for c in study.conditions if c in available) or available
    return sp_conditions(own) or own


def trial_test_rows(models: list[TrialModel], holdout: Holdout, conditions: tuple[str, ...], faces: int | None, device,
                    known: pd.DataFrame | None = None) -> pd.DataFrame:
    """Curve-format rows (model = trial id) for every loaded trial at ``conditions``; a trial's rows in ``known`` (the
    study's own scores, ``study_scores``) are taken as they are instead of being scored again. Trials left with the same
    conditions are scored together, so each condition's noisy input is scored once for them."""
    known = known if known is not None else pd.DataFrame(columns=list(COLUMNS))
    done = known[known["condition"].isin(conditions)]
    pending: dict[tuple[str, ...], dict] = {}
    for model in models:
        have = set(done.loc[done["model"] == model.trial_id, "condition"])
        todo = tuple(c for c in conditions if c not in have)
        if todo:
            pending.setdefault(todo, {})[model.trial_id] = model_denoiser(model.model, device)
    ids = {model.trial_id for model in models}
    frames = [done[done["model"].isin(ids)], *(model_curves(denoisers, holdout, todo, faces) for todo, denoisers in pending.items())]
    frames = [frame for frame in frames if len(frame)]
    return pd.concat(frames, ignore_index=True)[list(COLUMNS)] if frames else pd.DataFrame(columns=list(COLUMNS))


def study_scores(study: Study, holdout: Holdout, faces: int | None) -> pd.DataFrame:
    """The scores the study itself took of its best trial at the end (``best/holdout.csv``), as curve rows, when they are
    on the faces this report scores: the same weights on the same fixed noisy faces, so the report does not score them
    again. Their ``seconds`` (the time to denoise) are not known."""
    path = study.path / BEST_HOLDOUT
    if not path.is_file():
        return pd.DataFrame(columns=list(COLUMNS))
    table = pd.read_csv(path, dtype={"trial_id": str, "condition": str})
    if not {"trial_id", "condition", "faces", *SCORES}.issubset(table.columns):
        return pd.DataFrame(columns=list(COLUMNS))
    wanted = min(faces or len(holdout.clean), len(holdout.clean))
    rows = [curve_row(row["trial_id"], "learned", row["condition"], {**{k: row[k] for k in table.columns if k not in ("trial_id", "condition")},
                                                                          "seconds": float("nan")})
            for _, row in table[table["faces"] == wanted].iterrows()]
    return pd.DataFrame(rows, columns=list(COLUMNS))


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
