"""The study's configuration: one dataclass, loaded from a preset YAML, a user YAML and flags, in that order.

Search-space entries map a training setting (``lr``, ``noise``, ``model.bottleneck_size`` ...) to one
distribution: ``{choice: [...]}``, ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}`` or
``{randint: [lo, hi]}`` (hi exclusive). Every key and value is checked before Ray starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from denoise_core.holdout import DEFAULT_CONDITIONS
from denoise_core.model import ModelConfig
from denoise_core.noise import parse_alternatives
from denoise_core.train import TrainConfig, config_from_dict

PRESETS = ("smoke", "local", "full")
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
REPORT_SIZES = ("top", "faces", "bm3d_faces", "tune_faces", "analysis_faces", "bm3d_conditions")  # results.report.ReportOptions
QUICK_REPORT = {"faces": 200, "bm3d_faces": 16, "tune_faces": 32, "analysis_faces": 100}  # minutes, not a quarter hour
MERGED_BY_KEY = ("train", "report_options")


class StudyConfigError(ValueError):
    """A study setting that is unknown or out of range; the message names it."""


@dataclass(frozen=True)
class StudyConfig:
    name: str = "study"
    storage: str = "./studies"
    data: str | None = None
    num_samples: int = 8  # trials
    max_concurrent: int = 0  # 0: as many as the resources found allow
    train_workers: int = 0  # 0: train inside the Tune trial; >= 1: a Ray Train TorchTrainer with that many workers
    cpus_per_worker: float = 1.0
    gpus_per_trial: float | None = None  # None: 0.25 when the cluster has GPUs, else 0
    max_failures: int = 2  # restarts of a failed trial / worker group, from its last checkpoint
    metric: str = "val_psnr"  # validation only, and the same for every loss: trials with mse and mae compare fairly
    mode: str = "max"
    scheduler: str = "asha"  # "asha" or "none"
    grace_period: int = 2  # ASHA: epochs every trial gets before it can be stopped
    reduction_factor: int = 3
    seed: int = 0
    grid_every: int = 5  # epochs between image grids in TensorBoard
    holdout_faces: int | None = None  # evaluate the best model on the first N hold-out faces (None: all)
    holdout_conditions: tuple[str, ...] = DEFAULT_CONDITIONS
    report: bool = True  # build results.report into STUDY/report/ at the end (local storage only)
    report_options: dict[str, Any] = field(default_factory=dict)  # that report's sizes, over QUICK_REPORT (ReportOptions fields)
    verbose: int = 1
    train: dict[str, Any] = field(default_factory=dict)  # fixed TrainConfig settings for every trial
    search: dict[str, dict[str, list]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = [
            (self.num_samples >= 1, "num_samples must be >= 1"),
            (self.max_concurrent >= 0, "max_concurrent must be >= 0"),
            (self.train_workers >= 0, "train_workers must be >= 0"),
            (self.cpus_per_worker > 0, "cpus_per_worker must be > 0"),
            (self.gpus_per_trial is None or 0 <= self.gpus_per_trial, "gpus_per_trial must be >= 0"),
            (self.mode in ("min", "max"), "mode must be 'min' or 'max'"),
            (self.metric in ("val_loss", "val_psnr", "val_ssim"), "metric must be val_loss, val_psnr or val_ssim"),
            (self.scheduler in ("asha", "none"), "scheduler must be 'asha' or 'none'"),
            (self.grace_period >= 1 and self.reduction_factor >= 2, "grace_period must be >= 1 and reduction_factor >= 2"),
            (bool(self.name) and "/" not in self.name, "name must be a non-empty directory name"),
            (not (self.metric == "val_loss" and "loss" in self.search), "metric val_loss compares mse with mae when loss is searched; use val_psnr or val_ssim"),
            ((self.mode == "min") == (self.metric == "val_loss"), f"mode for {self.metric} must be {'min' if self.metric == 'val_loss' else 'max'}"),
        ]
        for ok, message in checks:
            if not ok:
                raise StudyConfigError(message)
        unknown = sorted(set(self.report_options) - set(REPORT_SIZES))
        if unknown:
            raise StudyConfigError(f"report_options: unknown setting(s) {unknown}; known: {', '.join(REPORT_SIZES)}")
        conditions = self.report_options.get("bm3d_conditions", [])
        if not isinstance(conditions, (list, tuple)):
            raise StudyConfigError(f"report_options: bm3d_conditions must be a list of noise conditions, e.g. [gauss:25], got {conditions!r}")
        for condition in conditions:
            if condition != "none":
                try:
                    parse_alternatives(condition)
                except ValueError as error:
                    raise StudyConfigError(f"report_options: bm3d_conditions: {error}") from None
        for key, value in self.report_options.items():
            whole = isinstance(value, int) and not isinstance(value, bool)
            if key != "bm3d_conditions" and not (whole and value >= (0 if key in ("faces", "analysis_faces") else 1)):
                raise StudyConfigError(f"report_options: {key} must be a whole number >= 1 (faces: 0 for all), got {value!r}")
        base_training(self)
        validate_search(self.search)

    @property
    def study_uri(self) -> str:
        return f"{storage_root(self.storage)}/{self.name}"


def storage_root(storage: str) -> str:
    """Absolute local path or a URI (``s3://...``); Ray needs absolute paths for local storage."""
    return storage.rstrip("/") if "://" in storage else str(Path(storage).expanduser().resolve())


def base_training(config: StudyConfig) -> TrainConfig:
    try:
        return config_from_dict(config.train)
    except (TypeError, ValueError) as error:
        raise StudyConfigError(f"train: {error}") from None


def search_key_fields() -> set[str]:
    model = {f"model.{f.name}" for f in fields(ModelConfig)}
    return model | {f.name for f in fields(TrainConfig) if f.name != "model"}


def validate_search(search: dict[str, Any]) -> None:
    known = search_key_fields()
    for key, spec in search.items():
        if key not in known:
            raise StudyConfigError(f"search: unknown setting '{key}'; searchable: {', '.join(sorted(known))}")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise StudyConfigError(f"search: '{key}' needs exactly one of {', '.join(DISTRIBUTIONS)}, e.g. {{choice: [a, b]}}")
        kind, values = next(iter(spec.items()))
        if not isinstance(values, list) or not values:
            raise StudyConfigError(f"search: '{key}' {kind} needs a non-empty list")
        if kind != "choice" and (len(values) != 2 or not all(isinstance(v, (int, float)) for v in values) or values[0] >= values[1]):
            raise StudyConfigError(f"search: '{key}' {kind} needs [low, high] with low < high")
        if kind == "loguniform" and values[0] <= 0:
            raise StudyConfigError(f"search: '{key}' loguniform needs a positive low bound")
        samples = values if kind == "choice" else values[:1]
        for sample in samples:
            try:
                trial_training(TrainConfig(), {key: sample})
            except (TypeError, ValueError) as error:
                raise StudyConfigError(f"search: '{key}' value {sample!r} is invalid: {error}") from None


def trial_training(base: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of one trial: the study's fixed settings with the sampled ``params`` applied."""
    values = asdict(base)
    for key, value in params.items():
        if key.startswith("model."):
            values["model"][key[len("model."):]] = value
        else:
            values[key] = value
    return config_from_dict(values)


def load_preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise StudyConfigError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    return yaml.safe_load(resources.files("study.presets").joinpath(f"{name}.yaml").read_text())


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Override top-level keys; ``train`` and ``report_options`` are merged key by key, ``search`` replaced as a whole."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = {**merged.get(key, {}), **value} if key in MERGED_BY_KEY and isinstance(value, dict) else value
    return merged


def build_config(preset: str, user_yaml: str | None = None, overrides: dict[str, Any] | None = None) -> StudyConfig:
    values = load_preset(preset)
    if user_yaml:
        path = Path(user_yaml)
        if not path.is_file():
            raise StudyConfigError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise StudyConfigError(f"config file {path} must hold a mapping of study settings")
        values = merge(values, loaded)
    values = merge(values, overrides or {})
    known = {f.name for f in fields(StudyConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise StudyConfigError(f"unknown study setting(s) {unknown}; known: {', '.join(sorted(known))}")
    if "holdout_conditions" in values:
        values["holdout_conditions"] = tuple(values["holdout_conditions"])
    try:
        return StudyConfig(**values)
    except TypeError as error:
        raise StudyConfigError(str(error)) from None


def to_yaml(config: StudyConfig) -> str:
    values = asdict(config)
    values["holdout_conditions"] = list(config.holdout_conditions)
    return yaml.safe_dump(values, sort_keys=False)
