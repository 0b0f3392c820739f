"""The study's Tune searcher: Optuna's seeded TPE through Optuna's public ask-and-tell, recording what happened to each trial.

Each Tune trial is one Optuna trial, asked for (``study.ask()``) and sampled define-by-run from the search space
(``study.space.sample``). Its Optuna state says what happened to it: COMPLETE with its selection metric (the best
epoch's, as the exported model is that epoch's) and the study's other ``objectives`` (its parameter count), PRUNED
when ASHA stopped it, FAIL when it diverged or raised.
Each epoch is one intermediate value (in a multi-objective study, which Optuna keeps none for, an entry of the
user attribute ``{metric}_by_epoch``); the trial's settings and validation scores are user attributes, and its
noisy | denoised | clean grids are artifacts. Everything is written by the driver, where the searcher runs.

Everything lasting is in the Optuna database. The searcher's own state, which Tune saves beside the experiment for a
resume, is plain JSON (which Tune trial is which Optuna trial number, which are told, the last epoch recorded), so
resuming a study directory someone sent you reads data and runs none of its code.
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from denoise_core.files import write_atomic
from denoise_core.space import assignments
from denoise_core.study_files import COMPLETED, FAILED, OBJECTIVE_MODES, STOPPED_BY_ASHA, trial_status
from study import space
from study.config import StudyConfig, StudyConfigError
from study.optuna_db import TUNE_TRIAL_ID, StudyArtifactStore, artifact_uri, open_storage
from study.trial import IMAGES

VALIDATION_ATTRS = ("best_epoch", "best_val_psnr", "best_val_ssim", "best_val_loss", "noisy_psnr", "parameters")
STATE_KEYS = ("trials", "told", "recorded")


def optuna_state(status: str):
    """The Optuna state for a trial-table status."""
    from optuna.trial import TrialState

    return {COMPLETED: TrialState.COMPLETE, STOPPED_BY_ASHA: TrialState.PRUNED}.get(status, TrialState.FAIL)


def objective_names(config: StudyConfig) -> list[str]:
    """What each Optuna trial is told, in order: the validation metric at the best epoch, then the study's ``objectives``."""
    return [config.metric, *config.objectives]


def open_study(config: StudyConfig, storage: Any, seed: int):
    """The study's Optuna study (created on first use) with TPE seeded by ``seed``; Optuna never prunes (ASHA does).

    With ``objectives`` it has one direction per objective and the same seeded TPE, which Optuna runs as its
    multi-objective TPE (MOTPE): it draws from the first trial on, where NSGA-II would sample its first generation of
    50 at random, longer than most of our studies.
    """
    import optuna

    modes = [config.mode, *(OBJECTIVE_MODES[name] for name in config.objectives)]
    return optuna.create_study(storage=storage, study_name=config.name, load_if_exists=True,
                               sampler=optuna.samplers.TPESampler(seed=seed), pruner=optuna.pruners.NopPruner(),
                               directions=["minimize" if mode == "min" else "maximize" for mode in modes])


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


class RecordingSearch(Searcher):
    """A Tune ``Searcher`` over an Optuna study, whose Optuna trials say what happened to the Tune trials (see the module docstring)."""

    CKPT_FILE_TMPL = "searcher-state-{}.json"

    def __init__(self, config: StudyConfig, url: str) -> None:
        super().__init__(metric=config.metric, mode=config.mode)
        self._config, self._storage = config, open_storage(url)
        self._study = open_study(config, self._storage, config.seed)
        self._artifacts = StudyArtifactStore(artifact_uri(config))
        self._trials: dict[str, Any] = {}  # Tune trial id -> its running Optuna trial
        self._numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number, told or not
        self._told: set[str] = set()
        self._recorded: dict[str, int] = {}  # the last epoch recorded per Tune trial
        with warnings.catch_warnings():  # metric names are an experimental Optuna feature; the dashboard labels its axes with them
            warnings.simplefilter("ignore")
            self._study.set_metric_names(objective_names(config))
        for key, value in {"study_uri": config.study_uri, "metric": config.metric, "num_samples": config.num_samples,
                           "search": config.search}.items():
            self._study.set_user_attr(key, value)

    def suggest(self, trial_id: str) -> dict | None:
        ot_trial = self._study.ask()
        space.sample(self._config.search, ot_trial)
        ot_trial.set_user_attr(TUNE_TRIAL_ID, trial_id)
        self._trials[trial_id], self._numbers[trial_id] = ot_trial, ot_trial.number
        return dict(ot_trial.params)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._trials and trial_id not in self._told:
            self._record_epoch(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._trials.get(trial_id)
        if ot_trial is None or trial_id in self._told:
            return
        metrics = result or {}
        self._record_epoch(trial_id, metrics)  # Tune hands the result that ends a trial to this method only
        status = trial_status("raised" if error else None, metrics, ended=True, planned_epochs=self._config.train.epochs,
                              asha=self._config.scheduler == "asha")
        attrs = {"status": status, "epochs": metrics.get("epoch"), **{name: metrics[name] for name in VALIDATION_ATTRS if finite(metrics.get(name))},
                 "settings": dict(assignments(self._config.search, ot_trial.params))}
        if metrics.get("train_node_ip", metrics.get("node_ip")):
            attrs["node"] = metrics.get("train_node_ip", metrics.get("node_ip"))
        for key, value in attrs.items():
            ot_trial.set_user_attr(key, value)
        values = [metrics.get(f"best_{self.metric}"), *(metrics.get(name) for name in self._config.objectives)]
        state = optuna_state(status)
        if state.name == "COMPLETE" and not all(map(finite, values)):
            state = optuna_state(FAILED)
        self._study.tell(ot_trial, [float(v) for v in values] if state.name == "COMPLETE" else None, state=state)
        self._told.add(trial_id)
        del self._trials[trial_id]

    def save(self, checkpoint_path: str) -> None:
        state = {"trials": self._numbers, "told": sorted(self._told), "recorded": self._recorded}
        write_atomic(checkpoint_path, json.dumps(state, indent=1).encode())

    def restore(self, checkpoint_path: str) -> None:
        """Continue from the saved JSON state with a TPE seeded by the study's seed plus the trials asked so far (so a
        resume draws reproducibly). An Optuna trial asked for after the last save (a hard stop) belongs to no Tune
        trial: it is told FAIL, so the study keeps one running trial per Tune trial."""
        from optuna.trial import Trial, TrialState

        state = read_state(checkpoint_path)
        self._numbers, self._told, self._recorded = dict(state["trials"]), set(state["told"]), dict(state["recorded"])
        self._study = open_study(self._config, self._storage, self._config.seed + len(self._study.get_trials(deepcopy=False)))
        study_id = self._storage.get_study_id_from_name(self._config.name)
        running = {t.number for t in self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))}
        self._trials = {trial_id: Trial(self._study, self._storage.get_trial_id_from_study_id_trial_number(study_id, number))
                        for trial_id, number in self._numbers.items() if trial_id not in self._told and number in running}
        for orphan in sorted(running - set(self._numbers.values())):
            self._study.tell(orphan, state=TrialState.FAIL)

    def _record_epoch(self, trial_id: str, result: dict) -> None:
        """The epoch's validation metric as an intermediate value and its grid as an artifact, once per epoch."""
        epoch = result.get("epoch")
        if not isinstance(epoch, int) or epoch <= self._recorded.get(trial_id, 0):
            return
        self._recorded[trial_id] = epoch
        ot_trial, value = self._trials[trial_id], result.get(self.metric)
        if finite(value):
            self._record_value(ot_trial, float(value), epoch)
        if IMAGES in result:
            self._upload_grid(ot_trial, np.asarray(result[IMAGES], dtype=np.uint8), epoch)

    def _record_value(self, ot_trial: Any, value: float, epoch: int) -> None:
        """The epoch's metric as the trial's intermediate value; Optuna keeps those for single-objective studies only, so a
        multi-objective trial keeps them as the user attribute ``{metric}_by_epoch`` (epoch -> value)."""
        if not self._config.objectives:
            ot_trial.report(value, epoch)
            return
        key = f"{self.metric}_by_epoch"
        ot_trial.set_user_attr(key, {**ot_trial.user_attrs.get(key, {}), str(epoch): value})

    def _upload_grid(self, ot_trial: Any, grid: np.ndarray, epoch: int) -> None:
        from optuna.artifacts import upload_artifact
        from PIL import Image

        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / f"grid-epoch-{epoch:03d}.png"
            Image.fromarray(grid.reshape(grid.shape[-2:])).save(path)
            upload_artifact(artifact_store=self._artifacts, file_path=str(path), study_or_trial=ot_trial, mimetype="image/png")


def read_state(path: str) -> dict[str, Any]:
    """The searcher's saved state, checked to be the plain JSON ``save`` writes, or a one-line error naming the file."""
    try:
        state = json.loads(Path(path).read_text())
        valid = (isinstance(state, dict) and set(state) == set(STATE_KEYS) and isinstance(state["trials"], dict)
                 and all(isinstance(n, int) for n in state["trials"].values()) and isinstance(state["told"], list)
                 and isinstance(state["recorded"], dict) and all(isinstance(e, int) for e in state["recorded"].values()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        valid = False
    if not valid:
        raise StudyConfigError(f"{path} is damaged: it is not the searcher state a study writes, so the study cannot be resumed")
    return state
