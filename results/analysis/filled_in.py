"""Filled-in artefacts at dense impulse noise: outputs that revert to a generic face, against each trial's
bottleneck size and early stopping."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from denoise_core.errors import InputError
from denoise_core.evaluate import Denoiser
from denoise_core.holdout import Holdout
from denoise_core.study_files import COMPLETED, STOPPED_BY_ASHA
from results.analysis.common import Finding, canonical, floats, impulse_conditions, impulse_density, restore, save_figure
from results.analysis.measures import mean_psnr, smooth, spearman


DENSE_IMPULSES = (0.7, 0.9)
EXPECT_FILLED_IN = "filled-in artefacts when under-parameterised or stopped early"


def template_pull(restored: np.ndarray, clean: np.ndarray, template: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """How far each output moved from its true face toward the template (mean face), shape (N,).

    On coarse structure only (Gaussian blur of ``sigma`` px, every image's mean removed: brightness is not the
    artefact, painted-in structure is), the error ``restored - clean`` is projected on ``template - clean``:
    0 is no pull (noise averages out), 1 an output that is the template itself. The blur keeps plain
    over-smoothing from reading as a pull: on FER2013 test faces a Gaussian blur of 2 px reads 0.06 here
    (0.27 without it), while an output made 30% of the mean face reads 0.30 either way.
    ``template`` is (48, 48) or one per face (N, 48, 48).
    """
    def coarse(images: np.ndarray) -> np.ndarray:
        images = smooth(np.broadcast_to(images, clean.shape), sigma) if sigma > 0 else np.broadcast_to(images, clean.shape).astype(np.float64)
        return images - images.mean(axis=(1, 2), keepdims=True)

    c = coarse(clean)
    direction = coarse(template) - c
    length = (direction**2).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(length > 0, ((coarse(restored) - c) * direction).sum(axis=(1, 2)) / length, np.nan)


def lowfreq_share(restored: np.ndarray, clean: np.ndarray, sigma: float = 2.0) -> float:
    """Share of the error energy that survives a Gaussian blur of ``sigma`` px: near 0 for leftover impulses
    (white), large for blob-like, filled-in errors."""
    error = restored.astype(np.float64) - clean
    total = float((error**2).sum())
    return float((smooth(error, sigma) ** 2).sum() / total) if total > 0 else math.nan


def filled_in_artefacts(trial_models: Sequence[tuple[Mapping, Denoiser]], holdout: Holdout, conditions: Sequence[str] | None = None,
                        template: np.ndarray | None = None, out_dir: Path | None = None, bottleneck_key: str = "param_model.bottleneck_size") -> Finding:
    """"Filled-in" artefacts at dense impulse noise (density 0.7-0.9): outputs that revert to a generic face.

    Measured by ``template_pull`` toward the mean face: ``template`` (for instance the training mean face)
    or, when None, the mean of the other hold-out faces (leave-one-out, so a face does not pull toward
    itself); ``lowfreq_share`` of the error is reported beside it. Each trial is a (trial-table row,
    denoiser) pair; rows give ``bottleneck_key``, ``status`` ("completed", "stopped by ASHA"),
    ``epochs_run``, ``best_epoch`` and ``trial_id``. Checks "filled-in artefacts when under-parameterised
    or stopped early": supported when the pull falls with bottleneck size (negative Spearman correlation
    over trials) and trials stopped by ASHA pull more than completed ones, each checked when the trials
    allow it (None when neither can be).
    """
    if not trial_models:
        raise InputError("no trial models to analyse")
    dense = tuple(c for c in impulse_conditions(holdout.conditions) if DENSE_IMPULSES[0] <= impulse_density(c) <= DENSE_IMPULSES[1])
    conditions = canonical(conditions or dense or impulse_conditions(holdout.conditions)[-3:] or holdout.conditions)
    clean = floats(holdout.clean)
    if template is None:
        template = (clean.astype(np.float64).sum(axis=0) - clean) / max(len(clean) - 1, 1)
    rows = []
    for index, (row, denoiser) in enumerate(trial_models):
        for condition in conditions:
            restored = restore(denoiser, floats(holdout.noisy_for(condition)))
            rows.append({"trial_id": str(row.get("trial_id", f"trial {index}")), "bottleneck_size": float(row.get(bottleneck_key, math.nan) or math.nan),
                         "status": str(row.get("status", "")), "epochs_run": row.get("epochs_run"), "best_epoch": row.get("best_epoch"),
                         "stopped_early": row.get("status") == STOPPED_BY_ASHA, "condition": condition, "density": impulse_density(condition),
                         "pull": float(np.nanmean(template_pull(restored, clean, template))), "lowfreq_share": lowfreq_share(restored, clean),
                         "psnr": mean_psnr(restored, clean)})
    table = pd.DataFrame(rows)
    trials = table.groupby("trial_id", sort=False).agg(pull=("pull", "mean"), lowfreq_share=("lowfreq_share", "mean"), bottleneck_size=("bottleneck_size", "first"),
                                                      stopped_early=("stopped_early", "first"), status=("status", "first"))
    sized = trials[trials.bottleneck_size.notna()]
    rho = spearman(sized.bottleneck_size, sized.pull) if sized.bottleneck_size.nunique() >= 2 else math.nan
    stopped, completed = trials[trials.stopped_early].pull, trials[trials.status == COMPLETED].pull
    evidence, clauses = [], []
    if not math.isnan(rho):
        evidence.append(rho < 0)
        clauses.append(f"the Spearman correlation between bottleneck size and pull is {rho:+.2f} over {len(sized)} trials")
    if len(stopped) and len(completed):
        evidence.append(stopped.mean() > completed.mean())
        clauses.append(f"trials stopped by ASHA pull {stopped.mean():.0%} against {completed.mean():.0%} for completed ones")
    densities = sorted({f"{d:g}" for d in table.density.dropna()})
    where = f"impulse densities {densities[0]}-{densities[-1]}" if densities else ", ".join(conditions)
    sentence = (f"At {where}, the {len(trials)} trials' outputs sit on average {trials.pull.mean():.0%} of the way from the true face to the mean face "
                f"(low-frequency share of their error {trials.lowfreq_share.mean():.0%})"
                + (f", and {' while '.join(clauses)}." if clauses else ", and the trials do not vary in bottleneck size or early stopping."))
    figure = _plot_filled_in(trials, out_dir) if out_dir is not None else None
    return Finding("filled_in", "Filled-in artefacts at dense impulse noise", sentence, EXPECT_FILLED_IN, all(evidence) if evidence else None, table, figure)


def _plot_filled_in(trials: pd.DataFrame, out_dir: Path) -> str:
    fig = Figure(figsize=(5.5, 3.6))
    axis = fig.subplots()
    for status, part in trials.groupby("status", sort=True):
        axis.scatter(part.bottleneck_size, part.pull, label=status or "unknown", s=25)
    axis.set_xlabel("bottleneck size")
    axis.set_ylabel("pull toward the mean face")
    axis.legend(fontsize=7)
    return save_figure(fig, out_dir, "filled_in.png")

