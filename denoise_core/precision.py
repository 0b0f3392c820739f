"""The number format a training run computes in: ``fp32``, ``bf16`` or ``fp16`` autocast, and ``auto``, which picks
bf16 where the hardware runs it natively (CPUs with AVX-512 BF16 or AMX, CUDA GPUs that support it) and fp32 elsewhere.

Autocast changes only the matrix products (convolutions); the loss, the metrics, the weights and the optimiser state
stay in float32. The choice is a pure function of what the hardware reports, so every case can be tested anywhere.
"""

from __future__ import annotations

from pathlib import Path

import torch

from denoise_core.errors import InputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo flags of CPUs with native bf16 products


def choose_precision(device_type: str, cpu_flags: frozenset[str], cuda_bf16: bool) -> str:
    """What ``auto`` means on a device: bf16 where it is native (a CPU reporting AVX-512 BF16 or AMX, a CUDA GPU
    reporting bf16 support), fp32 everywhere else (fp16 needs a gradient scaler, so it is only ever asked for)."""
    if device_type == "cuda":
        return "bf16" if cuda_bf16 else "fp32"
    if device_type == "cpu":
        return "bf16" if cpu_flags & BF16_CPU_FLAGS else "fp32"
    return "fp32"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The instruction-set flags of the first CPU in ``/proc/cpuinfo``; none where there is no such file (not Linux)."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return frozenset()
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` made concrete for ``device``; fp16 off CUDA is refused (the CPU has no fast fp16 and no gradient scaler)."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return choose_precision(device.type, cpu_flags() if device.type == "cpu" else frozenset(), cuda_bf16)
    if precision == "fp16" and device.type != "cuda":
        raise InputError(f"precision fp16 needs a CUDA device, and this run is on {device.type}; use bf16 or fp32 (or auto)")
    return precision


def legacy_precision(amp: bool, device: str) -> str:
    """The precision an old ``amp`` setting trained in: fp16 autocast where the run was on CUDA, fp32 elsewhere."""
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "fp16" if amp and on_cuda else "fp32"
