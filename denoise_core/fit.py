"""The training loop: one flat ``fit`` that the train CLI (``python -m denoise_core.train``), the Ray study, the benchmarks and the tests all call.

The whole training set lives on the device as one uint8 tensor; each batch is gathered, scaled and
corrupted there, so the hot loop has no per-sample Python and no host-to-device copy. Validation uses a
fixed noisy copy of the validation faces (seeded, made on the CPU), so epochs and trials are comparable.
Each epoch hands ``on_epoch`` an ``EpochReport`` with metrics and a complete checkpoint.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, ClassVar, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from denoise_core.checkpoint import FORMAT, VERSION, load_checkpoint
from denoise_core.data import Splits
from denoise_core.errors import InputError, UserError
from denoise_core.inference import denoise_tensor, resolve_device, thread_count
from denoise_core.metrics import psnr, ssim
from denoise_core.model import SAVED_BEFORE as MODEL_SAVED_BEFORE
from denoise_core.model import ConvAutoencoder, ModelConfig, count_parameters, model_config_from_dict
from denoise_core.noise import NoiseSource, corrupt, make_generator, parse_alternatives
from denoise_core.precision import AUTOCAST_DTYPES, PRECISIONS, legacy_precision, resolve_precision
from denoise_core.settings import build, merge, resume_changes

log = logging.getLogger(__name__)

EXAMPLES = 8
MAX_SEED = 2**32 - 1  # what numpy's and Optuna's generators accept
RANK_SEED_STRIDE = 1_000_003  # rank r > 0 of a data-parallel run draws from seed + r * stride (rank 0 keeps the seed)


def psnr_loss(output: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Minus the mean per-image PSNR: every face counts the same in dB whatever its noise level, where MSE lets
    the heavily corrupted faces of a blind range dominate (and the metric every table reports is per-image PSNR)."""
    mse = (output - clean).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(mse + 1e-10).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"mse": F.mse_loss, "mae": F.l1_loss, "psnr": psnr_loss}
SAVED_BEFORE: dict[str, Any] = {  # what a saved config that omits a setting ran with: the defaults of its day
    "val_unique": False,  # saved before val_unique existed: validated on every PublicTest face
    "noise": "sp:0.05-0.5", "loss": "mse", "lr": 2e-3, "batch_size": 128,  # saved before the studies' recipe became the default
    "model": MODEL_SAVED_BEFORE,
}


class Diverged(UserError, FloatingPointError):
    """The loss stopped being finite: a setting (usually the learning rate) the user can change, not a bug."""


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    noise: str = "sp:0.05-0.9"  # training corruption; a range is drawn per image (blind training)
    val_noise: str | None = None  # fixed validation corruption; defaults to ``noise``
    loss: str = "psnr"  # "mse", "mae" or "psnr" (minus the mean per-image PSNR)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # "cosine", "plateau" or "constant"
    patience: int = 5  # epochs without validation-loss improvement before stopping
    min_delta: float = 0.0
    train_size: int | None = None  # use only the first N training faces
    val_size: int | None = None  # use only the first N validation faces
    val_unique: bool = True  # validate on the PublicTest faces not in Training; false: on all (recipes trained before)
    seed: int = 0
    val_seed: int | None = None  # seeds the fixed validation noise (None: seed + 1, as runs before it did)
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    precision: str = "auto"  # "auto", "fp32", "bf16" or "fp16" (CUDA only) autocast; a run records what auto chose
    amp: bool | None = None  # the setting precision replaced, still read from older configs and checkpoints
    compile: bool = False  # torch.compile the training model (its compile time is spent in the first epoch)
    num_threads: int | None = None  # torch CPU threads; None leaves torch's default
    init: str | None = None  # a model file whose weights start the training (fine-tuning); None: random
    deterministic: bool = False  # CUDA: deterministic cuDNN/CUDA kernels for the run (slower); the CPU is deterministic already

    RESUMABLE: ClassVar[tuple[str, ...]] = ("epochs", "device", "num_threads")  # what a resumed run may change: its length and where it runs
    HELP: ClassVar[dict[str, str]] = {  # what each setting means, for --help and the README
        "noise": "training corruption, drawn per face: sp:0.05-0.5, gauss:5-55, sp:0.1+gauss:10, sp:0.02-0.9|gauss:5-55",
        "val_noise": "fixed validation corruption (null: the training noise)",
        "loss": "mse, mae or psnr (minus the mean per-image PSNR)",
        "epochs": "epochs to train (the cosine schedule anneals over them)",
        "batch_size": "faces per batch",
        "lr": "AdamW learning rate",
        "weight_decay": "AdamW weight decay",
        "schedule": "learning-rate schedule: cosine, plateau or constant",
        "patience": "epochs without validation improvement before early stopping",
        "min_delta": "smallest validation-loss decrease that counts as an improvement",
        "train_size": "use only the first N training faces (null: all)",
        "val_size": "use only the first N validation faces (null: all)",
        "val_unique": "validate on the PublicTest faces that are not copies of Training faces (false: on all of them)",
        "seed": "seeds weights, batches, noise and dropout",
        "val_seed": "seeds the fixed validation noise, so runs with other seeds validate on the same noisy faces (null: seed + 1)",
        "device": "auto, cpu, cuda or cuda:N",
        "precision": "autocast number format: auto (bf16 where the CPU or GPU runs it natively, else fp32), fp32, bf16, or fp16 (CUDA only)",
        "amp": "older configs' setting, read as precision (true: fp16 on CUDA, fp32 on the CPU); use precision",
        "compile": "torch.compile the training model; its compile time is spent in the first epoch (see the README for when it pays)",
        "num_threads": "torch CPU threads (null: torch's default)",
        "init": "a model file whose weights start the training (fine-tuning); null: random weights",
        "deterministic": "CUDA only: deterministic cuDNN and CUDA kernels for the run, the same bits every run (slower); CPU runs are deterministic anyway",
    }

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InputError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if self.schedule not in ("cosine", "plateau", "constant"):
            raise InputError(f"schedule must be 'cosine', 'plateau' or 'constant', got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 2 or self.patience < 1:
            raise InputError("epochs must be >= 1, batch_size >= 2 and patience >= 1")
        if self.lr <= 0 or self.weight_decay < 0:
            raise InputError("lr must be > 0 and weight_decay >= 0")
        if self.min_delta < 0:
            raise InputError(f"min_delta must be >= 0 (the smallest validation-loss decrease that counts), got {self.min_delta}")
        if not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"seed must be in 0..{MAX_SEED}, got {self.seed}")
        if self.val_seed is not None and not 0 <= self.val_seed <= MAX_SEED:
            raise InputError(f"val_seed must be in 0..{MAX_SEED} or null, got {self.val_seed}")
        if self.train_size is not None and self.train_size < 2:
            raise InputError(f"train_size must be >= 2 faces, or null for all, got {self.train_size}")
        if self.val_size is not None and self.val_size < 1:
            raise InputError(f"val_size must be >= 1 face, or null for all, got {self.val_size}")
        if not isinstance(self.deterministic, bool) or not isinstance(self.compile, bool):
            raise InputError(f"deterministic and compile must be true or false, got {self.deterministic!r} and {self.compile!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.precision == "fp16" and self.device == "cpu":
            raise InputError("precision fp16 needs CUDA; on the CPU use bf16, fp32 or auto")
        if self.amp is not None:  # an older config: its amp becomes the precision it trained in
            legacy = legacy_precision(self.amp, self.device)
            if self.precision not in ("auto", legacy):
                raise InputError(f"amp: {self.amp} (the older setting) and precision: {self.precision} disagree; drop amp")
            object.__setattr__(self, "precision", legacy)
            object.__setattr__(self, "amp", None)
        parse_alternatives(self.noise)
        if self.val_noise is not None:
            parse_alternatives(self.val_noise)

    @property
    def validation_noise(self) -> str:
        return self.val_noise or self.noise


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    train_loss: float
    val_loss: float
    val_psnr: float
    val_ssim: float
    noisy_psnr: float  # the corrupted input's PSNR: what "doing nothing" scores
    noisy_ssim: float
    lr: float
    seconds: float
    images_per_second: float
    is_best: bool
    should_stop: bool
    checkpoint: dict[str, Any] = field(repr=False)
    examples: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = field(repr=False)  # noisy, denoised, clean (CPU)

    def metrics(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), (int, float))}


@dataclass(frozen=True)
class FitResult:
    best_epoch: int
    best: dict[str, float]
    history: list[dict[str, float]]
    checkpoint: dict[str, Any] = field(repr=False)
    stopped_early: bool
    parameters: int
    seconds: float


def with_resolved_precision(config: TrainConfig, device: torch.device | None = None) -> TrainConfig:
    """The config with ``auto`` precision replaced by what it means on ``device``: what a run and its checkpoint record,
    so a resume (and a replay) computes in the same format."""
    return replace(config, precision=resolve_precision(config.precision, device or resolve_device(config.device)))


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return asdict(config)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a saved config's nested dicts (YAML, a checkpoint); settings it omits take their defaults,
    except those in ``SAVED_BEFORE`` (added since, or whose default changed), which take the value that reproduces
    what such a run did."""
    return build(TrainConfig, saved_values(values))


def saved_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """A saved config's mapping with what it omits filled in from ``SAVED_BEFORE``, at every depth (``model`` too)."""
    return merge(SAVED_BEFORE, values)



def fit(
    config: TrainConfig,
    data: Splits,
    on_epoch: Callable[[EpochReport], bool | None] | None = None,
    resume: dict[str, Any] | None = None,
    *,
    device: torch.device | None = None,
    wrap_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> FitResult:
    """Train an autoencoder on ``data.train``, validate on ``data.validation(config.val_unique)``; never touches ``data.test``.

    ``on_epoch`` may return True to stop. ``resume`` is a checkpoint from an earlier epoch of the same
    config: training continues after it, with identical results to an uninterrupted run. For data-parallel
    training a launcher passes the worker's ``device``, ``rank`` and ``world_size`` and a ``wrap_model``
    (e.g. DDP); each rank then trains on every ``world_size``-th face (disjoint, equal-sized shards, so every
    rank runs the same number of steps) with its own noise, order and dropout seed, and checkpoints hold the
    unwrapped weights, so they load the same way as single-process ones. After each epoch's training, rank 0's
    buffers (batch-norm running statistics) are broadcast to all ranks before validation, rather than using
    SyncBatchNorm: that needs CUDA and adds a collective per layer per step, while DDP already syncs buffers at
    each forward, so one broadcast per epoch leaves training unchanged and makes every rank validate the same
    model. The ranks then agree in one all-reduce per epoch: any rank's loss not finite ends every rank with
    ``Diverged``, and rank 0's stop (its early stopping or ``on_epoch``) stops all ranks at the same epoch.
    """
    device = device or resolve_device(config.device)
    config = with_resolved_precision(config, device)
    with thread_count(config.num_threads), _deterministic_algorithms(config.deterministic and device.type == "cuda"), \
            torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        run = _start_run(config, data, device, wrap_model, rank, world_size, resume)
        started, checkpoint, stopped_early = time.perf_counter(), resume, False
        for epoch in range(run.state["epoch"] + 1, config.epochs + 1):
            epoch_start = time.perf_counter()
            train_loss, train_seconds = _train_epoch(run)
            _broadcast_buffers(run.core, world_size)
            validation = _validate(run.core, run.val_noisy, run.val_clean, run.loss_fn, run.autocast)
            finite = math.isfinite(train_loss) and math.isfinite(validation.loss)
            report = _end_epoch(run, epoch, train_loss, validation, epoch_start, train_seconds) if finite else None
            asks_stop = bool(on_epoch(report)) if report and on_epoch else False
            decision = _agree(run, diverged=not finite, early_stop=bool(report and report.should_stop), asks_stop=asks_stop)
            if decision.diverged:
                raise _diverged(epoch, train_loss, validation.loss)
            checkpoint = report.checkpoint
            if decision.early_stop or decision.asks_stop:
                stopped_early = decision.early_stop
                break
    return FitResult(
        best_epoch=run.state["best_epoch"], best=_best_metrics(run.state), history=run.state["history"], checkpoint=checkpoint,
        stopped_early=stopped_early, parameters=count_parameters(run.core), seconds=time.perf_counter() - started,
    )


@dataclass
class _Run:
    """Everything one training run carries from epoch to epoch: the model, its optimiser, the data on the device and
    the bookkeeping (``state``) that a checkpoint saves."""

    config: TrainConfig
    device: torch.device
    rank: int
    world_size: int
    core: torch.nn.Module  # the model itself, whose weights a checkpoint holds
    model: torch.nn.Module  # what trains: ``core``, or a data-parallel wrapper of it
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler  # scales fp16 losses; disabled (a no-op) in other precisions
    noise: NoiseSource  # its generator also draws each epoch's batch order
    train_u8: torch.Tensor
    val_clean: torch.Tensor
    val_noisy: torch.Tensor
    noisy_quality: tuple[float, float]  # the fixed noisy validation set's PSNR and SSIM: what "doing nothing" scores
    autocast: torch.dtype | None  # the products' format; None: float32
    state: dict[str, Any]
    best_model_state: dict[str, torch.Tensor]

    @property
    def loss_fn(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        return LOSSES[self.config.loss]


@dataclass(frozen=True)
class _Validation:
    loss: float
    psnr: float
    ssim: float
    examples: tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class _Decision:
    """What every rank does after an epoch, the same on all of them."""

    diverged: bool
    early_stop: bool
    asks_stop: bool


@contextmanager
def _deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """cuDNN and CUDA kernels that give the same bits on every run (slower), for the length of one run; the CPU
    kernels are deterministic already. cuBLAS needs a fixed workspace for it, set unless the user set one."""
    if not enabled:
        yield
        return
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled(),
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2])
        if saved[3] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def _start_run(config: TrainConfig, data: Splits, device: torch.device, wrap_model, rank: int, world_size: int,
               resume: dict[str, Any] | None) -> _Run:
    """Data on the device, the model seeded from ``config.seed`` (the same on every rank), then either a checkpoint's
    state restored or a warm start scored."""
    train_u8 = _training_shard(data.train, config, device, rank, world_size)
    val = data.validation(config.val_unique)
    if rank == 0 and config.val_size is not None and config.val_size > len(val):
        log.warning("val_size %d is more than the %d validation faces; validating on all %d", config.val_size, len(val), len(val))
    val_clean, val_noisy = _validation_set(val[: config.val_size], config, device)
    autocast = AUTOCAST_DTYPES[config.precision]
    torch.manual_seed(config.seed)
    core = ConvAutoencoder(config.model).to(device)
    if config.init and resume is None:
        load_initial_weights(core, config)
    if device.type == "cpu":  # oneDNN's convolutions run about 1.3x faster on channels-last weights
        core = core.to(memory_format=torch.channels_last)
    model = wrap_model(core) if wrap_model else core
    if config.compile:  # the training steps only: validation runs the plain model, and checkpoints hold its weights
        model = torch.compile(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if rank:  # distinct dropout masks per rank; the model's initial weights above are the same on every rank
        torch.manual_seed(_rank_seed(config.seed, rank))
    run = _Run(config=config, device=device, rank=rank, world_size=world_size, core=core, model=model, optimizer=optimizer,
               scheduler=_scheduler(optimizer, config), scaler=torch.amp.GradScaler("cuda", enabled=config.precision == "fp16"),
               noise=NoiseSource.parse(config.noise, make_generator(_rank_seed(config.seed, rank), device)),
               train_u8=train_u8, val_clean=val_clean, val_noisy=val_noisy, noisy_quality=_quality(val_noisy, val_clean), autocast=autocast,
               state={"epoch": 0, "best_val_loss": math.inf, "best_epoch": 0, "bad_epochs": 0, "history": [], "initial": None},
               best_model_state=copy.deepcopy(core.state_dict()))
    if resume is not None:
        _restore(run, resume)
    elif config.init:
        _score_warm_start(run)
    return run


def _training_shard(train: np.ndarray, config: TrainConfig, device: torch.device, rank: int, world_size: int) -> torch.Tensor:
    """This rank's share of the first ``train_size`` faces, as uint8 on the device."""
    if rank == 0 and config.train_size is not None and config.train_size > len(train):
        log.warning("train_size %d is more than the %d training faces; training on all %d", config.train_size, len(train), len(train))
    train = train[: config.train_size]
    per_rank = len(train) // world_size
    shard = _to_device(train[rank::world_size][:per_rank], device)
    if len(shard) < 2:
        raise InputError(f"need at least 2 training faces, got {len(shard)}")
    return shard


def _restore(run: _Run, resume: dict[str, Any]) -> None:
    """A checkpoint's weights, optimiser, schedule and random states, so training goes on as if never stopped."""
    _check_resume(resume, run.config)
    run.core.load_state_dict(resume["model_state"])
    run.optimizer.load_state_dict(copy.deepcopy(resume["optimizer_state"]))  # AdamW would step the caller's tensors in place
    run.scheduler.load_state_dict(resume["scheduler_state"])
    if isinstance(run.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        run.scheduler.T_max = run.config.epochs  # resumed with another --epochs: anneal from here to the new end
    run.scaler.load_state_dict(resume["scaler_state"])
    torch.set_rng_state(resume["rng_state"].cpu())
    if run.device.type == "cuda" and "cuda_rng_state" in resume:  # absent in checkpoints written before it was saved
        torch.cuda.set_rng_state(resume["cuda_rng_state"].cpu(), run.device)
    generator = run.noise.generator
    generator.set_state(resume["generator_state"].to(generator.get_state().device))
    run.best_model_state = resume["best_model_state"]
    run.state = {k: copy.deepcopy(resume.get(k, v)) for k, v in run.state.items()}
    if run.rank:  # the checkpoint holds rank 0's random states: the other ranks draw afresh, apart from it and each other
        torch.manual_seed(_rank_seed(run.config.seed, run.rank) + run.state["epoch"])
        generator.manual_seed(_rank_seed(run.config.seed, run.rank) + run.state["epoch"])


def _score_warm_start(run: _Run) -> None:
    """A warm start is scored before training, and stays the best until an epoch beats it."""
    started = time.perf_counter()
    scored = _validate(run.core, run.val_noisy, run.val_clean, run.loss_fn, run.autocast)
    noisy_psnr, noisy_ssim = run.noisy_quality
    run.state["initial"] = {"epoch": 0, "train_loss": math.nan, "val_loss": scored.loss, "val_psnr": scored.psnr, "val_ssim": scored.ssim,
                            "noisy_psnr": noisy_psnr, "noisy_ssim": noisy_ssim, "lr": run.config.lr,
                            "seconds": time.perf_counter() - started, "images_per_second": 0.0}
    run.state["best_val_loss"] = scored.loss


def _train_epoch(run: _Run) -> tuple[float, float]:
    """One pass over this rank's shard in a fresh order: the mean training loss and the seconds it took."""
    started = time.perf_counter()
    train_u8, batch_size, batches = run.train_u8, _batch_size(run), _batches(run)
    run.model.train()
    order = torch.randperm(len(train_u8), generator=run.noise.generator, device=run.device)
    total = torch.zeros((), device=run.device)
    for step in range(batches):
        clean = train_u8[order[step * batch_size:(step + 1) * batch_size]].float().div_(255.0)
        noisy = run.noise(clean)
        with torch.autocast(run.device.type, dtype=run.autocast, enabled=run.autocast is not None):
            output = run.model(noisy)
        loss = run.loss_fn(output.float(), clean)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        total += loss.detach()
    train_loss = float(total) / batches  # synchronises the device before the clock is read
    return train_loss, time.perf_counter() - started


def _batch_size(run: _Run) -> int:
    return min(run.config.batch_size, len(run.train_u8))


def _batches(run: _Run) -> int:
    return max(1, len(run.train_u8) // run.config.batch_size)


def _end_epoch(run: _Run, epoch: int, train_loss: float, validation: _Validation, epoch_start: float, train_seconds: float) -> EpochReport:
    """Steps the schedule, keeps the best weights, counts epochs without improvement and writes the checkpoint."""
    config, state = run.config, run.state
    lr = run.optimizer.param_groups[0]["lr"]
    if config.schedule == "plateau":
        run.scheduler.step(validation.loss)
    else:
        run.scheduler.step()
    is_best = validation.loss < state["best_val_loss"] - config.min_delta
    if is_best:
        state.update(best_val_loss=validation.loss, best_epoch=epoch, bad_epochs=0)
        run.best_model_state = copy.deepcopy(run.core.state_dict())
    else:
        state["bad_epochs"] += 1
    noisy_psnr, noisy_ssim = run.noisy_quality
    metrics = {
        "epoch": epoch, "train_loss": train_loss, "val_loss": validation.loss, "val_psnr": validation.psnr, "val_ssim": validation.ssim,
        "noisy_psnr": noisy_psnr, "noisy_ssim": noisy_ssim, "lr": lr, "seconds": time.perf_counter() - epoch_start,
        "images_per_second": _batches(run) * _batch_size(run) / train_seconds,
    }
    state["history"].append(metrics)
    state["epoch"] = epoch
    return EpochReport(**metrics, is_best=is_best, should_stop=state["bad_epochs"] >= config.patience,
                       checkpoint=_checkpoint(run, metrics), examples=validation.examples)


def _checkpoint(run: _Run, metrics: dict[str, float]) -> dict[str, Any]:
    """One complete dict: the config, the weights (last and best), the optimiser, schedule and random states."""
    return {
        "format": FORMAT, "version": VERSION, "config": config_to_dict(run.config), "parameters": count_parameters(run.core),
        "metrics": metrics, "best_metrics": _best_metrics(run.state), **copy.deepcopy(run.state),
        "model_state": copy.deepcopy(run.core.state_dict()), "best_model_state": run.best_model_state,
        "optimizer_state": copy.deepcopy(run.optimizer.state_dict()), "scheduler_state": run.scheduler.state_dict(),
        "scaler_state": run.scaler.state_dict(), "rng_state": torch.get_rng_state(), "generator_state": run.noise.generator.get_state(),
        **({"cuda_rng_state": torch.cuda.get_rng_state(run.device)} if run.device.type == "cuda" else {}),
    }


def _diverged(epoch: int, train_loss: float, val_loss: float) -> Diverged:
    where = f"train {train_loss}, val {val_loss}" if not (math.isfinite(train_loss) and math.isfinite(val_loss)) else "on another rank"
    return Diverged(f"training diverged at epoch {epoch}: the loss is not finite ({where}); lower the learning rate (lr)")


def _agree(run: _Run, diverged: bool, early_stop: bool, asks_stop: bool) -> _Decision:
    """One all-reduce of the epoch's decisions: divergence on any rank, and rank 0's stop (early stopping or
    ``on_epoch``). A rank that raised or stopped alone would leave the others waiting in the next collective."""
    if not _distributed(run.world_size):
        return _Decision(diverged, early_stop, asks_stop)
    leads = run.rank == 0
    flags = torch.tensor([diverged, early_stop and leads, asks_stop and leads], dtype=torch.int32, device=run.device)
    torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
    return _Decision(*(bool(flag) for flag in flags.tolist()))


def _rank_seed(seed: int, rank: int) -> int:
    """Rank 0 keeps the seed, so a single-process run draws what it always drew."""
    return seed + RANK_SEED_STRIDE * rank


def _distributed(world_size: int) -> bool:
    return world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


def _broadcast_buffers(core: torch.nn.Module, world_size: int) -> None:
    """Rank 0's batch-norm statistics on every rank: each rank's last steps left its own, and validation,
    early stopping and the checkpoint must see one model."""
    if _distributed(world_size):
        for buffer in core.buffers():
            torch.distributed.broadcast(buffer, src=0)


def _best_metrics(state: dict[str, Any]) -> dict[str, float]:
    if state["best_epoch"] == 0 and state.get("initial"):
        return dict(state["initial"])
    for metrics in state["history"]:
        if metrics["epoch"] == state["best_epoch"]:
            return dict(metrics)
    return {}


def load_initial_weights(core: torch.nn.Module, config: TrainConfig) -> None:
    """Starts from a trained model of the same architecture, or grows it: a refinement stage added to a model
    without one (its last layer starts at zero) and ``mirror`` switched on or off change nothing it learned."""
    source = load_checkpoint(config.init)
    trained = model_config_from_dict(source["config"]["model"])
    adds_refiner = trained.refine == 0 and config.model.refine > 0
    grown_from = replace(config.model, mirror=trained.mirror)
    if adds_refiner:
        grown_from = replace(grown_from, refine=0, refine_width=trained.refine_width)
    if grown_from != trained:
        raise InputError(f"init model {config.init} has another architecture than this training's model settings; use the same model: block "
                         "(adding refine layers to a model without them, and mirror, are the changes allowed)")
    missing, unexpected = core.load_state_dict(source.get("best_model_state", source.get("model_state")), strict=not adds_refiner)
    if unexpected or any(not key.startswith("refiner.") for key in missing):
        raise InputError(f"init model {config.init} does not fit this architecture: missing {missing}, unexpected {unexpected}")


def _check_resume(resume: dict[str, Any], config: TrainConfig) -> None:
    saved = config_to_dict(config_from_dict(resume.get("config", {})))  # settings added since the checkpoint take their defaults
    differing = resume_changes(TrainConfig, saved, config_to_dict(config))
    if differing:
        raise InputError(f"cannot resume: the checkpoint was trained with different settings for {differing}")


def _to_device(images: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def _validation_set(val: np.ndarray, config: TrainConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation faces and one fixed 8-bit noisy copy, made on the CPU so every device sees the same."""
    if len(val) == 0:
        raise InputError("the validation split is empty: FER2013's PublicTest rows are needed for early stopping")
    clean = torch.from_numpy(np.ascontiguousarray(val)).unsqueeze(1).float().div_(255.0)
    noisy = corrupt(clean, config.validation_noise, make_generator(config.seed + 1 if config.val_seed is None else config.val_seed))
    noisy = noisy.mul(255.0).round_().div_(255.0)
    return clean.to(device), noisy.to(device)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.lr * 0.01)
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, config.patience // 2))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


@torch.no_grad()
def _quality(pred: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    return float(psnr(pred, clean).mean()), float(ssim(pred, clean).mean())



def _validate(model: torch.nn.Module, val_noisy: torch.Tensor, val_clean: torch.Tensor, loss_fn, autocast: torch.dtype | None) -> _Validation:
    denoised = denoise_tensor(model, val_noisy, autocast=autocast)
    val_psnr, val_ssim = _quality(denoised, val_clean)
    examples = tuple(t[:EXAMPLES].detach().cpu() for t in (val_noisy, denoised, val_clean))
    return _Validation(float(loss_fn(denoised, val_clean)), val_psnr, val_ssim, examples)

