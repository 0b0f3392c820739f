"""Each trial's files in the study's own terms: TensorBoard scalars named as the train CLI names them, no Ray internals,
integer hyperparameters kept integer, labelled image grids, and no images inside ``result.json`` or ``progress.csv``.

Tune adds its own JSON, CSV and TensorBoard loggers unless the callbacks already hold one of each kind; these three
take those places.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
from torch.utils.tensorboard import SummaryWriter

from denoise_core.space import discrete_values
from denoise_core.tblog import GRID_TAG, SCALARS, scalar_tag, write_hparams
from study.trial import IMAGES

FINAL_METRICS = ("best_val_loss", "best_val_psnr", "best_val_ssim")


def _without_images(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key != IMAGES}


class TrialJsonLogger(JsonLoggerCallback):
    """Tune's ``result.json``, one line per epoch, without the image grids."""

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        super().log_trial_result(iteration, trial, _without_images(result))


class TrialCsvLogger(CSVLoggerCallback):
    """Tune's ``progress.csv``, without the image grids."""

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        super().log_trial_result(iteration, trial, _without_images(result))


class TrialTensorBoard(TBXLoggerCallback):
    """A trial's TensorBoard events, written through ``denoise_core.tblog`` like a train CLI run's; ``space`` (the study's
    search space) gives the HParams tab every value of each choice, not only those the trials drew."""

    def __init__(self, space: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._writers: dict[Any, SummaryWriter] = {}
        self._domains = discrete_values(space or {})

    def log_trial_start(self, trial: Any) -> None:
        if trial in self._writers:
            self._writers[trial].close()
        trial.init_local_path()
        self._writers[trial] = SummaryWriter(trial.local_path, flush_secs=30)

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        if trial not in self._writers:
            self.log_trial_start(trial)
        writer, step = self._writers[trial], result.get("epoch", iteration)
        for name in SCALARS:
            value = result.get(name)
            if isinstance(value, (int, float)) and np.isfinite(value):
                writer.add_scalar(scalar_tag(name), value, step)
        if IMAGES in result:
            writer.add_image(GRID_TAG, torch.from_numpy(np.asarray(result[IMAGES], dtype=np.float32) / 255.0), step)
        writer.flush()

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        writer = self._writers.pop(trial, None)
        if writer is None:
            return
        final = trial.last_result or {}
        metrics = {name.removeprefix("best_"): float(final[name]) for name in FINAL_METRICS
                   if isinstance(final.get(name), (int, float)) and np.isfinite(final[name])}
        if metrics:
            write_hparams(writer, dict(trial.config), metrics, self._domains)
        writer.close()
