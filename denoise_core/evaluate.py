"""Scoring any denoiser on the fixed noisy hold-out, condition by condition.

A denoiser is any function from float32 faces (N, 48, 48) in [0, 1] to restored faces of the same
shape, so trained models and classical baselines are measured by the same code on the same bytes.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from denoise_core.checkpoint import load_model
from denoise_core.denoise import denoise_array
from denoise_core.holdout import Holdout
from denoise_core.inference import for_inference
from denoise_core.metrics import batched_quality, ssim_gaussian

Denoiser = Callable[[np.ndarray], np.ndarray]


def model_denoiser(model: torch.nn.Module, device: torch.device | str = "cpu") -> Denoiser:
    """The model as a denoiser on ``device``, in the layout and batches that run fastest there (``for_inference``)."""
    model = for_inference(model, device)
    return lambda noisy: denoise_array(model, noisy, device)


def file_denoiser(path: str, device: torch.device | str = "cpu") -> Denoiser:
    model, _ = load_model(path, device)
    return model_denoiser(model, device)


def score_images(restored: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image PSNR and SSIM of float faces (N, 48, 48) against clean ones."""
    psnr, ssim = batched_quality(torch.from_numpy(np.ascontiguousarray(restored, dtype=np.float32)), torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32)))
    return psnr.numpy(), ssim.numpy()


def score_ssim_gaussian(restored: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Per-image Gaussian-window SSIM (11x11, sigma 1.5: the literature's) of float faces (N, 48, 48), beside ``score_images``."""
    return ssim_gaussian(torch.from_numpy(np.ascontiguousarray(restored, dtype=np.float32)),
                         torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32))).numpy()


def condition_scores(denoiser: Denoiser, holdout: Holdout, conditions: tuple[str, ...] | None = None,
                     faces: int | None = None) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Per condition, the per-face PSNR and SSIM of the denoiser and of the noisy input, on the first ``faces`` faces,
    and the Gaussian-window SSIM of both (``ssim_gauss``, ``noisy_ssim_gauss``)."""
    clean = holdout.clean[:faces].astype(np.float32) / 255.0
    for condition in conditions or holdout.conditions:
        noisy = holdout.noisy_for(condition)[:faces].astype(np.float32) / 255.0
        restored = denoiser(noisy)
        psnr, ssim = score_images(restored, clean)
        noisy_psnr, noisy_ssim = score_images(noisy, clean)
        yield condition, {"psnr": psnr, "ssim": ssim, "noisy_psnr": noisy_psnr, "noisy_ssim": noisy_ssim,
                          "ssim_gauss": score_ssim_gaussian(restored, clean), "noisy_ssim_gauss": score_ssim_gaussian(noisy, clean)}


def evaluate_on_holdout(denoiser: Denoiser, holdout: Holdout, conditions: tuple[str, ...] | None = None, faces: int | None = None) -> pd.DataFrame:
    """Mean PSNR/SSIM (and Gaussian-window SSIM) of the denoiser and of the noisy input for each condition (one row per condition)."""
    rows = []
    for condition, scores in condition_scores(denoiser, holdout, conditions, faces):
        means = {name: float(values.mean()) for name, values in scores.items()}
        gauss = {name: means.pop(name) for name in ("ssim_gauss", "noisy_ssim_gauss")}
        rows.append({"condition": condition, **means, "faces": len(scores["psnr"]), **gauss})
    return pd.DataFrame(rows)


def face_scores(denoiser: Denoiser, holdout: Holdout, conditions: tuple[str, ...] | None = None, faces: int | None = None) -> pd.DataFrame:
    """PSNR/SSIM of the denoiser and of the noisy input for every face (one row per condition and face, ``face`` its hold-out index),
    so that two denoisers can be compared face by face."""
    frames = [pd.DataFrame({"condition": condition, "face": np.arange(len(scores["psnr"])), **scores})
              for condition, scores in condition_scores(denoiser, holdout, conditions, faces)]
    return pd.concat(frames, ignore_index=True)
