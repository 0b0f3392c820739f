"""Section b: training images/s of the search's extreme models at growing batch sizes, eager, on channels-last
weights and compiled, at each precision asked for."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from bench.gpu_check.data import smooth_faces
from bench.gpu_check.models import describe, search_models
from bench.gpu_check.report import Section, progress
from denoise_core.fit import LOSSES, TrainConfig, config_from_dict
from denoise_core.model import ConvAutoencoder, ModelConfig, count_parameters
from denoise_core.noise import corrupt, make_generator


BATCH_SIZES = (128, 512, 2048)
VARIANTS = ("eager", "channels-last", "compile")
WARMUP_STEPS, TIMED_STEPS = 5, 20
POOL_FACES = 8192
COMPILE_GUESS_S = 60.0  # until one compile has been seen
# The autocast dtype of each training precision (None: plain fp32). fp16 is what fit's ``amp`` trains in, and the one
# that scales its loss; the others are measured only when asked for (``--precisions``), so that a precision can be
# judged here before fit offers it.
PRECISIONS: dict[str, torch.dtype | None] = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}
FIT_PRECISIONS = ("fp16",)


@dataclass
class Trainer:
    """A model, optimizer and scaler set up as ``fit`` sets them up on CUDA, stepping on batches of a face pool."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    config: TrainConfig
    generator: torch.Generator
    precision: str = "fp16"

    def step(self, pool: torch.Tensor, batch: int) -> None:
        """One optimizer step, as fit's inner loop: gather, scale, corrupt on the device, autocast, (scaled) backward."""
        index = torch.randint(len(pool), (batch,), generator=self.generator, device=pool.device)
        clean = pool[index].float().div_(255.0)
        noisy = corrupt(clean, self.config.noise, self.generator)
        dtype = PRECISIONS[self.precision]
        with torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext():
            output = self.model(noisy)
        loss = LOSSES[self.config.loss](output.float(), clean)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


def make_trainer(model_config: ModelConfig, config: TrainConfig, variant: str, precision: str = "fp16") -> Trainer:
    torch.manual_seed(0)
    core = ConvAutoencoder(model_config).cuda()
    if variant == "channels-last":
        core = core.to(memory_format=torch.channels_last)
    model = torch.compile(core, dynamic=True) if variant == "compile" else core
    optimizer = torch.optim.AdamW(core.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")  # a disabled scaler passes the loss and the step through
    return Trainer(model, optimizer, scaler, config, make_generator(0, "cuda"), precision)


def time_steps(trainer: Trainer, pool: torch.Tensor, batch: int) -> dict[str, float]:
    """The first step alone (it holds any compile), WARMUP_STEPS more, then TIMED_STEPS between synchronisations."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.step(pool, batch)
    torch.cuda.synchronize()
    first = time.perf_counter() - started
    for _ in range(WARMUP_STEPS):
        trainer.step(pool, batch)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(TIMED_STEPS):
        trainer.step(pool, batch)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"img/s": round(TIMED_STEPS * batch / seconds), "ms/step": round(1000 * seconds / TIMED_STEPS, 2),
            "first step s": round(first, 2), "peak MiB": round(torch.cuda.max_memory_allocated() / 2**20)}


@dataclass
class Compiles:
    """What the compiles so far tell about the next one: how long each took, and whether the compiler failed
    (one failure is the answer for every model: no time is spent on more)."""

    seconds: list[float] = field(default_factory=list)
    failed: bool = False

    def first_step_needs(self, variant: str) -> float:
        return 1.3 * max(self.seconds, default=COMPILE_GUESS_S / 1.3) + 10 if variant == "compile" else 8


def model_rows(model_config: ModelConfig, config: TrainConfig, base: dict[str, Any], pool: torch.Tensor, deadline: float,
               compiles: Compiles) -> list[dict[str, Any]]:
    """One row per batch size for one model, variant and precision; a skipped or failed row says why."""
    variant = base["variant"]
    first_needs = compiles.first_step_needs(variant)
    if deadline - time.perf_counter() < first_needs or (variant == "compile" and compiles.failed):
        why = "skipped: compile failed above" if variant == "compile" and compiles.failed else "skipped: budget"
        return [{**base, "batch": batch, "status": why} for batch in BATCH_SIZES]
    progress(f"b: {base['model']} model, {variant}, {base['precision']}")
    trainer = make_trainer(model_config, config, variant, base["precision"])
    rows: list[dict[str, Any]] = []
    failed = False
    for batch in BATCH_SIZES:
        if failed or deadline - time.perf_counter() < (first_needs if batch == BATCH_SIZES[0] else 5):
            rows.append({**base, "batch": batch, "status": "skipped: failed above" if failed else "skipped: budget"})
            continue
        try:
            rows.append({**base, "batch": batch, **time_steps(trainer, pool, batch), "status": "ok"})
        except Exception as error:  # an OOM or a compiler failure is a result here, not the end of the run
            rows.append({**base, "batch": batch, "status": f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"})
            failed = True
            compiles.failed = compiles.failed or variant == "compile"
            continue
        if variant == "compile" and batch == BATCH_SIZES[0]:
            compiles.seconds.append(rows[-1]["first step s"])
    del trainer
    torch._dynamo.reset()
    torch.cuda.empty_cache()
    return rows


def bench_throughput(deadline: float, preset: dict[str, Any], precisions: Sequence[str] = FIT_PRECISIONS) -> Section:
    section = Section("b", "training images/s on the GPU: the full search's smallest, default and largest models")
    config = config_from_dict(preset["train"])
    models = search_models(preset)
    pool = torch.from_numpy(smooth_faces(POOL_FACES, seed=1)).unsqueeze(1).cuda()
    compiles = Compiles()
    for variant in VARIANTS:
        for precision in precisions:
            for name, model_config in models.items():
                base = {"model": name, "params": count_parameters(ConvAutoencoder(model_config)), "variant": variant, "precision": precision}
                section.rows += model_rows(model_config, config, base, pool, deadline, compiles)
    section.notes += [
        "models (ModelConfig fields apart from their defaults; default is full.yaml's train.model): "
        + "; ".join(f"{name}: {describe(model_config)}" for name, model_config in models.items()),
        f"as fit trains on CUDA: AdamW (lr {config.lr:g}, weight decay {config.weight_decay:g}), loss {config.loss}, noise {config.noise} "
        f"drawn on the GPU; batches gathered from {POOL_FACES} synthetic uint8 faces on the GPU",
        "precision: fp16 is autocast with a GradScaler (fit's amp), bf16 autocast without one, fp32 no autocast; "
        f"measured here: {', '.join(precisions)}",
        f"per row: 1 first step (timed alone: it holds the compile), {WARMUP_STEPS} warm-up steps, then {TIMED_STEPS} steps between "
        "torch.cuda.synchronize calls; img/s counts input faces (mirror models run each face twice)",
        "eager: fit's CUDA path (contiguous weights); channels-last: the same on channels-last weights; compile: torch.compile(model, "
        "dynamic=True), made once per model and stepped at every batch size: the first batch's 'first step s' is the compile, a later "
        "one's any recompile",
        f"peak MiB: torch.cuda.max_memory_allocated during the row, the {pool.numel() / 2**20:.0f} MiB face pool, weights and optimizer "
        "state included; cudnn.benchmark off, as in fit",
    ]
    return section
