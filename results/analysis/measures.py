"""Numbers the analyses compute on batches of faces (N, 48, 48) on the [0, 1] scale: pooled MSE in dB, image
filters that never mix faces, and statistics that answer NaN rather than warn."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage, stats

from denoise_core.metrics import PSNR_CAP, psnr


def db(mse: np.ndarray | float) -> np.ndarray | float:
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / np.asarray(mse, dtype=np.float64))


def mean_psnr(restored: np.ndarray, clean: np.ndarray) -> float:
    """Mean per-image PSNR, capped as every reported mean is (unlike the pooled group PSNRs above, which may read inf)."""
    return float(psnr(torch.from_numpy(np.ascontiguousarray(restored)), torch.from_numpy(np.ascontiguousarray(clean))).mean())


def face_db(mse: np.ndarray) -> np.ndarray:
    """Per-face PSNR (dB) from per-face MSE, capped as every per-image PSNR is, so a face with no error counts as the cap, not inf."""
    return np.minimum(db(mse), PSNR_CAP)


def face_mse(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """MSE of each face over the pixels of a (48, 48) mask; ``pred`` may carry a leading seeds axis, (seeds, N, 48, 48) gives (seeds, N)."""
    return ((pred.astype(np.float64) - target.astype(np.float64)) ** 2)[..., mask].mean(axis=-1)


def pooled_mse(pred: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """MSE of each pixel group (rows of ``weights``, (G, 48*48)) pooled over all faces, shape (G,)."""
    squared = (pred.astype(np.float64) - target.astype(np.float64)) ** 2
    return (weights @ squared.reshape(len(squared), -1).sum(axis=0)) / (len(squared) * weights.sum(axis=1))


def _filter(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """A 2-D correlation of every face, never across the batch axis (as ``ndimage.sobel`` on 3-D would)."""
    return ndimage.correlate(images.astype(np.float64), kernel[None], mode="reflect")


def sobel_magnitude(images: np.ndarray) -> np.ndarray:
    kernel = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    return np.hypot(_filter(images, kernel), _filter(images, kernel.T))


def laplacian(images: np.ndarray) -> np.ndarray:
    return _filter(images, np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]))


def smooth(images: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(images.astype(np.float64), sigma=(0.0, sigma, sigma), mode="reflect")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation; NaN (not a warning) when either side is constant or has fewer than 2 values."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2:
        return math.nan
    ra, rb = stats.rankdata(a), stats.rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``a`` with the same row of ``b`` (both (rows, n)); NaN for a constant row."""
    ra, rb = stats.rankdata(a, axis=1), stats.rankdata(b, axis=1)
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    scale = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, (ra * rb).sum(axis=1) / scale, np.nan)


def nanmean(values: Sequence[float]) -> float:
    """Mean of the finite-or-inf values, NaN (not a warning) when there are none."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def majority(flags: Sequence[bool]) -> bool | None:
    """A tendency holds when it holds at more than half of the conditions checked; None when none was."""
    return None if len(flags) == 0 else bool(sum(flags) * 2 > len(flags))

