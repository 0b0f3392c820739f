"""What the `full` preset would take on GPUs: FLOPs and CPU speed measured here, the GPU's speed and the
trials' start-up assumed, turned into wall time and cost for a number of A10G workers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

FULL_TRAIN_FACES, FULL_VAL_FACES = 28_698, 3_589  # FER2013 Training (blank faces dropped) and PublicTest
FULL_TRIALS, FULL_MAX_EPOCHS, FULL_GRACE, FULL_REDUCTION = 64, 60, 5, 3  # presets/full.yaml
TRIALS_PER_GPU = 4  # gpus_per_trial 0.25
G5_XLARGE_PER_HOUR, M5_XLARGE_PER_HOUR = 1.006, 0.192  # USD, us-east-1 on-demand list prices (1x A10G worker; CPU head)
CPU_TIMING_TRAIN, CPU_TIMING_VAL = 384, 256  # faces in the one timed CPU epoch
THIS_MACHINE_SLOTS = 2  # trials at once on this 2-core machine


@dataclass(frozen=True)
class FullCost:
    flops_per_image: dict[int, float]  # base_width -> fwd+bwd FLOPs per 48x48 image (batch 128)
    cpu_train_ips: float  # base_width 32, 1 thread
    cpu_val_s_per_image: float
    cpu_flops_per_s: float

    @property
    def mean_flops(self) -> float:  # the search draws base_width uniformly from the full preset's choices
        return sum(self.flops_per_image.values()) / len(self.flops_per_image)


def measure_full_cost(data: Path) -> FullCost:
    """FLOPs per image of every base_width in the full search, and one timed CPU epoch of its default model."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from denoise_core.data import load_splits
    from denoise_core.fit import fit
    from denoise_core.model import ConvAutoencoder
    from denoise_core.settings import override
    from study.config import build_config

    full = build_config("full")
    flops = {}
    for width in full.search["model.base_width"]["choice"]:
        model = ConvAutoencoder(override(full.train, {"model.base_width": width}).model)
        with FlopCounterMode(display=False) as counter:
            model(torch.rand(128, 1, 48, 48)).float().mean().backward()
        flops[width] = counter.get_total_flops() / 128
    config = override(full.train, {"epochs": 1, "train_size": CPU_TIMING_TRAIN, "val_size": CPU_TIMING_VAL, "device": "cpu", "num_threads": 1})
    reports = []
    fit(config, load_splits(data), on_epoch=reports.append)
    report = reports[0]
    train_s = CPU_TIMING_TRAIN // config.batch_size * config.batch_size / report.images_per_second
    val_s = max(report.seconds - train_s, 1e-6) / CPU_TIMING_VAL
    return FullCost(flops_per_image=flops, cpu_train_ips=report.images_per_second, cpu_val_s_per_image=val_s,
                    cpu_flops_per_s=flops[32] * report.images_per_second)


def asha_epochs(trials: int) -> list[int]:
    """Epochs each trial runs under ASHA (grace 5, reduction 3, max 60): a third of the trials goes on at each rung."""
    rungs = [FULL_GRACE]
    while rungs[-1] * FULL_REDUCTION < FULL_MAX_EPOCHS:
        rungs.append(rungs[-1] * FULL_REDUCTION)
    epochs, left = [], trials
    for index, rung in enumerate(rungs):
        going_on = round(trials / FULL_REDUCTION ** (index + 1))
        epochs += [rung] * (left - going_on)
        left = going_on
    return epochs + [FULL_MAX_EPOCHS] * left


def full_estimate(cost: FullCost, gpus: int, gpu_tflops: float, overhead_s: float, epochs: list[int]) -> tuple[float, float]:
    """Wall seconds and USD for the full preset on `gpus` GPUs, 4 trials per GPU sharing it."""
    gpu_flops = gpu_tflops * 1e12
    epoch_flops = FULL_TRAIN_FACES * cost.mean_flops + FULL_VAL_FACES * cost.mean_flops / 3  # validation: forward only
    slots = min(len(epochs), gpus * TRIALS_PER_GPU)
    work = sum(epochs) * epoch_flops / gpu_flops  # GPU-seconds of training
    longest = max(epochs) * epoch_flops / (gpu_flops / TRIALS_PER_GPU) + overhead_s  # a trial sharing its GPU with 3 others
    waves = math.ceil(len(epochs) / slots)
    wall = max(work / gpus + waves * overhead_s, longest)
    dollars = wall / 3600 * (gpus * G5_XLARGE_PER_HOUR + M5_XLARGE_PER_HOUR)
    return wall, dollars


def this_machine_estimate(cost: FullCost, overhead_s: float, epochs: list[int]) -> tuple[float, float]:
    """Wall seconds of the full preset on this machine's CPUs, 2 trials at a time: under ASHA, and with every trial
    running all its epochs."""
    epoch_s = FULL_TRAIN_FACES / cost.cpu_train_ips * cost.mean_flops / cost.flops_per_image[32] + FULL_VAL_FACES * cost.cpu_val_s_per_image
    asha = sum(epochs) * epoch_s / THIS_MACHINE_SLOTS + math.ceil(FULL_TRIALS / THIS_MACHINE_SLOTS) * overhead_s
    return asha, FULL_MAX_EPOCHS * FULL_TRIALS * epoch_s / THIS_MACHINE_SLOTS


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"
