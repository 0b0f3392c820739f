"""Running a study: connect to Ray, check resources, search with Optuna + ASHA, then export the best model.

The study lives in ``STORAGE/NAME``: Tune's trial directories (TensorBoard files included), ``study.yaml``
(the resolved configuration), ``trials.csv`` / ``trials.parquet`` (one row per trial), ``best/model.pt``
(the best trial by validation metric, self-contained), ``best/holdout.csv`` (its scores on the fixed
noisy hold-out) and, by default, the Optuna study in ``optuna.db`` (``study.optuna_db``); ``denoise_core.study_files``
names every file and the trial statuses. An existing study
is never overwritten: it can only be resumed, and only until it has finished (has ``best/``). Ctrl-C or SIGTERM stops it the way Tune saves state for a resume; such a study
exports nothing, and its unfinished trials are labelled ``interrupted``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import signal
import stat
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import torch
import yaml

from denoise_core.checkpoint import CheckpointError, checkpoint_bytes, export_model, load_checkpoint
from denoise_core.data import default_cache_dir, load_splits, resolve_data_path
from denoise_core.errors import MissingFile, OutputExists
from denoise_core.evaluate import evaluate_on_holdout, model_denoiser
from denoise_core.holdout import holdout_for
from denoise_core.model import ConvAutoencoder, model_config_from_dict
from denoise_core import space
from denoise_core.settings import to_dict
from denoise_core.study_files import (BEST_HOLDOUT, BEST_MODEL, BEST_RECIPE, BEST_TRIAL, CHECKPOINT_FILE, STUDY_CONFIG, TRAIN_RUNS, TRIAL_DIR_PREFIX,
                                      TRIALS_CSV, TRIALS_PARQUET, selection_column, trial_dirname, trial_status, usable_rows)
from study import optuna_db, signing, storage
from study.full_disk import stop_on_a_full_disk
from study.config import StudyConfig, StudyConfigError, resume_command, storage_root, to_yaml
from study.trial import tune_trial, tune_trial_with_trainer

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


def ray_token_file() -> Path | None:
    """The file Ray reads its auth token from (``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``); None when
    ``RAY_AUTH_TOKEN`` holds the token itself."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return None
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").expanduser()


def keep_token_private(path: Path | None) -> None:
    """Owner-only token file, with one line when it was not: Ray writes it with the default umask (0644), readable
    by every local user, and the token opens every Ray cluster that uses it."""
    if path is None or not path.is_file():
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(0o600)
        print(f"study: Ray's token file {path} was readable by other users (mode {mode:04o}); made it 0600", file=sys.stderr)


def create_private_token(path: Path | None) -> None:
    """Writes a new token as ``ray get-auth-token --generate`` does (256 random bits, hex) but owner-only from the
    first byte, where ``ray.init`` would otherwise write one readable by all for as long as Ray takes to start."""
    if path is None or path.exists() or "RAY_AUTH_TOKEN_PATH" in os.environ:  # Ray refuses a missing RAY_AUTH_TOKEN_PATH
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as token:
        token.write(secrets.token_hex(32))


@contextlib.contextmanager
def node_on_loopback():
    """Lets Ray give its node the address 127.0.0.1, so GCS, raylet, workers and agents listen on loopback only.

    On Linux ``ray.init(_node_ip_address="127.0.0.1")`` alone is rewritten to the machine's routable address
    (``services.resolve_ip_for_localhost``), and every process then listens on all interfaces; Ray keeps 127.0.0.1
    only where its multi-machine switch ``ray_constants.ENABLE_RAY_CLUSTER`` is off (its Windows and macOS default).
    The switch is off only while this process starts the instance; tests/test_ray_connect.py checks the sockets."""
    from ray._private import ray_constants

    enabled = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = enabled


def connect(address: str | None = None, num_cpus: int | None = None, verbose: int = 1, dashboard: bool = True) -> None:
    """Join the cluster named by ``address`` (``--address``) or ``RAY_ADDRESS``, else start a Ray instance of this
    study's own: never a cluster someone started on the machine with ``ray start``. The instance listens on loopback
    only and uses token auth (Ray's default for ``ray.init``; ``RAY_AUTH_MODE=disabled`` turns it off) with an
    owner-only token file. ``dashboard``: the instance runs Ray's dashboard, which Ray Train trials need (it frees the
    CPUs of workers ASHA stops); without it Ray starts in 2.6 s instead of 3.4 to 4.9 s and its processes use 4.5%
    of a core at rest instead of 7% (11 processes fewer; 2 cores, measured 2026-12-07)."""
    import ray

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    quiet = {"log_to_driver": verbose > 1, "logging_level": logging.INFO if verbose > 1 else logging.WARNING}
    token_auth = os.environ.get("RAY_AUTH_MODE", "token").lower() == "token"  # unset: Ray 2.59+ turns it on for ray.init
    token = ray_token_file() if token_auth else None
    joining = address or os.environ.get("RAY_ADDRESS")
    if joining:
        keep_token_private(token)
        ray.init(address=joining, **quiet)
        if verbose:
            given = "--address" if address else "RAY_ADDRESS"
            print(f"study: joined the Ray cluster at {joining} ({given}); without {given} it starts a Ray instance of its own", flush=True)
        return
    if not token_auth and verbose:
        print("study: Ray token authentication is off (RAY_AUTH_MODE=disabled): any user of this machine can use this Ray "
              "instance on 127.0.0.1; unset RAY_AUTH_MODE to turn it on", file=sys.stderr)
    create_private_token(token)
    keep_token_private(token)
    if verbose:
        print("study: starting a Ray instance of its own on 127.0.0.1 ...", flush=True)
    with node_on_loopback():
        ray.init(address="local", num_cpus=num_cpus, _node_ip_address="127.0.0.1", include_dashboard=None if dashboard else False, **quiet)
    keep_token_private(token)


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


@dataclass(frozen=True)
class StudyData:
    """What ``preflight`` found: the data file the trials read, and the PrivateTest faces the best model is scored on,
    kept so that the export at the study's end does not parse the file again (0.6 s on its critical path)."""
    path: str
    test_faces: np.ndarray


def preflight(config: StudyConfig, resume: bool = False, joining: bool = False) -> StudyData:
    """Every check that needs no Ray, so a mistake costs a second instead of a Ray start."""
    study_uri = config.study_uri
    url = optuna_db.storage_url(config)
    if "://" not in study_uri:
        for parent in [Path(study_uri), *Path(study_uri).parents]:
            if parent.exists() and not parent.is_dir():
                raise StudyConfigError(f"storage: {parent} is a file, not a directory; pass --storage DIRECTORY")
    if resume and not storage.exists(f"{study_uri}/{STUDY_CONFIG}"):
        raise MissingFile(f"nothing to resume: no study at {study_uri}; start it without --resume")
    if resume and storage.exists(f"{study_uri}/{BEST_MODEL}"):
        raise OutputExists(f"study '{config.name}' has finished (its best model is {study_uri}/{BEST_MODEL}), so there is nothing to "
                           "resume; start another study with a new --name")
    signing.study_key(create=True)
    if resume:
        refuse_pickled_searcher(config)
        signing.verify(study_uri, config.name)
        optuna_db.check_resumable(url, config.name)
    if not resume and storage.exists(study_uri):
        raise OutputExists(f"study '{config.name}' already exists at {study_uri}; pass --resume to continue it or choose another --name")
    if not resume and config.optuna_storage:
        optuna_db.check_new(url, config.name)
    data_path = str(resolve_data_path(config.data).absolute())
    splits = load_splits(data_path)
    validation = splits.validation(config.train.val_unique)
    empty = [name for name, faces in (("Training", splits.train), ("PublicTest", validation), ("PrivateTest", splits.test_unique)) if not len(faces)]
    if empty:
        raise StudyConfigError(f"{data_path} has no {' and no '.join(empty)} faces: a study trains on Training, selects on PublicTest "
                               "faces and scores its best model on PrivateTest faces, leaving out copies of Training faces (in PublicTest "
                               "unless train.val_unique is false)")
    check_inits(config)
    if config.gpus_per_trial and not joining and not _local_gpus():
        raise StudyConfigError(f"gpus_per_trial is {config.gpus_per_trial} but this machine has no GPU; set gpus_per_trial: 0 "
                               "or join a cluster with GPUs (--address)")
    return StudyData(path=data_path, test_faces=splits.test_unique)


def check_inits(config: StudyConfig) -> None:
    """Every model a trial can start from loads: a missing, damaged or refused one would fail every trial, each with a traceback."""
    for init in sorted({value for value in [config.train.init, *space.possible_values(config.search, "init")] if value}):
        try:
            load_checkpoint(init)
        except (MissingFile, CheckpointError) as error:
            raise type(error)(f"train.init: {error}") from None


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

    data = preflight(config, resume, joining=True)
    resources = plan_resources(config, ray.cluster_resources())
    trainable = study_trainable(config, resources, data.path, trial)
    log.info("study %s: %d trials, %d at a time, %s per trial", config.study_uri, config.num_samples, resources.concurrent,
             f"{resources.workers} TorchTrainer worker(s) x {resources.cpu:g} CPU / {resources.gpu:g} GPU" if resources.workers
             else f"{resources.cpu:g} CPU / {resources.gpu:g} GPU in-process")
    tuner = restored_tuner(config, trainable) if resume else new_tuner(config, trainable, resources)
    try:
        with stop_signals(hard_stop_line(config), lambda: signing.sign(config.study_uri)) as received, optuna_db.answering(config), stop_on_a_full_disk(config):
            results = tuner.fit()
    finally:
        signing.sign(config.study_uri)  # control is back with the driver: vouch for the state Tune left for a resume
    statuses = saved_statuses(config.study_uri)
    trials = trial_table(results, config, statuses)
    write_trial_table(config.study_uri, trials)
    if received or interrupted(statuses, config):
        log.warning("study interrupted: resume it with --name %s --storage %s --resume", config.name, config.storage)
        return StudySummary(study_uri=config.study_uri, trials=trials, best_trial=None, best_model=None, holdout=None, interrupted=True,
                            stop_signal=received[0] if received else None)
    if config.verbose:
        print(f"study: exporting the best trial and scoring it on the hold-out ({len(config.holdout_conditions)} conditions) ...", flush=True)
    best_trial, best_model, holdout = export_best(results, trials, config, data.test_faces)
    return StudySummary(study_uri=config.study_uri, trials=trials, best_trial=best_trial, best_model=best_model, holdout=holdout)


def study_trainable(config: StudyConfig, resources: Resources, data_path: str, trial: TrialFunction | None) -> Any:
    """The trial function with the settings every trial shares (a trial's config holds only its sampled parameters) and its resources."""
    from ray import tune

    train_settings = to_dict(config.train)
    if train_settings["device"] == "auto":
        train_settings["device"] = "cuda" if resources.gpu > 0 else "cpu"
    settings = {
        "train": train_settings, "search": config.search, "data": data_path, "grid_every": config.grid_every, "study_uri": config.study_uri,
        "max_failures": config.max_failures, "train_storage": f"{config.study_uri}/{TRAIN_RUNS}",
        "resources": {"workers": resources.workers, "cpu": resources.cpu, "gpu": resources.gpu}, "grow": grows(config, resources),
    }
    trial = trial or (tune_trial_with_trainer if resources.workers else tune_trial)
    trial_resources = {"cpu": DRIVER_CPU} if resources.workers else {"cpu": resources.cpu, "gpu": resources.gpu}
    return tune.with_resources(tune.with_parameters(trial, settings=settings), trial_resources)


def restored_tuner(config: StudyConfig, trainable: Any) -> Any:
    """Tune's saved experiment, continued."""
    from ray import tune

    log.info("resuming study %s", config.study_uri)
    tuner = tune.Tuner.restore(config.study_uri, trainable=trainable, resume_errored=True)
    with_own_searcher(tuner, config)
    return tuner


def with_own_searcher(tuner: Any, config: StudyConfig) -> None:
    """The searcher pickled in ``tuner.pkl`` holds the paths of the folder where the study began, so a copy resumed from
    another ``--storage`` would write into the original's ``optuna.db``. It is replaced by one opened from this study's
    own paths, which Tune then restores from its JSON state. (Through Ray Client, Tune keeps the pickled one.)"""
    import dataclasses

    from study.searcher import RecordingSearch

    local = getattr(tuner, "_local_tuner", None)
    if local is not None:
        local._tune_config = dataclasses.replace(local._tune_config, search_alg=RecordingSearch(config, optuna_db.storage_url(config)))


def new_tuner(config: StudyConfig, trainable: Any, resources: Resources) -> Any:
    """A Tuner searching with ``RecordingSearch`` (Optuna) and ASHA (or FIFO), after saving ``study.yaml``. Each new trial
    runs in the process of one that ended (Tune's ``reuse_actors``), which skips a process start, the imports of torch
    and Ray Tune and torch's first-use costs: 3 to 5 s between one trial's end and the next one's start and 2.2 to 3.8 s
    of setup on 2 cores, against under 1 s for both."""
    from ray import tune
    from study.console import ConsoleReporter
    from study.growth import ThreadShares
    from study.searcher import RecordingSearch
    from study.tensorboard import TrialCsvLogger, TrialJsonLogger, TrialTensorBoard

    storage.write_bytes(f"{config.study_uri}/{STUDY_CONFIG}", to_yaml(config).encode(), overwrite=False)
    searcher = RecordingSearch(config, optuna_db.storage_url(config))
    growth = [ThreadShares(config.study_uri, max(1, int(resources.cpu)), config.num_samples)] if grows(config, resources) else []
    run_config = tune.RunConfig(
        name=config.name, storage_path=storage_root(config.storage), verbose=config.verbose if config.verbose > 1 else 0,
        callbacks=[TrialJsonLogger(), TrialCsvLogger(), TrialTensorBoard(config.search), *growth,
                   *([ConsoleReporter(config)] if config.verbose == 1 else [])],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=0 if resources.workers else config.max_failures),
    )
    return tune.Tuner(
        trainable, run_config=run_config,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=trial_scheduler(config), num_samples=config.num_samples,
                                    max_concurrent_trials=resources.concurrent, metric=config.metric, mode=config.mode,
                                    trial_dirname_creator=tune_trial_dirname, reuse_actors=True),
    )


def trial_scheduler(config: StudyConfig) -> Any:
    """The scheduler that stops trials: ASHA (Ray's, or ``RevokingASHA`` with ``revoke_promotions``) or FIFO; Tune hands it
    the study's metric and mode."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from study.asha import RevokingASHA

    if config.scheduler != "asha":
        return FIFOScheduler()
    asha = RevokingASHA if config.revoke_promotions else ASHAScheduler
    return asha(grace_period=config.grace_period, reduction_factor=config.reduction_factor, max_t=config.max_epochs)


def grows(config: StudyConfig, resources: Resources) -> bool:
    """Whether running trials take the CPUs that ended ones free (``study.growth``): only CPU trials trained in process,
    whose torch threads follow their CPUs. At the end of a study on 2 cores the last trial then trains on both (22 s an
    epoch became 15 s) instead of leaving one idle."""
    return config.grow_trials and not resources.workers and resources.gpu == 0


def write_trial_table(study_uri: str, trials: pd.DataFrame) -> None:
    """The trial table, one row per trial, as CSV and Parquet."""
    storage.write_bytes(f"{study_uri}/{TRIALS_CSV}", trials.to_csv(index=False).encode())
    buffer = io.BytesIO()
    trials.to_parquet(buffer, index=False)
    storage.write_bytes(f"{study_uri}/{TRIALS_PARQUET}", buffer.getvalue())


def without_tune_resume_advice(record: logging.LogRecord) -> bool:
    """False for Tune's "Resume experiment with: Tuner.restore(...)" line, which is the wrong advice for a study."""
    return "Tuner.restore(" not in record.getMessage()


def hard_stop_line(config: StudyConfig) -> str:
    """What a second Ctrl-C leaves, and how to go on: it ends the driver at once, without Tune's orderly stop."""
    return (f"study: stopped at once by a second interrupt; the finished trials and each trial's last checkpoint are saved in "
            f"{config.study_uri}; continue the study with: {resume_command(config)}")


@contextlib.contextmanager
def stop_signals(hard_stop: str, before_exit: Callable[[], None]):
    """Ctrl-C and SIGTERM stop the study as Tune's own stop signal does (state saved for a resume), and are recorded.

    Tune's SIGINT handler does not say afterwards that it fired, and it does not handle SIGTERM, so both are
    caught here and passed on as SIGUSR1, which Tune always handles. A second signal stops at once, with the line
    ``hard_stop`` and no traceback: the process exits from the handler, as a kill would, so Tune's half-done stop
    raises nothing; what Tune has saved is what a SIGKILL leaves, which ``--resume`` continues once ``before_exit`` has
    signed it (the driver's own files: it vouches for them as at a normal end). Once a signal has come
    the driver is ending, so its handler stays after the block: a second one while the trial table is written or Ray
    shuts down at exit also ends it at once. Tune's own advice on an interrupt (``Tuner.restore(...)``) is not how a
    study resumes, so it is left out; the study says how (``--resume``).
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
        sys.stdout.flush()
        try:
            before_exit()
        except OSError as error:
            print(f"study: could not sign the study for a resume ({error}); if you trust it, sign it with python -m study.signing STUDY",
                  file=sys.stderr, flush=True)
        print(hard_stop, file=sys.stderr, flush=True)
        os._exit(128 + signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    previous_usr1 = signal.getsignal(signal.SIGUSR1)
    saved_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    tune_log = logging.getLogger("ray.tune.tune")
    tune_log.addFilter(without_tune_resume_advice)
    try:
        yield received
    finally:
        tune_log.removeFilter(without_tune_resume_advice)
        for signum, handler in previous.items():
            if not received:
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


def tune_trial_dirname(trial: Any) -> str:
    return trial_dirname(trial.trial_id)


def trial_table(results: Any, config: StudyConfig, statuses: dict[str, str]) -> pd.DataFrame:
    """One row per trial: sampled hyperparameters, best epoch, validation metrics, time, size and outcome."""
    rows = []
    for result in results:
        metrics = result.metrics or {}
        params = result.config or {}
        trial_id = str(metrics.get("trial_id") or Path(str(result.path)).name.removeprefix(TRIAL_DIR_PREFIX))
        ended = statuses.get(trial_id, "TERMINATED") == "TERMINATED"
        rows.append({
            "trial_id": trial_id,
            "status": trial_status(result.error, metrics, ended=ended, planned_epochs=config.train.epochs, asha=config.scheduler == "asha"),
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
        table = table.sort_values(selection_column(config.metric), ascending=ascending, na_position="last").reset_index(drop=True)
    return table


def _checkpoint_uri(result: Any) -> str | None:
    metrics = result.metrics or {}
    if metrics.get("checkpoint_path"):
        return str(metrics["checkpoint_path"])
    return result.checkpoint.path if result.checkpoint else None


def export_best(results: Any, trials: pd.DataFrame, config: StudyConfig, test_faces: np.ndarray) -> tuple[str | None, str | None, pd.DataFrame | None]:
    """Copy the best usable trial's best weights to ``best/model.pt``, its settings to ``best/train.yaml``, and score it on
    the hold-out made from ``test_faces`` (the PrivateTest faces).

    ``best/model.pt`` is written last, so its presence means the export is complete (and the study finished).
    """
    usable = trials[usable_rows(trials, selection_column(config.metric))]
    usable = usable[usable["checkpoint"].notna()]
    if usable.empty:
        log.warning("no trial finished with a usable checkpoint; nothing exported")
        return None, None, None
    best = usable.iloc[0]
    checkpoint = _read_checkpoint(best["checkpoint"], config)
    model_uri = f"{config.study_uri}/{BEST_MODEL}"
    model = ConvAutoencoder(model_config_from_dict(checkpoint["config"]["model"]))
    model.load_state_dict(checkpoint["best_model_state"])
    holdout = holdout_for(test_faces, default_cache_dir(), config.holdout_conditions)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    table = evaluate_on_holdout(model_denoiser(model.to(device).eval(), device), holdout, faces=config.holdout_faces)
    table.insert(0, "trial_id", best["trial_id"])
    storage.write_bytes(f"{config.study_uri}/{BEST_HOLDOUT}", table.to_csv(index=False).encode())
    recipe = f"# The winning trial's training settings: python -m denoise_core.train --config {BEST_RECIPE} --out RUN replays it.\n"
    storage.write_bytes(f"{config.study_uri}/{BEST_RECIPE}", (recipe + yaml.safe_dump(checkpoint["config"], sort_keys=False)).encode())
    storage.write_bytes(f"{config.study_uri}/{BEST_TRIAL}", yaml.safe_dump({k: (v.item() if hasattr(v, "item") else v) for k, v in best.items()}, sort_keys=False).encode())
    with optuna_db.answering(config):
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
