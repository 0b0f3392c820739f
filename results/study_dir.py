"""Reading a study directory: its resolved config, its trial table and each trial's checkpoint.

A study directory is read the same way whether a local run wrote it or it was copied back from a cluster:
trial tables hold absolute checkpoint paths of the machine that ran the trial, so a path that does not exist
here is looked up again under the study directory (``trial_<id>/checkpoint_*/checkpoint.pt``). What the
directory holds, and which trials are usable, is ``denoise_core.study_files``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from denoise_core.data import DOWNLOAD_HINT, ENV_VAR, DataNotFound, resolve_data_path
from denoise_core.errors import MissingFile
from denoise_core.settings import load_yaml_file
from denoise_core.study_files import (CHECKPOINT_FILE, DEFAULT_METRIC, METRIC_MODES, STUDY_CONFIG, TRIALS_CSV, TRIALS_PARQUET, selection_column,
                                      trial_dirname, usable_rows)


@dataclass(frozen=True)
class Study:
    """One study directory as the report sees it."""

    path: Path
    config: dict[str, Any]  # study.yaml
    trials: pd.DataFrame  # trials.csv (or trials.parquet)

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.path.name)

    @property
    def metric(self) -> str:
        """The trial-table column that selected models (validation only), e.g. ``best_val_psnr``."""
        return selection_column(self.epoch_metric)

    @property
    def epoch_metric(self) -> str:
        """The same metric as each epoch reported it to Tune (a key of result.json), e.g. ``val_psnr``."""
        return str(self.config.get("metric", DEFAULT_METRIC))

    @property
    def mode(self) -> str:
        """``min`` or ``max``: the saved mode, else the direction of the metric."""
        return str(self.config.get("mode", METRIC_MODES.get(self.epoch_metric, "max")))

    @property
    def conditions(self) -> tuple[str, ...]:
        return tuple(self.config.get("holdout_conditions") or ())

    @property
    def param_columns(self) -> list[str]:
        return [c for c in self.trials.columns if c.startswith("param_")]


def read_study(path: str | os.PathLike) -> Study:
    """Load ``study.yaml`` and the trial table, or fail in one line naming what is missing or damaged."""
    path = Path(path)
    config_file = path / STUDY_CONFIG
    if not config_file.is_file():
        raise MissingFile(f"{path} is not a study directory: no {STUDY_CONFIG} (run python study/run.py first)")
    config = load_yaml_file(config_file, "study file")
    if (path / TRIALS_CSV).is_file():
        trials = pd.read_csv(path / TRIALS_CSV)
    elif (path / TRIALS_PARQUET).is_file():
        trials = pd.read_parquet(path / TRIALS_PARQUET)
    else:
        raise MissingFile(f"{path} has no {TRIALS_CSV} or {TRIALS_PARQUET}: the study has not finished (resume it with --resume)")
    trials["trial_id"] = trials["trial_id"].astype(str)
    return Study(path=path, config=config, trials=trials)


def study_data_path(study: Study, cli_value: str | os.PathLike | None) -> Path:
    """``--data``, else ``$FER2013_PATH``, else the study's own ``data`` entry; a one-line error if none exists."""
    if cli_value or os.environ.get(ENV_VAR) or not study.config.get("data"):
        return resolve_data_path(cli_value)
    path = Path(str(study.config["data"])).expanduser()
    if not path.exists():
        raise DataNotFound(
            f"FER2013 not found at {path} (from {study.path / STUDY_CONFIG}): pass --data PATH or set {ENV_VAR} "
            f"(download: {DOWNLOAD_HINT})"
        )
    return path


def ranked_trials(study: Study) -> pd.DataFrame:
    """Usable trials (``denoise_core.study_files``), best first: the order model selection uses."""
    usable = study.trials[usable_rows(study.trials, study.metric)]
    return usable.sort_values(study.metric, ascending=study.mode == "min", kind="stable")


def checkpoint_file(study: Study, row: pd.Series) -> Path | None:
    """The trial's ``checkpoint.pt``: the recorded path, else the same trial's checkpoint under this directory."""
    recorded = row.get("checkpoint")
    if isinstance(recorded, str) and recorded and "://" not in recorded:
        candidate = Path(recorded) / CHECKPOINT_FILE
        if candidate.is_file():
            return candidate
        moved = study.path / Path(recorded).parent.name / Path(recorded).name / CHECKPOINT_FILE
        if moved.is_file():
            return moved
    found = sorted(study.path.glob(f"{trial_dirname(row['trial_id'])}*/checkpoint_*/{CHECKPOINT_FILE}"))
    return found[-1] if found else None


def top_trials(study: Study, count: int) -> pd.DataFrame:
    """The ``count`` best usable trials (by the validation metric) whose checkpoint can be found."""
    ranked = ranked_trials(study)
    have = ranked[ranked.apply(lambda row: checkpoint_file(study, row) is not None, axis=1)] if len(ranked) else ranked
    return have.head(count)
