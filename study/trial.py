"""Thin glue between Ray and the core: a Tune trial's config in, the core ``fit`` epoch reports out.

Two ways to run a trial, sharing every line of training code (``train_in_process``):
- ``tune_trial`` trains inside the Tune trial itself (``train_workers: 0``, tiny CPU studies and tests);
- ``tune_trial_with_trainer`` launches a Ray Train ``TorchTrainer`` whose workers run ``train_worker``
  (one worker, or DDP across several; GPUs when the cluster has them).
Each epoch reports metrics, a checkpoint holding the full training state (with the best weights so far),
and every ``grid_every`` epochs a noisy | denoised | clean image that Tune's TensorBoard logger records.
A trial whose loss diverges ends normally with ``diverged: 1`` and the reason, so it is recorded as failed
instead of retried or crashing the study.
"""

from __future__ import annotations

import errno
import math
import shutil
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from denoise_core.checkpoint import load_checkpoint, save_checkpoint
from denoise_core.data import load_splits
from denoise_core.files import disk_full
from denoise_core.tblog import image_grid
from denoise_core.fit import EpochReport, fit
from denoise_core.space import assignments
from denoise_core.study_files import CHECKPOINT_FILE, trial_dirname
from study.config import trial_config
from study.growth import threads_now

IMAGES = "val_images"  # noisy | denoised | clean grid, (1, H, W) uint8
Report = Callable[[dict[str, Any], str | None], None]  # an epoch's metrics and its checkpoint directory (None: no checkpoint)


def epoch_metrics(report: EpochReport, grid_every: int) -> dict[str, Any]:
    """What a trial reports each epoch: the core's metrics, the best so far, and sometimes an image grid."""
    checkpoint = report.checkpoint
    best = checkpoint["best_metrics"]
    metrics = {k: v for k, v in report.metrics().items() if k != "epoch"}
    metrics.update(
        epoch=report.epoch, best_epoch=best["epoch"], best_val_loss=best["val_loss"], best_val_psnr=best["val_psnr"],
        best_val_ssim=best["val_ssim"], parameters=checkpoint["parameters"], diverged=0, train_node_ip=_node_ip(),
        epochs_planned=checkpoint["config"]["epochs"], stopped_early=int(report.should_stop), threads=torch.get_num_threads(),
    )
    initial = checkpoint.get("initial")
    if initial:  # a warm start: the starting model's own validation scores
        metrics.update({f"init_{key}": initial[key] for key in ("val_loss", "val_psnr", "val_ssim")})
    if grid_every and (report.epoch == 1 or report.epoch % grid_every == 0 or report.should_stop):
        metrics[IMAGES] = (image_grid(list(report.examples)).numpy() * 255).round().astype(np.uint8)
    return metrics


def _node_ip() -> str:
    """Where training ran (for TorchTrainer trials, the worker's node, not the trial driver's)."""
    import ray.util

    return ray.util.get_node_ip_address()


def diverged_metrics(error: FloatingPointError) -> dict[str, Any]:
    inf = math.inf
    return {"val_loss": inf, "best_val_loss": inf, "val_psnr": -inf, "best_val_psnr": -inf, "val_ssim": -inf,
            "best_val_ssim": -inf, "diverged": 1, "error": str(error)}


def train_in_process(
    params: dict[str, Any],
    report: Report,
    previous: str | None,
    **distributed: Any,
) -> None:
    """Train one trial with the core loop, reporting each epoch; resume from ``previous`` checkpoint dir."""
    config = trial_config(params["train"], assignments(params["search"], params["sampled"]))
    splits = load_splits(params["data"])
    resume = load_checkpoint(Path(previous) / CHECKPOINT_FILE) if previous else None
    is_writer = distributed.get("rank", 0) == 0

    def on_epoch(epoch: EpochReport) -> None:
        metrics = epoch_metrics(epoch, params["grid_every"])
        with tempfile.TemporaryDirectory() as directory:
            if is_writer:
                save_checkpoint(epoch.checkpoint, Path(directory) / CHECKPOINT_FILE)
            report(metrics, directory if is_writer else None)

    try:
        fit(config, splits, on_epoch=on_epoch, resume=resume, **distributed)
    except FloatingPointError as error:
        report(diverged_metrics(error), None)


@contextmanager
def whole_checkpoint(directory: str | None, destination: str | None) -> Iterator[None]:
    """Ray's copy of a checkpoint into the trial's folder ``destination`` in the study, whole or not at all: it is not
    begun without the room it needs, and what it copied is removed if the disk fills up on the way (Ray copies file by
    file, in place). Nothing is checked without a local folder (object storage, or a trial run outside a study)."""
    if directory is None or destination is None or "://" in destination or not Path(destination).is_dir():
        yield
        return
    needed = sum(file.stat().st_size for file in Path(directory).rglob("*") if file.is_file())
    target = Path(destination)
    if shutil.disk_usage(target).free < needed:
        raise disk_full(target / CHECKPOINT_FILE, needed)
    before = set(target.glob("checkpoint_*"))
    try:
        yield
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        for partial in set(target.glob("checkpoint_*")) - before:
            shutil.rmtree(partial, ignore_errors=True)
        raise disk_full(target / CHECKPOINT_FILE, needed, quota=error.errno == errno.EDQUOT) from None


def tune_trial(sampled: dict[str, Any], settings: dict[str, Any]) -> None:
    """Tune function trainable for ``train_workers: 0``: the core loop runs in this process. Where the study grows its
    trials (``settings["grow"]``) and the threads are not pinned, each epoch after a report trains with the threads
    the driver gives this trial (``study.growth``)."""
    from ray import tune

    params = {**settings, "sampled": sampled}
    trial_id = tune.get_context().get_trial_id()
    trial_dir = f"{settings['study_uri']}/{trial_dirname(trial_id)}" if "study_uri" in settings else None
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", params["resources"]["cpu"])
    params = _with_threads(params, cpus)
    grows = settings.get("grow", False) and not settings["train"].get("num_threads")

    def report(metrics: dict[str, Any], directory: str | None) -> None:
        with whole_checkpoint(directory, trial_dir):
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory) if directory else None)
        if grows:
            torch.set_num_threads(threads_now(settings["study_uri"], params["train"]["num_threads"]))

    previous = tune.get_checkpoint()
    with previous.as_directory() if previous else nullcontext() as directory:
        train_in_process(params, report, directory)


def report_to_train(metrics: dict[str, Any], directory: str | None) -> None:
    """How a Train worker reports an epoch to Ray Train (and through it to Tune)."""
    import ray.train

    if IMAGES in metrics:  # Train's controller only passes plain values; ImageReportCallback restores the array
        metrics = {**metrics, IMAGES: metrics[IMAGES].tolist()}
    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory) if directory else None)


def train_worker(params: dict[str, Any], report: Report = report_to_train) -> None:
    """Ray Train worker loop: the same ``train_in_process`` with the worker's device, rank and DDP wrapper."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    previous = ray.train.get_checkpoint()
    with previous.as_directory() if previous else nullcontext() as directory:
        train_in_process(
            _with_threads(params, params["resources"]["cpu"]), report, directory, device=ray.train.torch.get_device(),
            wrap_model=ray.train.torch.prepare_model, rank=context.get_world_rank(), world_size=context.get_world_size(),
        )


def tune_trial_with_trainer(sampled: dict[str, Any], settings: dict[str, Any],
                            worker_loop: Callable[[dict[str, Any]], None] = train_worker) -> None:
    """Tune function trainable that runs the trial as a TorchTrainer of ``worker_loop``; a re-run resumes its own Train run."""
    from ray import train, tune

    params = {**settings, "sampled": sampled}
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    class ImageReportCallback(TuneReportCallback):
        """Forwards worker reports to Tune with the image grid as an array, which Tune's TensorBoard logger draws."""

        def after_report(self, run_context, metrics, checkpoint):
            if metrics and IMAGES in metrics[0]:
                metrics = [{**metrics[0], IMAGES: np.asarray(metrics[0][IMAGES], dtype=np.uint8)}, *metrics[1:]]
            super().after_report(run_context, metrics, checkpoint)

    resources = params["resources"]
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config=params,
        scaling_config=train.ScalingConfig(
            num_workers=resources["workers"], use_gpu=resources["gpu"] > 0,
            resources_per_worker={"CPU": resources["cpu"], **({"GPU": resources["gpu"]} if resources["gpu"] > 0 else {})},
        ),
        run_config=train.RunConfig(
            name=tune.get_context().get_trial_id(), storage_path=params["train_storage"],
            failure_config=train.FailureConfig(max_failures=params["max_failures"]),
            checkpoint_config=train.CheckpointConfig(num_to_keep=1), callbacks=[ImageReportCallback()],
        ),
    )
    trainer.fit()


def _with_threads(params: dict[str, Any], cpus: float) -> dict[str, Any]:
    """Match torch's CPU threads to the ``cpus`` Ray gave this process, so concurrent trials do not fight (two
    processes with 2 threads each on 2 cores trained 10x slower than one thread each)."""
    train_params = dict(params["train"])
    if not train_params.get("num_threads"):
        train_params["num_threads"] = max(1, int(cpus))
    return {**params, "train": train_params}
