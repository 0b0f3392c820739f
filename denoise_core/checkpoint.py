"""One self-describing checkpoint file: config, weights, metrics and a format version.

A training checkpoint also carries optimizer, scheduler and RNG state so training resumes exactly; an
exported model keeps only what inference needs. ``load_model`` reads both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from denoise_core.model import ConvAutoencoder, model_config_from_dict

FORMAT = "facestudy-checkpoint"
VERSION = 1
_TRAINING_ONLY = ("optimizer_state", "scheduler_state", "scaler_state", "rng_state", "generator_state", "model_state")


class CheckpointError(ValueError):
    """A file that is not a facestudy checkpoint, or one of an unsupported version."""


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write atomically (temp file + rename) so an interrupted save never leaves half a file."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it (choose another path or pass --overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    torch.save(checkpoint, partial)
    os.replace(partial, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # torch raises many types for foreign files
        raise CheckpointError(f"{path} is not a facestudy checkpoint (torch.load failed: {type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a facestudy checkpoint (no '{FORMAT}' format tag); train one with python -m denoise_core.train")
    if checkpoint.get("version") != VERSION:
        raise CheckpointError(f"{path} is facestudy checkpoint version {checkpoint.get('version')}, this code reads version {VERSION}")
    return checkpoint


def export_model(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The inference part of a training checkpoint: config, best weights, metrics, history."""
    slim = {k: v for k, v in checkpoint.items() if k not in _TRAINING_ONLY and k != "best_model_state"}
    slim["model_state"] = checkpoint.get("best_model_state", checkpoint["model_state"])
    return slim


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[ConvAutoencoder, dict[str, Any]]:
    """The model (best weights, eval mode) and its checkpoint from a training checkpoint or an exported model."""
    checkpoint = load_checkpoint(path, map_location=device)
    model = ConvAutoencoder(model_config_from_dict(checkpoint["config"]["model"]))
    model.load_state_dict(checkpoint.get("best_model_state", checkpoint["model_state"]))
    return model.to(device).eval(), checkpoint
