"""SSIM against PSNR: which one tracks the clarity of eyes and mouth better."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from denoise_core.evaluate import Denoiser, score_images
from denoise_core.holdout import Holdout
from denoise_core.metrics import WINDOW, ssim_map
from results.analysis.common import Finding, canonical, default_conditions, runs, save_figure
from results.analysis.face_map import face_regions
from results.analysis.measures import nanmean, spearman


EXPECT_SSIM = "SSIM tracks perceived quality better than PSNR"


def ssim_vs_psnr(denoisers: Mapping[str, Denoiser], holdout: Holdout, conditions: Sequence[str] | None = None, out_dir: Path | None = None) -> Finding:
    """Whether SSIM or PSNR tracks the clarity of eyes and mouth better: Spearman correlation, per image,
    of each with the eye+mouth error (negative MSE over those regions), across images, conditions and
    denoisers, and within a condition (averaged over conditions).

    The reference is itself a squared error, which favours PSNR; so the table also correlates both with a
    structural reference (local SSIM averaged over the eyes and mouth). Checks "SSIM tracks perceived
    quality better than PSNR": supported when |corr(SSIM)| > |corr(PSNR)| with the eye+mouth error, pooled.
    """
    conditions = canonical(conditions or default_conditions(holdout))
    mask = face_regions().mask("eyes", "mouth")
    rows, cols = np.nonzero(mask)
    reach = WINDOW // 2  # local SSIM only where it is needed: the features' bounding box, plus the window's reach
    box = (slice(rows.min() - reach, rows.max() + reach + 1), slice(cols.min() - reach, cols.max() + reach + 1))
    inner = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    columns: dict[str, list[np.ndarray]] = {key: [] for key in ("denoiser", "condition", "ssim", "psnr", "eye_mouth_mse", "eye_mouth_ssim")}
    for run in runs(denoisers, holdout, conditions):
        psnr, ssim = score_images(run.restored, run.clean)
        local = ssim_map(torch.from_numpy(run.restored[:, box[0], box[1]]), torch.from_numpy(run.clean[:, box[0], box[1]]))[:, 0].numpy()
        columns["denoiser"].append(np.full(len(psnr), run.name, dtype=object))
        columns["condition"].append(np.full(len(psnr), run.condition, dtype=object))
        columns["ssim"].append(ssim)
        columns["psnr"].append(psnr)
        columns["eye_mouth_mse"].append(((run.restored.astype(np.float64) - run.clean) ** 2)[:, mask].mean(axis=1))
        columns["eye_mouth_ssim"].append(local[:, inner].mean(axis=1))
    images = pd.DataFrame({key: np.concatenate(values) for key, values in columns.items()})
    images["clarity"] = -images.eye_mouth_mse
    rows = []
    for scope in ("all", *denoisers):
        part = images if scope == "all" else images[images.denoiser == scope]
        for reference, column in (("eye_mouth_mse", "clarity"), ("eye_mouth_ssim", "eye_mouth_ssim")):
            within = {metric: [spearman(group[metric], group[column]) for _, group in part.groupby("condition")] for metric in ("ssim", "psnr")}
            rows.append({"scope": scope, "reference": reference, "images": len(part),
                         "spearman_ssim": spearman(part.ssim, part[column]), "spearman_psnr": spearman(part.psnr, part[column]),
                         "within_ssim": nanmean(within["ssim"]), "within_psnr": nanmean(within["psnr"])})
    table = pd.DataFrame(rows)
    pooled = table[(table.scope == "all") & (table.reference == "eye_mouth_mse")].iloc[0]
    supported = None if math.isnan(pooled.spearman_ssim) or math.isnan(pooled.spearman_psnr) else bool(abs(pooled.spearman_ssim) > abs(pooled.spearman_psnr))
    winner = {True: "SSIM tracks it better", False: "PSNR tracks it at least as well", None: "neither can be ranked"}[supported]
    sentence = (f"Over {len(images)} denoised faces ({len(denoisers)} denoisers, {len(conditions)} conditions), the Spearman correlation with "
                f"eye-and-mouth clarity (negative MSE there) is {pooled.spearman_ssim:.2f} for SSIM and {pooled.spearman_psnr:.2f} for PSNR "
                f"({pooled.within_ssim:.2f} vs {pooled.within_psnr:.2f} within a condition), so {winner}.")
    figure = _plot_ssim_vs_psnr(images, out_dir) if out_dir is not None else None
    return Finding("ssim_vs_psnr", "SSIM vs PSNR on eyes and mouth", sentence, EXPECT_SSIM, supported, table, figure)


def _plot_ssim_vs_psnr(images: pd.DataFrame, out_dir: Path) -> str:
    fig = Figure(figsize=(8, 3.4))
    left, right = fig.subplots(1, 2)
    finite = images[np.isfinite(images.psnr)]
    for axis, metric in ((left, "ssim"), (right, "psnr")):
        axis.scatter(finite[metric], finite.clarity, s=3, alpha=0.4, rasterized=True)
        axis.set_xlabel(metric.upper())
        axis.set_ylabel("eye+mouth clarity (-MSE)")
    return save_figure(fig, out_dir, "ssim_vs_psnr.png")

