"""One self-describing checkpoint file: config, weights, metrics and a format version.

A training checkpoint also carries optimizer, scheduler and RNG state so training resumes exactly; an
exported model keeps only what inference needs. ``load_model`` reads both. A checkpoint holds only tensors
and plain values and is read with ``weights_only=True``: a model file is data, and loading one never runs code.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from denoise_core.errors import InputError, MissingFile, OutputExists
from denoise_core.files import write_atomic
from denoise_core.model import ConvAutoencoder, model_config_from_dict

FORMAT = "facestudy-checkpoint"
VERSION = 1
_TRAINING_ONLY = ("optimizer_state", "scheduler_state", "scaler_state", "rng_state", "generator_state", "model_state")


class CheckpointError(InputError):
    """A file that is not a facestudy checkpoint, one of an unsupported version, or one that is damaged."""


def checkpoint_bytes(checkpoint: dict[str, Any]) -> bytes:
    """The file's bytes, made in memory: a full disk then fails in one plain write, never inside torch."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write whole or not at all, so an interrupted save or a full disk never leaves half a file."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExists(f"{path} exists; refusing to overwrite it (choose another path or pass --overwrite)")
    return write_atomic(path, checkpoint_bytes(checkpoint))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    refuse_non_model(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights_only" in str(error) or "Weights only" in str(error):
            raise CheckpointError(f"{path} was refused: it holds Python objects, not only tensors and plain values, and a model "
                                  "file is loaded as data, never run; use a model.pt written by facestudy") from None
        raise damaged(path) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError):  # torch's forms of "not a torch file"
        raise damaged(path) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a facestudy checkpoint (no '{FORMAT}' format tag); train one with python -m denoise_core.train")
    if checkpoint.get("version") != VERSION:
        raise CheckpointError(f"{path} is facestudy checkpoint version {checkpoint.get('version')}, this code reads version {VERSION}")
    return checkpoint


def refuse_non_model(path: Path) -> None:
    """A path that cannot be a model file, said for what it is: missing, a directory, or a training recipe."""
    if path.is_dir():
        inside = path / "model.pt"
        hint = f"; did you mean {inside}?" if inside.is_file() else "; pass a model.pt file"
        raise CheckpointError(f"model {path} is a directory, not a model file{hint}")
    if not path.is_file():
        raise MissingFile(f"model file {path} does not exist")
    if path.suffix.lower() in (".yaml", ".yml"):
        raise CheckpointError(f"{path} is a recipe (a YAML config), not a model; train a model from it with "
                              f"python -m denoise_core.train --config {path} --out RUN and pass RUN/model.pt")


def damaged(path: Path) -> CheckpointError:
    return CheckpointError(f"{path} is damaged or not a facestudy checkpoint (it does not read as a whole torch file); "
                           "train or export it again")


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
