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
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from denoise_core.checkpoint import FORMAT, VERSION, load_checkpoint
from denoise_core.data import Splits
from denoise_core.errors import InputError, UserError
from denoise_core.inference import denoise_tensor, resolve_device
from denoise_core.metrics import psnr, ssim
from denoise_core.model import ConvAutoencoder, ModelConfig, count_parameters, model_config_from_dict
from denoise_core.noise import corrupt, make_generator, parse_alternatives
from denoise_core.settings import build, resume_changes

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
SAVED_BEFORE = {"val_unique": False}  # a config saved before val_unique existed validated on every PublicTest face


class Diverged(UserError, FloatingPointError):
    """The loss stopped being finite: a setting (usually the learning rate) the user can change, not a bug."""


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    noise: str = "sp:0.05-0.5"  # training corruption; a range is drawn per image (blind training)
    val_noise: str | None = None  # fixed validation corruption; defaults to ``noise``
    loss: str = "mse"  # "mse", "mae" or "psnr" (minus the mean per-image PSNR)
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # "cosine", "plateau" or "constant"
    patience: int = 5  # epochs without validation-loss improvement before stopping
    min_delta: float = 0.0
    train_size: int | None = None  # use only the first N training faces
    val_size: int | None = None  # use only the first N validation faces
    val_unique: bool = True  # validate on the PublicTest faces not in Training; false: on all (recipes trained before)
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    amp: bool = True  # mixed precision, CUDA only
    num_threads: int | None = None  # torch CPU threads; None leaves torch's default
    init: str | None = None  # a model file whose weights start the training (fine-tuning); None: random

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
        "device": "auto, cpu, cuda or cuda:N",
        "amp": "mixed precision (CUDA only)",
        "num_threads": "torch CPU threads (null: torch's default)",
        "init": "a model file whose weights start the training (fine-tuning); null: random weights",
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
        if self.train_size is not None and self.train_size < 2:
            raise InputError(f"train_size must be >= 2 faces, or null for all, got {self.train_size}")
        if self.val_size is not None and self.val_size < 1:
            raise InputError(f"val_size must be >= 1 face, or null for all, got {self.val_size}")
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


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return asdict(config)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from nested dicts (YAML, a checkpoint); settings added since it was saved take their defaults,
    except those in ``SAVED_BEFORE``, which take the value that reproduces what such a run did."""
    return build(TrainConfig, {**SAVED_BEFORE, **values})



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
    model. Rank 0 alone decides to stop (its early stopping or ``on_epoch``), so all ranks stop at one epoch.
    """
    device = device or resolve_device(config.device)
    threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        return _fit(config, data, on_epoch, resume, device, wrap_model, rank, world_size)
    finally:
        torch.set_num_threads(threads)


def _fit(config, data, on_epoch, resume, device, wrap_model, rank, world_size) -> FitResult:
    train = data.train[: config.train_size]
    if rank == 0 and config.train_size is not None and config.train_size > len(data.train):
        log.warning("train_size %d is more than the %d training faces; training on all %d", config.train_size, len(data.train), len(data.train))
    val = data.validation(config.val_unique)
    if rank == 0 and config.val_size is not None and config.val_size > len(val):
        log.warning("val_size %d is more than the %d validation faces; validating on all %d", config.val_size, len(val), len(val))
    per_rank = len(train) // world_size
    train_u8 = _to_device(train[rank::world_size][:per_rank], device)
    if len(train_u8) < 2:
        raise InputError(f"need at least 2 training faces, got {len(train_u8)}")
    val_clean, val_noisy = _validation_set(val[: config.val_size], config, device)
    use_amp = config.amp and device.type == "cuda"
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(config.seed)
        core = ConvAutoencoder(config.model).to(device)
        if config.init and resume is None:
            load_initial_weights(core, config)
        if device.type == "cpu":  # oneDNN's convolutions run about 1.3x faster on channels-last weights
            core = core.to(memory_format=torch.channels_last)
        model = wrap_model(core) if wrap_model else core
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        scheduler = _scheduler(optimizer, config)
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        if rank:  # distinct dropout masks per rank; the model's initial weights above are the same on every rank
            torch.manual_seed(_rank_seed(config.seed, rank))
        generator = make_generator(_rank_seed(config.seed, rank), device)
        state = {"epoch": 0, "best_val_loss": math.inf, "best_epoch": 0, "bad_epochs": 0, "history": [], "initial": None}
        best_model_state = copy.deepcopy(core.state_dict())
        if resume is not None:
            _check_resume(resume, config)
            core.load_state_dict(resume["model_state"])
            optimizer.load_state_dict(resume["optimizer_state"])
            scheduler.load_state_dict(resume["scheduler_state"])
            if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
                scheduler.T_max = config.epochs  # resumed with another --epochs: anneal from here to the new end
            scaler.load_state_dict(resume["scaler_state"])
            torch.set_rng_state(resume["rng_state"].cpu())
            if device.type == "cuda" and "cuda_rng_state" in resume:  # absent in checkpoints written before it was saved
                torch.cuda.set_rng_state(resume["cuda_rng_state"].cpu(), device)
            generator.set_state(resume["generator_state"].to(generator.get_state().device))
            best_model_state = resume["best_model_state"]
            state = {k: copy.deepcopy(resume.get(k, v)) for k, v in state.items()}
            if rank:  # the checkpoint holds rank 0's random states: the other ranks draw afresh, apart from it and each other
                torch.manual_seed(_rank_seed(config.seed, rank) + state["epoch"])
                generator.manual_seed(_rank_seed(config.seed, rank) + state["epoch"])
        noisy_psnr, noisy_ssim = _quality(val_noisy, val_clean)
        loss_fn = LOSSES[config.loss]
        if config.init and resume is None:  # a warm start is scored before training, and stays the best until beaten
            started = time.perf_counter()
            init_loss, init_psnr, init_ssim, _ = _validate(core, val_noisy, val_clean, loss_fn, use_amp)
            state["initial"] = {"epoch": 0, "train_loss": math.nan, "val_loss": init_loss, "val_psnr": init_psnr, "val_ssim": init_ssim,
                                "noisy_psnr": noisy_psnr, "noisy_ssim": noisy_ssim, "lr": config.lr,
                                "seconds": time.perf_counter() - started, "images_per_second": 0.0}
            state["best_val_loss"] = init_loss
        batches = max(1, len(train_u8) // config.batch_size)
        batch_size = min(config.batch_size, len(train_u8))
        parameters = count_parameters(core)
        started = time.perf_counter()
        stopped_early = False
        checkpoint = resume
        for epoch in range(state["epoch"] + 1, config.epochs + 1):
            epoch_start = time.perf_counter()
            model.train()
            order = torch.randperm(len(train_u8), generator=generator, device=device)
            total = torch.zeros((), device=device)
            for step in range(batches):
                clean = train_u8[order[step * batch_size:(step + 1) * batch_size]].float().div_(255.0)
                noisy = corrupt(clean, config.noise, generator)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    output = model(noisy)
                loss = loss_fn(output.float(), clean)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += loss.detach()
            train_loss = float(total) / batches  # synchronises the device before the clock is read
            train_seconds = time.perf_counter() - epoch_start
            _broadcast_buffers(core, world_size)
            val_loss, val_psnr, val_ssim, examples = _validate(core, val_noisy, val_clean, loss_fn, use_amp)
            if not math.isfinite(train_loss) or not math.isfinite(val_loss):
                raise Diverged(f"training diverged at epoch {epoch}: the loss is not finite (train {train_loss}, val {val_loss}); "
                               "lower the learning rate (lr)")
            lr = optimizer.param_groups[0]["lr"]
            if config.schedule == "plateau":
                scheduler.step(val_loss)
            else:
                scheduler.step()
            is_best = val_loss < state["best_val_loss"] - config.min_delta
            if is_best:
                state.update(best_val_loss=val_loss, best_epoch=epoch, bad_epochs=0)
                best_model_state = copy.deepcopy(core.state_dict())
            else:
                state["bad_epochs"] += 1
            should_stop = _from_rank_zero(state["bad_epochs"] >= config.patience, device, world_size)
            metrics = {
                "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_psnr": val_psnr, "val_ssim": val_ssim,
                "noisy_psnr": noisy_psnr, "noisy_ssim": noisy_ssim, "lr": lr, "seconds": time.perf_counter() - epoch_start,
                "images_per_second": batches * batch_size / train_seconds,
            }
            state["history"].append(metrics)
            state["epoch"] = epoch
            checkpoint = {
                "format": FORMAT, "version": VERSION, "config": config_to_dict(config), "parameters": parameters,
                "metrics": metrics, "best_metrics": _best_metrics(state), **copy.deepcopy(state),
                "model_state": copy.deepcopy(core.state_dict()), "best_model_state": best_model_state,
                "optimizer_state": copy.deepcopy(optimizer.state_dict()), "scheduler_state": scheduler.state_dict(),
                "scaler_state": scaler.state_dict(), "rng_state": torch.get_rng_state(), "generator_state": generator.get_state(),
                **({"cuda_rng_state": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
            }
            report = EpochReport(**metrics, is_best=is_best, should_stop=should_stop, checkpoint=checkpoint, examples=examples)
            wants_stop = _from_rank_zero(bool(on_epoch(report)) if on_epoch else False, device, world_size)
            if should_stop or wants_stop:
                stopped_early = should_stop
                break
    return FitResult(
        best_epoch=state["best_epoch"], best=_best_metrics(state), history=state["history"], checkpoint=checkpoint,
        stopped_early=stopped_early, parameters=parameters, seconds=time.perf_counter() - started,
    )


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


def _from_rank_zero(decision: bool, device: torch.device, world_size: int) -> bool:
    """Rank 0's stop decision on every rank: a rank that stopped alone would leave the others waiting in a collective."""
    if not _distributed(world_size):
        return decision
    flag = torch.tensor([decision], dtype=torch.uint8, device=device)
    torch.distributed.broadcast(flag, src=0)
    return bool(flag)


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
    noisy = corrupt(clean, config.validation_noise, make_generator(config.seed + 1))
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



def _validate(model, val_noisy, val_clean, loss_fn, use_amp) -> tuple[float, float, float, tuple[torch.Tensor, ...]]:
    denoised = denoise_tensor(model, val_noisy, amp=use_amp)
    val_loss = float(loss_fn(denoised, val_clean))
    val_psnr, val_ssim = _quality(denoised, val_clean)
    examples = tuple(t[:EXAMPLES].detach().cpu() for t in (val_noisy, denoised, val_clean))
    return val_loss, val_psnr, val_ssim, examples

