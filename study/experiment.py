"""Controlled experiments: one factor at a few levels, everything else fixed, each level trained from several seeds.

A search finds good settings; an experiment measures what one setting does. Its file (``study/experiments/*.yaml``)
names the factor and its levels, a reference training configuration (a study's ``best/train.yaml`` or a shipped
recipe ``models/*.yaml``), the budget every trial shares (``train:`` over the reference) and the seeds. The trials
are a Ray Tune grid over levels x seeds with the FIFO scheduler: no ASHA (every trial trains the same epochs) and
no Optuna (a comparison is not a search). Each trial runs the study's own trial function and the core ``fit``.
Every trial trains its full budget (``patience`` is set to the epochs, so none stops early) on the same faces and
validation faces, with the same validation noise (``val_seed`` is fixed, so the seed does not redraw it); only the
factor and ``seed`` differ. The scores that the statistics use come from the fixed hold-out, the same bytes for every
trial.

The experiment lives in ``STORAGE/NAME``: ``experiment.yaml`` (the resolved experiment, with each level's name and the shared training settings), ``base.yaml`` (the
training settings every trial shares, before the factor and seed), Tune's trial directories, ``trials.csv`` (one
row per trial: level, seed, status, validation scores) and ``scores.parquet`` (each trial's best weights scored
on the hold-out, one row per face and condition, so the statistics can pair faces). ``results.experiment_report``
turns it into ``report/``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from denoise_core.checkpoint import CheckpointError, load_checkpoint
from denoise_core.data import default_cache_dir, load_splits, resolve_data_path
from denoise_core.errors import MissingFile, OutputExists
from denoise_core.files import write_atomic
from denoise_core.evaluate import face_scores, model_denoiser
from denoise_core.fit import TrainConfig
from denoise_core.holdout import SYNTHETIC_CONDITIONS, holdout_for, validate_conditions
from denoise_core.model import ConvAutoencoder, model_config_from_dict
from denoise_core.settings import SettingsError, apply_assignments, build, differences, field_paths, load_yaml, load_yaml_file, merge, to_dict
from denoise_core.study_files import trial_status
from study import signing
from study.config import StudyConfigError, check_name, storage_root, trial_config
from study.trial import CHECKPOINT_FILE

log = logging.getLogger("study.experiment")
NOT_FACTORS = ("seed", "val_noise", "val_size", "val_unique", "val_seed", "patience", "device", "num_threads", "amp")  # the replicate, the validation, the budget, where it runs
DEFAULT_CONDITIONS = tuple(c for c in SYNTHETIC_CONDITIONS if "+" not in c)  # every S&P density and Gaussian sigma
RESUMABLE = ("data", "verbose", "report")


class ExperimentError(StudyConfigError):
    """An experiment file that cannot run as a controlled comparison; the message names the setting."""


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    question: str = ""  # the question in words, for the report
    label: str = ""  # how a level is named in sentences ("bottleneck" in "bottleneck 16 is worse than 32"); default: the factor
    factor: str = ""  # the training setting that varies, dotted as in --set (model.bottleneck_size)
    levels: list = field(default_factory=list)  # its values, in the order the report lists them
    level_names: tuple[str, ...] = ()  # optional short names for the levels (long noise strings), in the same order
    seeds: tuple[int, ...] = (0, 1, 2)  # train.seed of each replicate; every level trains once per seed
    reference: str = ""  # a TrainConfig YAML: a study's best/train.yaml or a shipped recipe models/*.yaml
    train: dict[str, Any] = field(default_factory=dict)  # the budget: training settings over the reference, the same for every trial
    storage: str = "./studies"
    data: str | None = None
    holdout_faces: int | None = 500  # score each model on the first N hold-out faces (None: all)
    holdout_conditions: tuple[str, ...] = DEFAULT_CONDITIONS
    max_concurrent: int = 0  # trials at a time (0: as many as the CPUs allow)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # a GPU share per trial (with train.device: cuda or auto); 0: CPU only
    max_failures: int = 1  # restarts of a failed trial from its last checkpoint
    grid_every: int = 0  # epochs between TensorBoard image grids (0: none)
    report: bool = True  # build results.experiment_report into NAME/report/ at the end
    verbose: int = 1

    def __post_init__(self) -> None:
        checks = [
            (bool(self.factor), "factor is missing: name the training setting that varies, e.g. factor: model.bottleneck_size"),
            (self.factor not in NOT_FACTORS, f"factor {self.factor!r} cannot vary: {', '.join(NOT_FACTORS)} are held fixed (seed is the replicate)"),
            (self.factor in field_paths(TrainConfig), f"factor {self.factor!r} is not a training setting; known: {', '.join(field_paths(TrainConfig))}"),
            (len(self.levels) >= 2, "levels needs at least two values to compare, e.g. levels: [16, 32, 64]"),
            (len({repr(v) for v in self.levels}) == len(self.levels), f"levels lists a value twice: {self.levels}"),
            (not self.level_names or len(self.level_names) == len(self.levels), "level_names needs one name per level (or none)"),
            (len(set(self.level_names)) == len(self.level_names), f"level_names lists a name twice: {list(self.level_names)}"),
            (len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds), "seeds needs one or more distinct whole numbers"),
            (bool(self.reference), "reference is missing: a training YAML, e.g. models/fer2013-blind.yaml or studies/NAME/best/train.yaml"),
            (self.factor not in self.train and "seed" not in self.train, "train: sets the budget; the factor and seed come from levels and seeds"),
            (self.holdout_faces is None or self.holdout_faces >= 1, "holdout_faces must be >= 1, or null for every face"),
            (self.cpus_per_trial > 0 and self.max_concurrent >= 0 and self.max_failures >= 0, "cpus_per_trial must be > 0, max_concurrent and max_failures >= 0"),
            (self.gpus_per_trial >= 0, "gpus_per_trial must be >= 0"),
            ("://" not in self.storage, "storage must be a local (or shared, mounted) folder: the scores are read from its trial directories"),
        ]
        for ok, message in checks:
            if not ok:
                raise ExperimentError(message)
        check_name(self.name)
        try:
            validate_conditions(self.holdout_conditions)
        except Exception as error:  # InputError: one line naming the bad condition
            raise ExperimentError(f"holdout_conditions: {error}") from None

    @property
    def uri(self) -> str:
        return f"{storage_root(self.storage)}/{self.name}"

    @property
    def names(self) -> list[str]:
        """Each level's name in tables and sentences."""
        return list(self.level_names) if self.level_names else [level_name(v) for v in self.levels]


def level_name(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def load_experiment(path: str | Path, assignments: list[tuple[str, Any]] | None = None) -> ExperimentConfig:
    """The experiment file with ``--set`` assignments (``name=...``, ``train.epochs=1``) over it, checked."""
    try:
        values = load_yaml_file(path, "experiment file")
        return build(ExperimentConfig, apply_assignments(values, assignments or []))
    except ExperimentError:
        raise
    except SettingsError as error:
        raise ExperimentError(str(error)) from None


def base_config(config: ExperimentConfig) -> TrainConfig:
    """The training settings every trial shares: the reference, then the budget, with early stopping off.

    Relative paths (the reference, its ``init``) are read from the current directory, as ``--config`` is.
    """
    reference = Path(config.reference).expanduser()
    if not reference.is_file():
        raise MissingFile(f"reference {reference} does not exist: name a training YAML such as models/fer2013-blind.yaml or a study's best/train.yaml")
    try:
        values = merge(load_yaml_file(reference, "reference"), config.train)
        longest = [level for level in config.levels if isinstance(level, int)] if config.factor == "epochs" else []
        epochs = max([build(TrainConfig, values).epochs, *longest])  # patience covers the longest trial: none stops early
        values = {"val_seed": values.get("seed", 0) + 1, **values, "patience": epochs, "num_threads": max(1, int(config.cpus_per_trial))}
        if values.get("init") and "://" not in str(values["init"]):
            values["init"] = str(Path(values["init"]).expanduser().resolve())
        base = build(TrainConfig, values)
    except SettingsError as error:
        raise ExperimentError(f"reference {reference} with the experiment's train: settings: {error}") from None
    if config.factor == "noise" and base.val_noise is None:
        raise ExperimentError("factor noise with no val_noise: each level would pick its best epoch on its own noise; set train.val_noise")
    if base.init:
        try:
            load_checkpoint(base.init)
        except (MissingFile, CheckpointError) as error:
            raise type(error)(f"init (from the reference or train:): {error}") from None
    return base


def trial_grid(config: ExperimentConfig, base: TrainConfig) -> list[tuple[Any, int, TrainConfig]]:
    """Every trial's (level, seed, training settings); a level that the settings refuse is a one-line error naming it."""
    grid = []
    for level in config.levels:
        for seed in config.seeds:
            try:
                trial = trial_config(to_dict(base), [(config.factor, level), ("seed", seed)], f"level {level_name(level)}")
            except StudyConfigError as error:
                raise ExperimentError(str(error)) from None
            grid.append((level, seed, trial))
    return grid


def search_space(config: ExperimentConfig) -> dict[str, Any]:
    """The grid in the search-space language the trial function reads: one choice per factor and seed."""
    return {config.factor: {"choice": list(config.levels)}, "seed": {"choice": list(config.seeds)}}


def resume_check(saved_yaml: str, config: ExperimentConfig) -> None:
    """A resume continues the saved experiment: only ``RESUMABLE`` settings may differ."""
    saved = load_yaml(saved_yaml, "experiment.yaml")
    saved = {k: v for k, v in (saved or {}).items() if k not in ("names", "base")}
    changed = [path for path in differences(to_dict(build(ExperimentConfig, saved)), to_dict(config)) if path.split(".")[0] not in RESUMABLE]
    if changed:
        raise ExperimentError(f"--resume cannot change {', '.join(changed)} (saved in experiment.yaml); start a new experiment with another name")


def preflight(config: ExperimentConfig, resume: bool) -> tuple[str, TrainConfig]:
    """Every check that needs no Ray; returns the data path and the shared training settings."""
    out = Path(config.uri)
    if resume and not (out / "experiment.yaml").is_file():
        raise MissingFile(f"nothing to resume: no experiment at {out}; start it without --resume")
    if resume and (out / "scores.parquet").is_file():
        raise OutputExists(f"experiment {out} has finished (scores.parquet exists); start another with a new name (--set name=...)")
    if not resume and out.exists():
        raise OutputExists(f"experiment {out} already exists; pass --resume to continue it or choose another name (--set name=...)")
    if resume:
        resume_check((out / "experiment.yaml").read_text(), config)
    base = base_config(config)
    trial_grid(config, base)
    return str(resolve_data_path(config.data).absolute()), base


def experiment_yaml(config: ExperimentConfig, base: TrainConfig) -> str:
    """The resolved experiment, each level's name (``names``) and the shared training settings (``base``), for the report."""
    return yaml.safe_dump({**to_dict(config), "names": config.names, "base": to_dict(base)}, sort_keys=False)


def run_experiment(config: ExperimentConfig, resume: bool = False) -> "ExperimentSummary":
    """Train the grid on the connected Ray instance, then score every model per face (unless interrupted)."""
    trained = train_grid(config, resume)
    return trained if trained.interrupted else score_experiment(trained, config)


def plan_concurrency(config: ExperimentConfig, cluster: dict[str, float]) -> int:
    """Trials at a time on what the cluster has; one-line errors for a trial that can never start."""
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    if config.cpus_per_trial > cpus:
        raise ExperimentError(f"one trial needs {config.cpus_per_trial:g} CPUs but the Ray instance has {cpus:g}; lower cpus_per_trial")
    if config.gpus_per_trial > gpus:
        raise ExperimentError(f"one trial needs {config.gpus_per_trial:g} GPUs but the Ray instance has {gpus:g}; set gpus_per_trial: 0")
    fit = int(cpus // config.cpus_per_trial)
    if config.gpus_per_trial:
        fit = min(fit, int(gpus // config.gpus_per_trial))
    return max(1, min(fit, config.max_concurrent) if config.max_concurrent else fit)


def ended_trials(out: Path, config: ExperimentConfig) -> pd.DataFrame | None:
    """A resumed experiment's trial table when every trial of the grid has ended (only the scoring is left), else None."""
    if not (out / "trials.csv").is_file():
        return None
    trials = pd.read_csv(out / "trials.csv")
    if len(trials) < len(config.levels) * len(config.seeds) or (trials["status"] == "interrupted").any():
        return None
    return trials


def train_grid(config: ExperimentConfig, resume: bool = False) -> "ExperimentSummary":
    """Every trial of levels x seeds as one Tune run (FIFO, no searcher), and ``trials.csv``; nothing is scored yet. Each
    trial after the first ones runs in the process of one that ended (``reuse_actors``), as a study's do: a process start
    and the imports of torch and Ray Tune fewer."""
    import ray
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from study.study import saved_statuses, stop_signals, trial_dirname
    from study.tensorboard import TrialCsvLogger, TrialJsonLogger, TrialTensorBoard
    from study.trial import tune_trial

    data_path, base = preflight(config, resume)
    out = Path(config.uri)
    ended = ended_trials(out, config) if resume else None
    if ended is not None:
        return ExperimentSummary(out, ended, None, interrupted=False, data=data_path)
    concurrent = plan_concurrency(config, ray.cluster_resources())
    settings = {"train": to_dict(base), "search": search_space(config), "data": data_path, "grid_every": config.grid_every,
                "resources": {"workers": 0, "cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial}}
    trainable = tune.with_resources(tune.with_parameters(tune_trial, settings=settings), {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial})
    run_config = tune.RunConfig(
        name=config.name, storage_path=storage_root(config.storage), verbose=config.verbose if config.verbose > 1 else 0,
        callbacks=[TrialJsonLogger(), TrialCsvLogger(), TrialTensorBoard(settings["search"])], checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=config.max_failures))
    if resume:
        signing.verify(str(out), config.name)
        tuner = tune.Tuner.restore(str(out), trainable=trainable, resume_errored=True)
    else:
        out.mkdir(parents=True)
        write_atomic(out / "experiment.yaml", experiment_yaml(config, base).encode())
        write_atomic(out / "base.yaml", ("# The training settings every trial shares; each trial sets the factor and seed over them.\n"
                                         + yaml.safe_dump(to_dict(base), sort_keys=False)).encode())
        space = {config.factor: tune.grid_search(list(config.levels)), "seed": tune.grid_search(list(config.seeds))}
        tuner = tune.Tuner(trainable, param_space=space, run_config=run_config,
                           tune_config=tune.TuneConfig(scheduler=FIFOScheduler(), num_samples=1, max_concurrent_trials=max(1, concurrent),
                                                       trial_dirname_creator=trial_dirname, reuse_actors=True))
    log.info("experiment %s: %d levels x %d seeds, %d at a time", out, len(config.levels), len(config.seeds), concurrent)
    try:
        with stop_signals(f"study/run_experiment.py: stopped at once by a second interrupt; the finished trials and each trial's last "
                          f"checkpoint are saved in {out}; continue it with the same command and --resume",
                          lambda: signing.sign(str(out))) as received:
            results = tuner.fit()
    finally:
        signing.sign(str(out))
    trials = experiment_table(results, config, base, saved_statuses(str(out)))
    write_atomic(out / "trials.csv", trials.to_csv(index=False).encode())
    if received or (trials["status"] == "interrupted").any() or len(trials) < len(config.levels) * len(config.seeds):
        log.warning("experiment interrupted: continue it with the same command and --resume")
        return ExperimentSummary(out, trials, None, interrupted=True, data=data_path)
    return ExperimentSummary(out, trials, None, interrupted=False, data=data_path)


def score_experiment(trained: "ExperimentSummary", config: ExperimentConfig) -> "ExperimentSummary":
    """Score the trained grid per face into ``scores.parquet`` (needs no Ray: a command line may shut it down first)."""
    scores = score_trials(trained.trials, config, trained.data)
    write_atomic(trained.path / "scores.parquet", scores.to_parquet(index=False))
    return ExperimentSummary(trained.path, trained.trials, scores, interrupted=False, data=trained.data)


@dataclass(frozen=True)
class ExperimentSummary:
    path: Path
    trials: pd.DataFrame
    scores: pd.DataFrame | None  # None until scored; never scored when interrupted
    interrupted: bool
    data: str  # the FER2013 file the trials trained on, for the scoring


def experiment_table(results: Any, config: ExperimentConfig, base: TrainConfig, statuses: dict[str, str]) -> pd.DataFrame:
    """One row per trial: its level (value and name), seed, outcome, epochs, validation scores and best checkpoint."""
    names = {repr(value): name for value, name in zip(config.levels, config.names)}
    rows = []
    for result in results:
        metrics, params = result.metrics or {}, result.config or {}
        trial_id = str(metrics.get("trial_id") or Path(str(result.path)).name.removeprefix("trial_"))
        level = params.get(config.factor)
        rows.append({"trial_id": trial_id, "level": names.get(repr(level), level_name(level)), "value": level_name(level), "seed": params.get("seed"),
                     "status": trial_status(result.error, metrics, ended=statuses.get(trial_id, "TERMINATED") == "TERMINATED",
                                           planned_epochs=base.epochs, asha=False),
                     "epochs_run": metrics.get("epoch"), "best_epoch": metrics.get("best_epoch"), "best_val_psnr": metrics.get("best_val_psnr"),
                     "best_val_ssim": metrics.get("best_val_ssim"), "parameters": metrics.get("parameters"), "time_s": metrics.get("time_total_s"),
                     "checkpoint": result.checkpoint.path if result.checkpoint else None})
    order = {name: index for index, name in enumerate(config.names)}
    table = pd.DataFrame(rows)
    return table.sort_values(["level", "seed"], key=lambda c: c.map(order) if c.name == "level" else c).reset_index(drop=True) if len(table) else table


def score_trials(trials: pd.DataFrame, config: ExperimentConfig, data_path: str) -> pd.DataFrame:
    """Each completed trial's best weights on the fixed hold-out, one row per (trial, condition, face)."""
    splits = load_splits(data_path)
    holdout = holdout_for(splits.test_unique, default_cache_dir(), config.holdout_conditions)
    device = "cuda" if config.gpus_per_trial and torch.cuda.is_available() else "cpu"
    frames = []
    for row in trials[trials["status"] == "completed"].itertuples():
        checkpoint = load_checkpoint(Path(row.checkpoint) / CHECKPOINT_FILE)
        model = ConvAutoencoder(model_config_from_dict(checkpoint["config"]["model"]))
        model.load_state_dict(checkpoint["best_model_state"])
        table = face_scores(model_denoiser(model.to(device).eval(), device), holdout, faces=config.holdout_faces)
        frames.append(table.assign(trial_id=row.trial_id, level=row.level, seed=int(row.seed)))
        log.info("scored trial %s (%s, seed %s) on %d hold-out faces", row.trial_id, row.level, row.seed, config.holdout_faces or len(holdout.clean))
    columns = ["trial_id", "level", "seed", "condition", "face", "psnr", "ssim", "noisy_psnr", "noisy_ssim"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)

