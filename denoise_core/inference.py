"""Running a trained model: the device to run on and batched inference, shared by training's validation, the
denoise CLI and the reports (which must not import the training loop to run a model)."""

from __future__ import annotations

import torch

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


@torch.no_grad()
def denoise_tensor(model: torch.nn.Module, noisy: torch.Tensor, batch_size: int = 1024, autocast: torch.dtype | None = None) -> torch.Tensor:
    """Run the model over (N, 1, 48, 48) images in batches, on the images' device; float32 out, whatever ``autocast``
    format (bfloat16, float16, None for float32) the products ran in."""
    model.eval()
    outputs = []
    for start in range(0, len(noisy), batch_size):
        with torch.autocast(noisy.device.type, dtype=autocast, enabled=autocast is not None):
            outputs.append(model(noisy[start:start + batch_size]).float())
    return torch.cat(outputs)
