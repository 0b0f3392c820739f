"""Reading a study directory: its resolved config, its trial table and each trial's checkpoint.

A study directory is read the same way whether a local run wrote it or it was copied back from a cluster:
trial tables hold absolute checkpoint paths of the machine that ran the trial, so a trial's checkpoint is looked up
under the study directory (``trial_<id>/checkpoint_*/checkpoint.pt``), and a recorded path is used only inside it. What the
directory holds, and which trials are usable, is ``denoise_core.study_files``.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from denoise_core.data import DOWNLOAD_HINT, ENV_VAR, DataNotFound, resolve_data_path
from denoise_core.errors import InputError, MissingFile
from denoise_core.settings import load_yaml_file
from denoise_core.study_files import (BEST_MODEL, CHECKPOINT_FILE, DEFAULT_METRIC, METRIC_MODES, STUDY_CONFIG, TRIALS_CSV, TRIALS_PARQUET, selection_column,
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
        trials = read_trials_csv(path / TRIALS_CSV)
    elif (path / TRIALS_PARQUET).is_file():
        trials = pd.read_parquet(path / TRIALS_PARQUET)
    else:
        raise MissingFile(f"{path} has no {TRIALS_CSV} or {TRIALS_PARQUET}: the study has not finished (resume it with --resume)")
    trials["trial_id"] = trials["trial_id"].astype(str)
    return Study(path=path, config=config, trials=trials)


def read_trials_csv(path: Path) -> pd.DataFrame:
    """The trial table; a file cut off mid-row, not CSV text, or without a trial_id column is one line naming it."""
    problem = trials_csv_problem(path)
    if problem:
        raise InputError(f"{path} is damaged: {problem}; copy it again from the machine that ran the study")
    return pd.read_csv(path)


def trials_csv_problem(path: Path) -> str | None:
    """What makes ``path`` unreadable as a trial table, or None."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return "it is not CSV text (not UTF-8)"
    if not text.strip():
        return "it is empty"
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    if "trial_id" not in header:
        return f"no trial_id column (header: {', '.join(header[:5])})"
    for number, row in enumerate(rows[1:], start=2):
        if row and len(row) != len(header):
            return f"line {number} has {len(row)} fields, the header {len(header)}"
    if not text.endswith("\n"):
        return "it ends mid-row (cut off)"
    return None


def study_warnings(study: Study) -> list[str]:
    """What a report must say about a study that may be incomplete: fewer trials than planned, no best model."""
    warnings = []
    planned = study.config.get("num_samples")
    if isinstance(planned, int) and len(study.trials) < planned:
        warnings.append(f"{study.path / TRIALS_CSV} holds {len(study.trials)} trials but the study planned {planned} (num_samples): "
                        "the table is truncated or the study did not finish")
    if not (study.path / BEST_MODEL).is_file():
        warnings.append(f"{study.path} has no {BEST_MODEL}: the study did not finish (resume it with --resume)")
    return warnings


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
    """The trial's ``checkpoint.pt`` inside this study directory, never another study's (``checkpoint_in``)."""
    return checkpoint_in(study.path, row)


def checkpoint_in(directory: Path, row: pd.Series) -> Path | None:
    """A trial's ``checkpoint.pt`` inside a study or experiment directory, never another one's.

    A copied directory's ``trials.csv`` still records the original's absolute paths: the recorded checkpoint is looked up
    under this directory first (by its trial and checkpoint folder names), and the recorded path itself is used
    only when it lies inside this directory.
    """
    recorded = row.get("checkpoint")
    if isinstance(recorded, str) and recorded and "://" not in recorded:
        moved = directory / Path(recorded).parent.name / Path(recorded).name / CHECKPOINT_FILE
        if moved.is_file():
            return moved
        candidate = Path(recorded) / CHECKPOINT_FILE
        if candidate.is_file() and candidate.resolve().is_relative_to(directory.resolve()):
            return candidate
    found = sorted(directory.glob(f"{trial_dirname(row['trial_id'])}*/checkpoint_*/{CHECKPOINT_FILE}"))
    return found[-1] if found else None


def top_trials(study: Study, count: int) -> pd.DataFrame:
    """The ``count`` best usable trials (by the validation metric) whose checkpoint can be found."""
    ranked = ranked_trials(study)
    have = ranked[ranked.apply(lambda row: checkpoint_file(study, row) is not None, axis=1)] if len(ranked) else ranked
    return have.head(count)
