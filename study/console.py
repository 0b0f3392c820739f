"""The study's own console: a line per started trial, per epoch and per finished trial, in the study's words, instead of Tune's tables."""

from __future__ import annotations

import time
from typing import Any

from ray import tune

from denoise_core.study_files import trial_status
from study.config import StudyConfig


def describe(sampled: dict[str, Any]) -> str:
    """A trial's sampled settings, short: ``bottleneck_size=64 dropout=0.17 lr=0.0022 output=gate``."""
    return " ".join(f"{name.rsplit('.', 1)[-1]}={_short(value)}" for name, value in sampled.items())


def _short(value: Any) -> str:
    return f"{value:.2g}" if isinstance(value, float) else str(value)


class ConsoleReporter(tune.Callback):
    """Prints progress as trials report, for ``verbose: 1`` (Tune's own tables come back with ``verbose: 2``)."""

    def __init__(self, config: StudyConfig):
        self.config = config
        self.num_samples = config.num_samples
        self.metric = config.metric
        self.sign = 1.0 if config.mode == "max" else -1.0
        self.started = time.monotonic()
        self.started_trials: set[str] = set()
        self.finished = 0
        self.best: tuple[float, str] | None = None
        self.threads: dict[str, int] = {}  # each trial's torch threads in its last reported epoch

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id in self.started_trials:  # restarted from its last checkpoint after a failure
            print(f"[{self._clock()}] trial {trial.trial_id} goes on from its last epoch", flush=True)
            return
        self.started_trials.add(trial.trial_id)
        print(f"[{self._clock()}] trial {trial.trial_id} started ({len(self.started_trials)} of {self.num_samples}): {describe(trial.config)}",
              flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict[str, Any], **info: Any) -> None:
        value = result.get(f"best_{self.metric}")
        if value is not None and (self.best is None or self.sign * value > self.sign * self.best[0]):
            self.best = (value, trial.trial_id)
        running = sum(1 for t in trials if t.status == "RUNNING")
        threads = result.get("threads")
        grew = f" on {threads} threads" if threads and self.threads.get(trial.trial_id, threads) != threads else ""  # grow_trials
        self.threads[trial.trial_id] = threads
        print(f"[{self._clock()}] trial {trial.trial_id} epoch {result.get('epoch')}/{result.get('epochs_planned', '?')}{grew}: "
              f"{self.metric} {result.get(self.metric, float('nan')):.2f} | {self.finished}/{self.num_samples} trials done, {running} running"
              + (f", best {self.best[0]:.2f} ({self.best[1]})" if self.best else ""), flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished += 1
        result = trial.last_result or {}
        status = trial_status(None, result, ended=True, planned_epochs=self.config.train.epochs, asha=self.config.scheduler == "asha")
        print(f"[{self._clock()}] trial {trial.trial_id} {status} after {result.get('epoch', 0)} epochs: best "
              f"{self.metric} {result.get(f'best_{self.metric}', float('nan')):.2f} | {describe(trial.config)}", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished += 1
        print(f"[{self._clock()}] trial {trial.trial_id} error (see {trial.path}/error.txt) | {describe(trial.config)}", flush=True)

    def _clock(self) -> str:
        minutes, seconds = divmod(int(time.monotonic() - self.started), 60)
        return f"{minutes:3d}:{seconds:02d}"
