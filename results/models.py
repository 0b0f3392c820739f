"""A study's or experiment's trained models as denoisers: each trial's best weights, loaded from its checkpoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from denoise_core.checkpoint import CheckpointError, load_model
from denoise_core.evaluate import model_denoiser
from denoise_core.model import count_parameters
from results.curves import Denoiser
from results.study_dir import Study, checkpoint_file, checkpoint_in

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialModel:
    trial_id: str
    row: dict[str, Any]  # the trial's row of trials.csv
    checkpoint: Path
    model: torch.nn.Module = field(repr=False)
    parameters: int


@dataclass(frozen=True)
class Learned:
    """A top model on the curves and grids: its display name (``AE#1 <trial id>``), its trial and its denoiser."""

    name: str
    trial: TrialModel
    denoise: Denoiser


def load_trial_models(study: Study, device: torch.device) -> tuple[list[TrialModel], list[str]]:
    """Every trial whose checkpoint is found and loads, in trial-table order; and one note per trial left out."""
    models, notes = [], []
    for _, row in study.trials.iterrows():
        path = checkpoint_file(study, row)
        if path is None:
            notes.append(f"trial {row['trial_id']}: no checkpoint found")
            continue
        try:
            model = load_model(path, device)[0]
        except (CheckpointError, FileNotFoundError, RuntimeError, ValueError) as error:
            log.warning("trial %s: checkpoint %s does not load: %s", row["trial_id"], path, error)
            notes.append(f"trial {row['trial_id']}: checkpoint does not load ({error})")
            continue
        models.append(TrialModel(trial_id=str(row["trial_id"]), row=row.to_dict(), checkpoint=path, model=model,
                                 parameters=count_parameters(model)))
    return models, notes


def experiment_models(directory: Path, trials: pd.DataFrame, device: torch.device) -> tuple[dict[str, dict[int, Denoiser]], list[str]]:
    """A controlled experiment's completed trials as denoisers, level -> seed -> denoiser (levels in trial-table order), and one
    note per completed trial whose checkpoint is missing or does not load."""
    models: dict[str, dict[int, Denoiser]] = {}
    notes = []
    completed = trials[trials["status"] == "completed"] if "status" in trials else trials.iloc[0:0]
    for _, row in completed.iterrows():
        path = checkpoint_in(directory, row)
        try:
            if path is None:
                raise FileNotFoundError("no checkpoint found")
            model = load_model(path, device)[0]
        except (CheckpointError, FileNotFoundError, RuntimeError, ValueError) as error:
            notes.append(f"{directory.name} trial {row['trial_id']} ({row['level']}, seed {row['seed']}): {error}")
            continue
        models.setdefault(str(row["level"]), {})[int(row["seed"])] = model_denoiser(model, device)
    return models, notes
