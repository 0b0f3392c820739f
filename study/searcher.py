"""Ray's ``OptunaSearch``, asking and telling through the study's database, with what Ray leaves out of it.

A trial's Optuna state says what happened to it: COMPLETE with its selection metric (the best epoch's, as the
exported model is that epoch's), PRUNED when ASHA stopped it, FAIL when it diverged or raised. Each epoch is
one intermediate value; the trial's settings and validation scores are user attributes, and its
noisy | denoised | clean grids are artifacts. Everything is written by the driver, where the searcher runs.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.search.optuna import OptunaSearch

from denoise_core.space import assignments
from denoise_core.study_files import COMPLETED, FAILED, STOPPED_BY_ASHA, trial_status
from study import space
from study.config import StudyConfig
from study.optuna_db import TUNE_TRIAL_ID, StudyArtifactStore, artifact_uri, open_storage
from study.trial import IMAGES

VALIDATION_ATTRS = ("best_epoch", "best_val_psnr", "best_val_ssim", "best_val_loss", "noisy_psnr", "parameters")


def optuna_state(status: str):
    """The Optuna state for a trial-table status."""
    from optuna.trial import TrialState

    return {COMPLETED: TrialState.COMPLETE, STOPPED_BY_ASHA: TrialState.PRUNED}.get(status, TrialState.FAIL)


class RecordingSearch(OptunaSearch):
    """``OptunaSearch`` whose Optuna trials say what happened to the Tune trials (see the module docstring)."""

    def __init__(self, config: StudyConfig, url: str) -> None:
        import optuna

        super().__init__(space=space.sampler_for(config.search), sampler=optuna.samplers.TPESampler(seed=config.seed),
                         metric=config.metric, mode=config.mode, storage=open_storage(url), study_name=config.name)
        self._config = config
        self._artifacts = StudyArtifactStore(artifact_uri(config))
        self._recorded: dict[str, int] = {}  # the last epoch recorded per Tune trial
        with warnings.catch_warnings():  # metric names are an experimental Optuna feature; the dashboard labels its axes with them
            warnings.simplefilter("ignore")
            self._ot_study.set_metric_names([config.metric])
        for key, value in {"study_uri": config.study_uri, "metric": config.metric, "num_samples": config.num_samples,
                           "search": config.search}.items():
            self._ot_study.set_user_attr(key, value)

    def suggest(self, trial_id: str) -> dict | None:
        params = super().suggest(trial_id)
        if params is not None:
            self._ot_trials[trial_id].set_user_attr(TUNE_TRIAL_ID, trial_id)
        return params

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._ot_trials and trial_id not in self._completed_trials:
            self._record_epoch(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return
        metrics = result or {}
        self._record_epoch(trial_id, metrics)  # Tune hands the result that ends a trial to this method only
        status = trial_status("raised" if error else None, metrics, ended=True, planned_epochs=self._config.train.epochs,
                              asha=self._config.scheduler == "asha")
        ot_trial.set_user_attr("status", status)
        ot_trial.set_user_attr("epochs", metrics.get("epoch"))
        for name in VALIDATION_ATTRS:
            if isinstance(metrics.get(name), (int, float)) and math.isfinite(metrics[name]):
                ot_trial.set_user_attr(name, metrics[name])
        if metrics.get("train_node_ip", metrics.get("node_ip")):
            ot_trial.set_user_attr("node", metrics.get("train_node_ip", metrics.get("node_ip")))
        ot_trial.set_user_attr("settings", dict(assignments(self._config.search, ot_trial.params)))
        state = optuna_state(status)
        value = metrics.get(f"best_{self.metric}")
        if state.name == "COMPLETE" and not (isinstance(value, (int, float)) and math.isfinite(value)):
            state, value = optuna_state(FAILED), None
        self._ot_study.tell(ot_trial, float(value) if state.name == "COMPLETE" else None, state=state)
        self._completed_trials.add(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        """After a resume, an Optuna trial asked for after the searcher's last save (a hard stop) belongs to no
        Tune trial: it is told FAIL, so the study keeps one running trial per Tune trial."""
        from optuna.trial import TrialState

        super().restore(checkpoint_path)
        known = {ot_trial.number for ot_trial in self._ot_trials.values()}
        for orphan in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            if orphan.number not in known:
                self._ot_study.tell(orphan.number, state=TrialState.FAIL)

    def _record_epoch(self, trial_id: str, result: dict) -> None:
        """The epoch's validation metric as an intermediate value and its grid as an artifact, once per epoch."""
        epoch = result.get("epoch")
        if not isinstance(epoch, int) or epoch <= self._recorded.get(trial_id, 0):
            return
        self._recorded[trial_id] = epoch
        ot_trial, value = self._ot_trials[trial_id], result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            ot_trial.report(float(value), epoch)
        if IMAGES in result:
            self._upload_grid(ot_trial, np.asarray(result[IMAGES], dtype=np.uint8), epoch)

    def _upload_grid(self, ot_trial: Any, grid: np.ndarray, epoch: int) -> None:
        from optuna.artifacts import upload_artifact
        from PIL import Image

        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / f"grid-epoch-{epoch:03d}.png"
            Image.fromarray(grid.reshape(grid.shape[-2:])).save(path)
            upload_artifact(artifact_store=self._artifacts, file_path=str(path), study_or_trial=ot_trial, mimetype="image/png")
