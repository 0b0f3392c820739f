"""Running a trained model: the device to run on and batched inference, shared by training's validation, the
denoise CLI and the reports (which must not import the training loop to run a model)."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval

from denoise_core.errors import InputError


def resolve_device(name: str) -> torch.device:
    """The torch device for ``--device``; a name torch does not know, or CUDA where there is none, is one line."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):  # torch's "Expected one of cpu, cuda, ... device type at start of device string"
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {name!r} requested but MPS is not available; use --device cpu or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
    return device


@contextmanager
def thread_count(threads: int | None) -> Iterator[None]:
    """This process's torch CPU threads set to ``threads`` for a while (None: left as they are), then restored."""
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


CPU_BATCH = 64  # on a CPU, batches of 64 faces stay in cache: 2-3x faster than 1024
GPU_BATCH = 1024


def default_batch(device: torch.device) -> int:
    return CPU_BATCH if device.type == "cpu" else GPU_BATCH


def for_inference(model: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """A copy of the model in eval mode that runs faster and gives the same faces (to 2e-6): each batch norm folded
    into the convolution before it, a pass fewer over the activations (3 to 5% of a hold-out scoring, measured); and on a
    CPU, channels-last weights, which make oneDNN's convolutions 1.5-1.8x faster on these small faces. The caller's
    model is left as it is, so it can still train or be saved."""
    folded = fold_batchnorm(copy.deepcopy(model).eval())
    return folded.to(memory_format=torch.channels_last) if torch.device(device).type == "cpu" else folded


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """The eval-mode model with every Conv2d -> BatchNorm2d pair in a Sequential replaced by one convolution whose
    weights and bias take the batch norm's running statistics and affine terms in (changed in place, and returned)."""
    for sequence in model.modules():
        if not isinstance(sequence, torch.nn.Sequential):
            continue
        names = list(sequence._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = sequence._modules[first], sequence._modules[second]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d) and norm.track_running_stats:
                sequence._modules[first] = fuse_conv_bn_eval(conv, norm)
                sequence._modules[second] = torch.nn.Identity()
    return model


def denoise_tensor(model: torch.nn.Module, noisy: torch.Tensor, batch_size: int | None = None, autocast: torch.dtype | None = None) -> torch.Tensor:
    """Run the model over (N, 1, 48, 48) images in batches (None: the device's ``default_batch``), on the images'
    device; float32 out, whatever ``autocast`` format (bfloat16, float16, None for float32) the products ran in.

    On a CPU with several torch threads the batches run side by side, one thread each: a convolution over 64 faces of
    48x48 splits badly over threads, so on 2 cores 2 batches at once denoise 1.07 to 1.33x faster than one batch on
    both (three 0.5 M-parameter models, 4,800 faces; ``bench/core.py`` has the row), with the same outputs bit for bit:
    each batch's arithmetic does not depend on the thread count."""
    model.eval()
    batches = noisy.split(batch_size or default_batch(noisy.device))
    threads = torch.get_num_threads()
    if noisy.device.type != "cpu" or threads == 1 or len(batches) == 1:
        return torch.cat([_forward(model, batch, autocast) for batch in batches])
    with thread_count(1), ThreadPoolExecutor(min(threads, len(batches))) as pool:
        return torch.cat(list(pool.map(lambda batch: _forward(model, batch, autocast), batches)))


def _forward(model: torch.nn.Module, batch: torch.Tensor, autocast: torch.dtype | None) -> torch.Tensor:
    """One batch, float32 out. Grad mode and autocast hold per thread, so they are set here, in the thread that runs it."""
    with torch.no_grad(), torch.autocast(batch.device.type, dtype=autocast, enabled=autocast is not None):
        return model(batch).float()
