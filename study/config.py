"""The study's configuration: the ``StudyConfig`` schema, resolved by the one settings pipeline.

Layers, later ones winning: the field defaults, a preset (``study/presets/NAME.yaml``), ``--config FILE``,
flags, ``--set KEY=VALUE``. Mappings merge key by key at any depth (``--set train.model.dropout=0.2``
changes one model setting); ``search`` is one unit in a file (a file's ``search:`` replaces the preset's
space), while ``--set search.NAME=...`` adds or replaces one entry. The whole resolved config is validated,
cross-field rules included, before Ray starts, and saved as ``study.yaml``; ``--resume`` builds on exactly
that file, and may change only the settings in ``StudyConfig.RESUMABLE``. ``report_options`` is checked as the
``results.options.ReportOptions`` it becomes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml

from denoise_core import space as search_space
from denoise_core.errors import InputError
from denoise_core.holdout import DEFAULT_CONDITIONS, validate_conditions
from denoise_core.settings import Layers, SettingsError, assemble, field_paths, load_yaml, load_yaml_file, merge, to_dict
from denoise_core.fit import MAX_SEED, TrainConfig, saved_values
from denoise_core.study_files import DEFAULT_METRIC, DEFAULT_MODE, METRIC_MODES, OBJECTIVE_MODES
from results.options import ReportOptions, study_options

PRESETS = ("smoke", "local", "workstation", "full")
NAME_MAX = 100  # a study's directory and Tune's file names under it stay within the file system's 255 bytes
NAME_CHARACTERS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
WHOLE = ("search",)  # replaced as a unit by a file layer; --set search.NAME sets the entry NAME (dots included)


class StudyConfigError(SettingsError):
    """A study setting that is unknown or out of range; the message names it."""


@dataclass(frozen=True)
class StudyConfig:
    name: str = "study"
    storage: str = "./studies"
    optuna_storage: str | None = None  # the Optuna study's database URL (None: sqlite STUDY/optuna.db)
    data: str | None = None
    num_samples: int = 8  # trials
    max_concurrent: int = 0  # 0: as many as the resources found allow
    train_workers: int = 0  # 0: train inside the Tune trial; >= 1: a Ray Train TorchTrainer with that many workers
    cpus_per_worker: float = 1.0
    gpus_per_trial: float | None = None  # None: 0.25 when the cluster has GPUs, else 0
    max_failures: int = 2  # restarts of a failed trial / worker group, from its last checkpoint
    metric: str = DEFAULT_METRIC  # validation only, and the same for every loss: trials with mse and mae compare fairly
    mode: str = DEFAULT_MODE
    objectives: tuple[str, ...] = ()  # optimised beside metric, each in its own direction (OBJECTIVE_MODES); () a single objective
    scheduler: str = "asha"  # "asha" or "none"
    grace_period: int = 2  # ASHA: epochs every trial gets before it can be stopped
    reduction_factor: int = 3
    revoke_promotions: bool = False  # ASHA: a promoted trial stops once later trials push it below its rung's cutoff
    grow_trials: bool = True  # CPU trials trained in process take the CPUs that finished trials free, once none waits for them
    seed: int = 0
    grid_every: int = 5  # epochs between image grids in TensorBoard
    holdout_faces: int | None = None  # evaluate the best model on the first N hold-out faces (None: all)
    holdout_conditions: tuple[str, ...] = DEFAULT_CONDITIONS
    report: bool = True  # build results.report into STUDY/report/ at the end (local storage only)
    report_options: dict[str, Any] = field(default_factory=dict)  # that report's sizes, over ReportOptions' defaults
    verbose: int = 1
    train: TrainConfig = field(default_factory=TrainConfig)  # fixed training settings for every trial
    search: dict[str, Any] = field(default_factory=dict)  # the search space (denoise_core.space)

    # What --resume may change: where the data and the study are on this machine, the hold-out scoring, the
    # report and the output. Tune restores the rest from the experiment state: the number of trials and the
    # searcher's space, ASHA's max_t and the training settings of the trials already running.
    RESUMABLE: ClassVar[tuple[str, ...]] = ("data", "holdout_conditions", "holdout_faces", "report", "report_options", "verbose", "name", "storage")
    HELP: ClassVar[dict[str, str]] = {  # what each setting means, for --help and the README
        "name": "the study's directory name under storage",
        "storage": "where studies live: a local folder, or s3:// / NFS on a cluster",
        "optuna_storage": "database URL of the Optuna study (null: sqlite in the study directory; on a cluster a server, e.g. postgresql://optuna@HEAD_IP/optuna)",
        "data": "FER2013 file or folder (null: $FER2013_PATH)",
        "num_samples": "number of trials",
        "max_concurrent": "trials at a time; 0 packs as many as the cluster's CPUs/GPUs allow",
        "train_workers": "0: train inside the Tune trial (CPU studies, one GPU); N >= 1: a Ray Train TorchTrainer with N workers (DDP when N > 1)",
        "cpus_per_worker": "CPUs per trial (train_workers 0) or per Train worker",
        "gpus_per_trial": "GPU share per worker (null: 0.25 when the cluster has GPUs, 4 small models per GPU, else 0)",
        "max_failures": "restarts of a failed trial or Train worker group, from its last checkpoint",
        "metric": "model selection on the validation split only: val_psnr, val_ssim, or val_loss when every trial uses the same loss",
        "mode": "max for val_psnr and val_ssim, min for val_loss",
        "objectives": "optimised beside metric, a multi-objective search (Pareto front): parameters (minimised); [] optimises metric alone; "
                      "ASHA and the exported best model still follow metric",
        "scheduler": "asha (early stopping; max_t is the most epochs any trial can get) or none (every trial runs to the end)",
        "grace_period": "ASHA: epochs every trial gets before it can be stopped",
        "reduction_factor": "ASHA: a rung keeps 1 in this many trials",
        "revoke_promotions": "ASHA: also stop a trial that went on past a rung once the trials that reached the rung after it push it out of "
                             "the rung's top 1 in reduction_factor (study.asha; false: Ray's ASHA, whose promotions are final)",
        "grow_trials": "CPU trials trained in process (train_workers 0, no GPU) take the CPUs that ended trials free once every trial has "
                       "started and none waits: after its next epoch a trial trains with more torch threads, in its own process "
                       "(study.growth); false: each keeps its cpus_per_worker",
        "seed": "seeds the Optuna sampler (every trial is also seeded through train.seed)",
        "grid_every": "epochs between noisy/denoised/clean image grids in TensorBoard (0: none)",
        "holdout_faces": "score the best model on the first N hold-out faces (null: all)",
        "holdout_conditions": "the hold-out conditions the best model is scored on (a YAML list, or comma-separated as a flag)",
        "report": "build results.report into STUDY/report/ at the end (local storage only)",
        "report_options": "that report's ReportOptions (the results.report flags' settings, faces: 0 for all; python -m results.report STUDY_DIR starts from them too)",
        "verbose": "0 quiet, 1 progress, 2 the full configuration and Ray's own output",
        "train": "fixed TrainConfig settings for every trial",
        "search": "the search space (the next section)",
    }

    def __post_init__(self) -> None:
        checks = [
            (self.num_samples >= 1, "num_samples must be >= 1"),
            (self.max_concurrent >= 0, "max_concurrent must be >= 0"),
            (self.train_workers >= 0, "train_workers must be >= 0"),
            (self.cpus_per_worker > 0, "cpus_per_worker must be > 0"),
            (self.gpus_per_trial is None or 0 <= self.gpus_per_trial, "gpus_per_trial must be >= 0"),
            (self.max_failures >= 0, "max_failures must be >= 0"),
            (self.mode in ("min", "max"), "mode must be 'min' or 'max'"),
            (self.metric in METRIC_MODES, f"metric must be one of {', '.join(METRIC_MODES)}"),
            (self.scheduler in ("asha", "none"), "scheduler must be 'asha' or 'none'"),
            (self.grace_period >= 1 and self.reduction_factor >= 2, "grace_period must be >= 1 and reduction_factor >= 2"),
            (isinstance(self.grow_trials, bool), "grow_trials must be true or false"),
            (isinstance(self.revoke_promotions, bool), "revoke_promotions must be true or false"),
            (self.grid_every >= 0, "grid_every must be >= 0 (0: no image grids)"),
            (0 <= self.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED}"),
            (self.holdout_faces is None or self.holdout_faces >= 1, "holdout_faces must be >= 1, or null for every face"),
            (self.optuna_storage is None or "://" in self.optuna_storage,
             "optuna_storage must be a database URL, e.g. postgresql://optuna@HEAD_IP/optuna or sqlite:///PATH/optuna.db"),
            (self.mode == METRIC_MODES.get(self.metric, self.mode), f"mode for {self.metric} must be {METRIC_MODES.get(self.metric)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise StudyConfigError(message)
        check_name(self.name)
        study_report_options(self)
        _check_objectives(self.objectives)
        try:
            validate_conditions(self.holdout_conditions)
        except InputError as error:
            raise StudyConfigError(f"holdout_conditions: {error}") from None
        _check_search(self)

    @property
    def study_uri(self) -> str:
        return f"{storage_root(self.storage)}/{self.name}"

    @property
    def max_epochs(self) -> int:
        """The most epochs any trial can train: ASHA's ``max_t``."""
        epochs = [value for value in search_space.possible_values(self.search, "epochs") if isinstance(value, int)]
        return max([self.train.epochs, *epochs])


def _check_objectives(objectives: tuple[str, ...]) -> None:
    """Each objective once, and only those with a direction and a trial-table column (``OBJECTIVE_MODES``)."""
    unknown = [name for name in objectives if name not in OBJECTIVE_MODES]
    if unknown:
        raise StudyConfigError(f"objectives: unknown objective(s) {', '.join(map(str, unknown))}; choose from {', '.join(OBJECTIVE_MODES)} "
                               "(metric is always the first objective)")
    if len(set(objectives)) < len(objectives):
        raise StudyConfigError("objectives: each objective may be named once")


def study_report_options(config: StudyConfig) -> ReportOptions:
    """The options of the report a study builds at its end: ``report_options`` over ``ReportOptions``' defaults."""
    try:
        return study_options(config.report_options)
    except SettingsError as error:
        raise StudyConfigError(str(error)) from None


def searchable_settings() -> set[str]:
    """Training settings a search may set: every ``TrainConfig`` field, model fields as ``model.NAME``."""
    return set(field_paths(TrainConfig))


def _check_search(config: StudyConfig) -> None:
    """The space's structure, then every value it can produce on every option path, against the study's own settings."""
    try:
        search_space.check_space(config.search, searchable_settings())
    except search_space.SearchSpaceError as error:
        raise StudyConfigError(str(error)) from None
    base = to_dict(config.train)
    for label, fixed, sampled in search_space.branches(config.search):
        trial_config(base, fixed, f"search ({label})")
        for name, spec in sampled.items():
            for value in search_space.edge_values(spec):
                trial_config(base, [*fixed, (name, value)], f"search: '{name}' value {value!r} ({label})")
    searched = search_space.searched_settings(config.search)
    if "noise" in searched and config.train.val_noise is None:
        raise StudyConfigError("search varies noise but train.val_noise is not set, so each trial would be validated on its own "
                               "noise and ranked on a different problem; set train.val_noise (e.g. to the hold-out's mix)")
    if "val_noise" in searched:
        raise StudyConfigError("search varies val_noise: trials would be ranked on different validation problems; fix it under train:")
    seed_draws_validation = config.train.val_seed is None  # then train.seed also draws the validation noise
    validation_setters = sorted(searched & ({"val_size", "val_unique", "val_seed"} | ({"seed"} if seed_draws_validation else set())))
    if validation_setters:
        raise StudyConfigError(f"search varies {', '.join(validation_setters)}: that changes the validation faces or their noise, so "
                               "trials would be ranked on different validation problems; fix it under train:"
                               + (" (to search seeds, fix the validation noise with train.val_seed)" if "seed" in validation_setters else ""))
    if config.metric == "val_loss" and "loss" in searched:
        raise StudyConfigError("metric val_loss compares mse with mae when loss is searched; use val_psnr or val_ssim")
    if config.scheduler == "asha" and config.grace_period > config.max_epochs:
        raise StudyConfigError(f"grace_period ({config.grace_period}) must be <= the epochs a trial can train ({config.max_epochs}); "
                               f"lower grace_period or raise train.epochs")


def trial_config(base: dict[str, Any], assignments: list[tuple[str, Any]], what: str = "trial") -> TrainConfig:
    """One trial's ``TrainConfig``: the study's fixed training settings with the trial's assignments applied."""
    try:
        return assemble(TrainConfig, base, Layers(assignments=assignments))
    except SettingsError as error:
        raise StudyConfigError(f"{what}: {error}") from None


def storage_root(storage: str) -> str:
    """Absolute local path or a URI (``s3://...``); Ray needs absolute paths for local storage."""
    return storage.rstrip("/") if "://" in storage else str(Path(storage).expanduser().resolve())


def resume_command(config: StudyConfig) -> str:
    """The command that continues this study where it stopped: every message that ends a study early names it."""
    return f"python study/run.py --name {config.name} --storage {config.storage} --resume"


def check_name(name: str) -> None:
    """A study's name becomes its directory and part of Ray's paths: refused before Ray starts when too long or when it holds
    characters a directory name, a shell or a URI would treat specially."""
    if len(name) > NAME_MAX:
        raise StudyConfigError(f"name is {len(name)} characters long; use at most {NAME_MAX} (letters, digits, '.', '_' and '-')")
    if not NAME_CHARACTERS.fullmatch(name):
        raise StudyConfigError(f"name {name!r} may hold only letters, digits, '.', '_' and '-', starting with a letter or digit "
                               f"(at most {NAME_MAX} characters)")


def load_preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise StudyConfigError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    return load_yaml(resources.files("study.presets").joinpath(f"{name}.yaml").read_text(), f"preset {name}")


def _absolute_inits(values: dict[str, Any]) -> dict[str, Any]:
    def absolute(path: Any) -> Any:
        return str(Path(path).expanduser().resolve()) if isinstance(path, str) and "://" not in path else path

    train = values.get("train")
    if isinstance(train, dict) and train.get("init"):
        values = {**values, "train": {**train, "init": absolute(train["init"])}}
    return {**values, "search": _absolute_in_space(values.get("search"), absolute)} if isinstance(values.get("search"), dict) else values


def _absolute_in_space(entries: dict[str, Any], absolute) -> dict[str, Any]:
    result = {}
    for name, entry in entries.items():
        if name == "init" and search_space.is_distribution(entry) and "choice" in entry and isinstance(entry["choice"], list):
            entry = {"choice": [absolute(v) for v in entry["choice"]]}
        elif name == "init":
            entry = absolute(entry)
        elif search_space.is_group(entry):
            entry = {"choice": {option: _absolute_in_space(body or {}, absolute) for option, body in entry["choice"].items()}}
        result[name] = entry
    return result


def build_config(preset: str, config_file: str | None = None, assignments: list[tuple[str, Any]] | None = None) -> StudyConfig:
    """The study a new run starts: defaults < preset < ``config_file`` < ``assignments`` (flags, then ``--set``)."""
    return new_study(preset, Layers(_file_layer(config_file), assignments or []))


def new_study(preset: str, layers: Layers) -> StudyConfig:
    """The defaults, then the preset, then the user's layers."""
    return assemble_study(merge(to_dict(StudyConfig()), load_preset(preset), WHOLE), layers)


def resume_config(saved_yaml: bytes | str, config_file: str | None = None, assignments: list[tuple[str, Any]] | None = None) -> StudyConfig:
    """The study a resume continues: the saved ``study.yaml`` exactly, with only ``StudyConfig.RESUMABLE`` settings changed."""
    return resumed_study(saved_yaml, Layers(_file_layer(config_file), assignments or []))


def resumed_study(saved_yaml: bytes | str, layers: Layers) -> StudyConfig:
    """The saved ``study.yaml`` as the base, then the user's layers, which may change only ``StudyConfig.RESUMABLE``."""
    saved = load_yaml(saved_yaml.decode() if isinstance(saved_yaml, bytes) else saved_yaml, "study.yaml")
    if not isinstance(saved, dict):
        raise StudyConfigError("the saved study.yaml is not a mapping of settings; the study directory is damaged")
    if isinstance(saved.get("train", {}), dict):  # training settings added since the study was saved keep what its trials did
        saved = {**saved, "train": saved_values(saved.get("train", {}))}
    base = to_dict(assemble_study(saved, Layers()))
    return assemble_study(base, layers, resume=("study.yaml", "start a new study with another --name"))


def assemble_study(base: dict[str, Any], layers: Layers, resume: tuple[str, str] | None = None) -> StudyConfig:
    """The settings pipeline with the study's rules: ``search`` is one unit in a file, and relative model-file paths
    become absolute (trials run in other directories)."""
    return assemble(StudyConfig, base, layers, whole=WHOLE, prepare=_absolute_inits, error=StudyConfigError, resume=resume)


def _file_layer(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        return load_yaml_file(path)
    except SettingsError as error:
        raise StudyConfigError(str(error)) from None


def to_yaml(config: StudyConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
