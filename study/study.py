"""Running a study: connect to Ray, check resources, search with Optuna + ASHA, then export the best model.

The study lives in ``STORAGE/NAME``: Tune's trial directories (TensorBoard files included), ``study.yaml``
(the resolved configuration), ``trials.csv`` / ``trials.parquet`` (one row per trial), ``best/model.pt``
(the best trial by validation metric, self-contained), ``best/holdout.csv`` (its scores on the fixed
noisy hold-out) and, by default, the Optuna study in ``optuna.db`` (``study.optuna_db``). An existing study
is never overwritten: it can only be resumed, and only until it has finished (has ``best/``). Ctrl-C or SIGTERM stops it the way Tune saves state for a resume; such a study
exports nothing, and its unfinished trials are labelled ``interrupted``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pyarrow.fs as pafs
import torch
import yaml

from denoise_core.checkpoint import checkpoint_bytes, export_model, load_checkpoint
from denoise_core.data import default_cache_dir, load_splits, resolve_data_path
from denoise_core.errors import MissingFile, OutputExists
from denoise_core.evaluate import evaluate_on_holdout, model_denoiser
from denoise_core.holdout import holdout_for
from denoise_core.model import ConvAutoencoder, model_config_from_dict
from denoise_core.settings import to_dict
from study import optuna_db, space, storage
from study.config import StudyConfig, StudyConfigError, storage_root, to_yaml
from study.trial import CHECKPOINT_FILE, tune_trial, tune_trial_with_trainer

log = logging.getLogger("study")
DRIVER_CPU = 0.01


@dataclass(frozen=True)
class StudySummary:
    study_uri: str
    trials: pd.DataFrame
    best_trial: str | None
    best_model: str | None
    holdout: pd.DataFrame | None
    interrupted: bool = False
    stop_signal: int | None = None  # the signal that interrupted it, if one did


@dataclass(frozen=True)
class Resources:
    workers: int  # 0: training inside the trial
    cpu: float  # per worker (or per trial when workers == 0)
    gpu: float
    concurrent: int


def connect(address: str | None = None, num_cpus: int | None = None, verbose: int = 1) -> None:
    """Join the running cluster (``--address``, ``RAY_ADDRESS`` or one started with ``ray start``), else start Ray here."""
    import ray

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = {"log_to_driver": verbose > 1, "logging_level": logging.INFO if verbose > 1 else logging.WARNING}
    if address:
        ray.init(address=address, **quiet)
    elif num_cpus is not None:  # an explicit local size: never join someone else's instance
        ray.init(address="local", num_cpus=num_cpus, **quiet)
    else:  # a cluster started on this machine with `ray start`, else a new local instance
        ray.init(**quiet)


def plan_resources(config: StudyConfig, cluster: dict[str, float]) -> Resources:
    """Per-trial resources and concurrency for what the cluster has; one-line errors for impossible requests."""
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    gpu = (0.25 if gpus > 0 else 0.0) if config.gpus_per_trial is None else config.gpus_per_trial
    if gpu > 0 and gpus == 0:
        raise StudyConfigError(f"gpus_per_trial is {gpu} but the Ray cluster has no GPUs; set gpus_per_trial: 0 or add GPU nodes")
    workers = config.train_workers
    per_trial_cpu = config.cpus_per_worker * max(workers, 1) + (DRIVER_CPU if workers else 0.0)
    if per_trial_cpu > cpus:
        raise StudyConfigError(f"one trial needs {per_trial_cpu:g} CPUs but the cluster has {cpus:g}; lower cpus_per_worker or train_workers")
    per_trial_gpu = gpu * max(workers, 1)
    if per_trial_gpu > gpus and gpu > 0:
        raise StudyConfigError(f"one trial needs {per_trial_gpu:g} GPUs but the cluster has {gpus:g}; lower gpus_per_trial or train_workers")
    fit = int(cpus // per_trial_cpu)
    if per_trial_gpu > 0:
        fit = min(fit, int(gpus // per_trial_gpu))
    concurrent = min(fit, config.max_concurrent) if config.max_concurrent else fit
    return Resources(workers=workers, cpu=config.cpus_per_worker, gpu=gpu, concurrent=max(1, min(concurrent, config.num_samples)))


def preflight(config: StudyConfig, resume: bool = False, joining: bool = False) -> str:
    """Every check that needs no Ray, so a mistake costs a second instead of a Ray start; returns the data path."""
    study_uri = config.study_uri
    url = optuna_db.storage_url(config)
    if "://" not in study_uri:
        for parent in [Path(study_uri), *Path(study_uri).parents]:
            if parent.exists() and not parent.is_dir():
                raise StudyConfigError(f"storage: {parent} is a file, not a directory; pass --storage DIRECTORY")
    if resume and not storage.exists(f"{study_uri}/study.yaml"):
        raise MissingFile(f"nothing to resume: no study at {study_uri}; start it without --resume")
    if resume and storage.exists(f"{study_uri}/best/model.pt"):
        raise OutputExists(f"study '{config.name}' has finished (its best model is {study_uri}/best/model.pt), so there is nothing to "
                           "resume; start another study with a new --name")
    if resume:
        refuse_pickled_searcher(config)
    if not resume and storage.exists(study_uri):
        raise OutputExists(f"study '{config.name}' already exists at {study_uri}; pass --resume to continue it or choose another --name")
    if not resume and config.optuna_storage:
        optuna_db.check_new(url, config.name)
    data_path = str(resolve_data_path(config.data).absolute())
    splits = load_splits(data_path)
    empty = [name for name, faces in (("Training", splits.train), ("PublicTest", splits.val), ("PrivateTest", splits.test_unique)) if not len(faces)]
    if empty:
        raise StudyConfigError(f"{data_path} has no {' and no '.join(empty)} faces: a study trains on Training, selects on PublicTest "
                               "and scores its best model on PrivateTest faces that are not in Training")
    for init in sorted({value for value in [config.train.init, *space.possible_values(config.search, "init")] if value}):
        if not Path(init).is_file():
            raise MissingFile(f"train.init: model file {init} does not exist")
    if config.gpus_per_trial and not joining and not _local_gpus():
        raise StudyConfigError(f"gpus_per_trial is {config.gpus_per_trial} but this machine has no GPU; set gpus_per_trial: 0 "
                               "or join a cluster with GPUs (--address)")
    return data_path


def refuse_pickled_searcher(config: StudyConfig) -> None:
    """A study begun when the searcher saved its state as a pickle cannot be resumed: loading it would run code from the folder."""
    filesystem, path = storage.filesystem(config.study_uri)
    names = [info.base_name for info in filesystem.get_file_info(pafs.FileSelector(path)) if info.base_name.startswith("searcher-state-")]
    if any(name.endswith(".pkl") for name in names) and not any(name.endswith(".json") for name in names):
        raise StudyConfigError(f"study '{config.name}' was begun by an older facestudy, whose searcher state ({path}/searcher-state-*.pkl) "
                               "is a pickle that a resume would run as code; it cannot be resumed (its results can still be reported)")


def _local_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


TrialFunction = Callable[[dict[str, Any], dict[str, Any]], None]  # a Tune function trainable: (sampled, settings)


def run_study(config: StudyConfig, resume: bool = False, trial: TrialFunction | None = None) -> StudySummary:
    """Run (or resume) the study described by ``config`` on the connected Ray cluster.

    ``trial`` is the Tune function every trial runs; by default ``tune_trial``, or ``tune_trial_with_trainer`` when
    ``train_workers`` >= 1 (the tests pass one whose Train worker dies once, to check that it restarts from its checkpoint).
    """
    import ray

    data_path = preflight(config, resume, joining=True)
    resources = plan_resources(config, ray.cluster_resources())
    trainable = study_trainable(config, resources, data_path, trial)
    log.info("study %s: %d trials, %d at a time, %s per trial", config.study_uri, config.num_samples, resources.concurrent,
             f"{resources.workers} TorchTrainer worker(s) x {resources.cpu:g} CPU / {resources.gpu:g} GPU" if resources.workers
             else f"{resources.cpu:g} CPU / {resources.gpu:g} GPU in-process")
    tuner = restored_tuner(config, trainable) if resume else new_tuner(config, trainable, resources)
    with stop_signals() as received:
        results = tuner.fit()
    statuses = saved_statuses(config.study_uri)
    trials = trial_table(results, config, statuses)
    write_trial_table(config.study_uri, trials)
    if received or interrupted(statuses, config):
        log.warning("study interrupted: resume it with --name %s --storage %s --resume", config.name, config.storage)
        return StudySummary(study_uri=config.study_uri, trials=trials, best_trial=None, best_model=None, holdout=None, interrupted=True,
                            stop_signal=received[0] if received else None)
    best_trial, best_model, holdout = export_best(results, trials, config, data_path)
    return StudySummary(study_uri=config.study_uri, trials=trials, best_trial=best_trial, best_model=best_model, holdout=holdout)


def study_trainable(config: StudyConfig, resources: Resources, data_path: str, trial: TrialFunction | None) -> Any:
    """The trial function with the settings every trial shares (a trial's config holds only its sampled parameters) and its resources."""
    from ray import tune

    train_settings = to_dict(config.train)
    if train_settings["device"] == "auto":
        train_settings["device"] = "cuda" if resources.gpu > 0 else "cpu"
    settings = {
        "train": train_settings, "search": config.search, "data": data_path, "grid_every": config.grid_every,
        "max_failures": config.max_failures, "train_storage": f"{config.study_uri}/train_runs",
        "resources": {"workers": resources.workers, "cpu": resources.cpu, "gpu": resources.gpu},
    }
    trial = trial or (tune_trial_with_trainer if resources.workers else tune_trial)
    trial_resources = {"cpu": DRIVER_CPU} if resources.workers else {"cpu": resources.cpu, "gpu": resources.gpu}
    return tune.with_resources(tune.with_parameters(trial, settings=settings), trial_resources)


def restored_tuner(config: StudyConfig, trainable: Any) -> Any:
    """Tune's saved experiment, continued."""
    from ray import tune

    log.info("resuming study %s", config.study_uri)
    return tune.Tuner.restore(config.study_uri, trainable=trainable, resume_errored=True)


def new_tuner(config: StudyConfig, trainable: Any, resources: Resources) -> Any:
    """A Tuner searching with ``RecordingSearch`` (Optuna) and ASHA (or FIFO), after saving ``study.yaml``."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from study.console import ConsoleReporter
    from study.searcher import RecordingSearch
    from study.tensorboard import TrialCsvLogger, TrialJsonLogger, TrialTensorBoard

    storage.write_bytes(f"{config.study_uri}/study.yaml", to_yaml(config).encode(), overwrite=False)
    searcher = RecordingSearch(config, optuna_db.storage_url(config))
    scheduler = (ASHAScheduler(grace_period=config.grace_period, reduction_factor=config.reduction_factor, max_t=config.max_epochs)
                 if config.scheduler == "asha" else FIFOScheduler())
    run_config = tune.RunConfig(
        name=config.name, storage_path=storage_root(config.storage), verbose=config.verbose if config.verbose > 1 else 0,
        callbacks=[TrialJsonLogger(), TrialCsvLogger(), TrialTensorBoard(), *([ConsoleReporter(config)] if config.verbose == 1 else [])],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=0 if resources.workers else config.max_failures),
    )
    return tune.Tuner(
        trainable, run_config=run_config,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=config.num_samples,
                                    max_concurrent_trials=resources.concurrent, metric=config.metric, mode=config.mode,
                                    trial_dirname_creator=trial_dirname),
    )


def write_trial_table(study_uri: str, trials: pd.DataFrame) -> None:
    """``trials.csv`` and ``trials.parquet``, one row per trial."""
    storage.write_bytes(f"{study_uri}/trials.csv", trials.to_csv(index=False).encode())
    buffer = io.BytesIO()
    trials.to_parquet(buffer, index=False)
    storage.write_bytes(f"{study_uri}/trials.parquet", buffer.getvalue())


@contextlib.contextmanager
def stop_signals():
    """Ctrl-C and SIGTERM stop the study as Tune's own stop signal does (state saved for a resume), and are recorded.

    Tune's SIGINT handler does not say afterwards that it fired, and it does not handle SIGTERM, so both are
    caught here and passed on as SIGUSR1, which Tune always handles. A second signal stops at once.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGUSR1"):
        yield received
        return

    def stop(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) == 1:
            os.kill(os.getpid(), signal.SIGUSR1)
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    previous_usr1 = signal.getsignal(signal.SIGUSR1)
    saved_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.signal(signal.SIGUSR1, previous_usr1)
        if saved_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = saved_env


def saved_statuses(study_uri: str) -> dict[str, str]:
    """Each trial's status in the experiment state Tune saved before it stopped its actors.

    After a stop signal, Tune marks the trials it was running TERMINATED in memory, like finished ones; the
    saved state still says RUNNING (or PENDING), which is what a resume continues.
    """
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(study_uri)
    return {str(trial.trial_id): str(trial.status) for trial in analysis.trials}


def interrupted(statuses: dict[str, str], config: StudyConfig) -> bool:
    """True when Tune stopped before every trial ended: a trial is missing, pending, running or paused."""
    return len(statuses) < config.num_samples or any(status not in ("TERMINATED", "ERROR") for status in statuses.values())


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def trial_table(results: Any, config: StudyConfig, statuses: dict[str, str]) -> pd.DataFrame:
    """One row per trial: sampled hyperparameters, best epoch, validation metrics, time, size and outcome."""
    rows = []
    for result in results:
        metrics = result.metrics or {}
        params = result.config or {}
        trial_id = str(metrics.get("trial_id") or Path(str(result.path)).name.removeprefix("trial_"))
        rows.append({
            "trial_id": trial_id, "status": trial_status(result.error, metrics, statuses.get(trial_id, "TERMINATED"), config),
            **{f"param_{k}": v for k, v in params.items()},
            "best_epoch": metrics.get("best_epoch"), "epochs_run": metrics.get("epoch"),
            "best_val_loss": metrics.get("best_val_loss"), "best_val_psnr": metrics.get("best_val_psnr"),
            "best_val_ssim": metrics.get("best_val_ssim"), "noisy_val_psnr": metrics.get("noisy_psnr"),
            "parameters": metrics.get("parameters"), "time_s": metrics.get("time_total_s"),
            "node_ip": metrics.get("train_node_ip", metrics.get("node_ip")), "path": str(result.path),
            "checkpoint": _checkpoint_uri(result),
        })
    table = pd.DataFrame(rows)
    for column in [c for c in table.columns if c.startswith("param_")]:  # a conditional setting's gaps must not turn 32 into 32.0
        values = [row[column] for row in rows if row.get(column) is not None]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            table[column] = table[column].astype("Int64")
    if len(table):
        ascending = config.mode == "min"
        table = table.sort_values(f"best_{config.metric}", ascending=ascending, na_position="last").reset_index(drop=True)
    return table


def trial_status(error: Any, metrics: dict[str, Any], saved_status: str, config: StudyConfig) -> str:
    """What happened to a trial, in words: completed, stopped by ASHA, interrupted, failed (diverged) or error."""
    if error is not None:
        return f"error: {str(error).strip().splitlines()[-1][:200]}"
    if metrics.get("diverged"):
        return f"failed: {metrics.get('error', 'loss diverged')}"
    if saved_status != "TERMINATED":
        return "interrupted"
    if metrics.get("epoch", 0) >= metrics.get("epochs_planned", config.train.epochs) or metrics.get("stopped_early"):
        return "completed"
    return "stopped by ASHA" if config.scheduler == "asha" else "interrupted"


def _checkpoint_uri(result: Any) -> str | None:
    metrics = result.metrics or {}
    if metrics.get("checkpoint_path"):
        return str(metrics["checkpoint_path"])
    return result.checkpoint.path if result.checkpoint else None


def export_best(results: Any, trials: pd.DataFrame, config: StudyConfig, data_path: str) -> tuple[str | None, str | None, pd.DataFrame | None]:
    """Copy the best trial's best weights to ``best/model.pt``, its settings to ``best/train.yaml``, and score it on the hold-out.

    ``best/model.pt`` is written last, so its presence means the export is complete (and the study finished).
    """
    metric = f"best_{config.metric}"
    usable = trials[trials["status"].isin(["completed", "stopped by ASHA"]) & trials[metric].map(lambda v: v is not None and math.isfinite(v))]
    usable = usable[usable["checkpoint"].notna()]
    if usable.empty:
        log.warning("no trial finished with a usable checkpoint; nothing exported")
        return None, None, None
    best = usable.iloc[0]
    checkpoint = _read_checkpoint(best["checkpoint"], config)
    model_uri = f"{config.study_uri}/best/model.pt"
    model = ConvAutoencoder(model_config_from_dict(checkpoint["config"]["model"]))
    model.load_state_dict(checkpoint["best_model_state"])
    splits = load_splits(data_path)
    holdout = holdout_for(splits.test_unique, default_cache_dir(), config.holdout_conditions)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    table = evaluate_on_holdout(model_denoiser(model.to(device).eval(), device), holdout, faces=config.holdout_faces)
    table.insert(0, "trial_id", best["trial_id"])
    storage.write_bytes(f"{config.study_uri}/best/holdout.csv", table.to_csv(index=False).encode())
    recipe = "# The winning trial's training settings: python -m denoise_core.train --config best/train.yaml --out RUN replays it.\n"
    storage.write_bytes(f"{config.study_uri}/best/train.yaml", (recipe + yaml.safe_dump(checkpoint["config"], sort_keys=False)).encode())
    storage.write_bytes(f"{config.study_uri}/best/trial.yaml", yaml.safe_dump({k: (v.item() if hasattr(v, "item") else v) for k, v in best.items()}, sort_keys=False).encode())
    optuna_db.record_best(optuna_db.storage_url(config), config.name, str(best["trial_id"]), table)
    storage.write_bytes(model_uri, checkpoint_bytes(export_model(checkpoint)), overwrite=False)
    return str(best["trial_id"]), model_uri, table


def _read_checkpoint(uri: str, config: StudyConfig) -> dict[str, Any]:
    if "://" not in uri and Path(uri).exists():
        return load_checkpoint(Path(uri) / CHECKPOINT_FILE)
    root = storage_root(config.storage)
    full = uri if "://" in uri else (f"{root.split('://')[0]}://{uri}" if "://" in root else uri)
    with tempfile.TemporaryDirectory() as directory:
        local = Path(directory) / CHECKPOINT_FILE
        local.write_bytes(storage.read_bytes(f"{full}/{CHECKPOINT_FILE}"))
        return load_checkpoint(local)
