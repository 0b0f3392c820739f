"""Running a trained model: the device to run on and batched inference, shared by training's validation, the
denoise CLI and the reports (which must not import the training loop to run a model)."""

from __future__ import annotations

import torch

from denoise_core.errors import InputError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
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
