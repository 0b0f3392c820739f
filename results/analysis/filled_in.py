"""Filled-in artefacts at dense impulse noise: outputs that revert to a generic face, against a search's trials' bottleneck
size and early stopping, and under control against the width and epochs experiments' levels."""

from __future__ import annotations

import math
from dataclasses import dataclass
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
from results.analysis.evidence import NO_INTERVAL, Evidence, measured, overall, verdict_word
from results.analysis.measures import mean_psnr, smooth, spearman_rows
from results.statistics import bootstrap_statistic, paired_difference


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
    """"Filled-in" artefacts at dense impulse noise (density 0.7-0.9) over a search's trials: outputs that revert to a generic face.

    Measured by ``template_pull`` toward the mean face: ``template`` (for instance the training mean face)
    or, when None, the mean of the other hold-out faces (leave-one-out, so a face does not pull toward
    itself); ``lowfreq_share`` of the error is reported beside it. Each trial is a (trial-table row,
    denoiser) pair; rows give ``bottleneck_key``, ``status`` ("completed", "stopped by ASHA"),
    ``epochs_run``, ``best_epoch`` and ``trial_id``. Checks "filled-in artefacts when under-parameterised
    or stopped early" where the trials allow: the Spearman correlation between bottleneck size and pull is below 0,
    and trials stopped by ASHA pull more than completed ones, each with a bootstrap interval over faces (the trials
    are fixed). A search's trials differ in more than one setting; ``filled_in_experiments`` tests this under control.
    """
    if not trial_models:
        raise InputError("no trial models to analyse")
    conditions = dense_conditions(holdout, conditions)
    clean = floats(holdout.clean)
    template = leave_one_out(clean) if template is None else template
    rows, pulls = [], []
    for index, (row, denoiser) in enumerate(trial_models):
        face_pulls = []
        for condition in conditions:
            restored = restore(denoiser, floats(holdout.noisy_for(condition)))
            face_pulls.append(template_pull(restored, clean, template))
            rows.append({"trial_id": str(row.get("trial_id", f"trial {index}")), "bottleneck_size": float(row.get(bottleneck_key, math.nan) or math.nan),
                         "status": str(row.get("status", "")), "epochs_run": row.get("epochs_run"), "best_epoch": row.get("best_epoch"),
                         "stopped_early": row.get("status") == STOPPED_BY_ASHA, "condition": condition, "density": impulse_density(condition),
                         "pull": float(np.nanmean(face_pulls[-1])), "lowfreq_share": lowfreq_share(restored, clean), "psnr": mean_psnr(restored, clean)})
        pulls.append(np.mean(face_pulls, axis=0))
    table = pd.DataFrame(rows)
    trials = table.groupby("trial_id", sort=False).agg(pull=("pull", "mean"), lowfreq_share=("lowfreq_share", "mean"), bottleneck_size=("bottleneck_size", "first"),
                                                      stopped_early=("stopped_early", "first"), status=("status", "first"))
    evidence = search_evidence(trials, np.stack(pulls))
    clauses = [f"{e.claim} is {e.number()} ({verdict_word(e.supported, True)})" for e in evidence]
    densities = sorted({f"{d:g}" for d in table.density.dropna()})
    where = f"impulse densities {densities[0]}-{densities[-1]}" if densities else ", ".join(conditions)
    sentence = (f"At {where}, the {len(trials)} trials' outputs sit on average {trials.pull.mean():.0%} of the way from the true face to the mean face "
                f"(low-frequency share of their error {trials.lowfreq_share.mean():.0%})"
                + (f", and with 95% intervals over faces {' while '.join(clauses)}." if clauses else ", and the trials do not vary in bottleneck size or early stopping."))
    figure = _plot_filled_in(trials, out_dir) if out_dir is not None else None
    return Finding("filled_in", "Filled-in artefacts at dense impulse noise", sentence, EXPECT_FILLED_IN, overall(evidence), table, figure, tuple(evidence))


def dense_conditions(holdout: Holdout, conditions: Sequence[str] | None) -> tuple[str, ...]:
    """The conditions asked for, else the hold-out's impulse densities in ``DENSE_IMPULSES``, else its densest three."""
    dense = tuple(c for c in impulse_conditions(holdout.conditions) if DENSE_IMPULSES[0] <= impulse_density(c) <= DENSE_IMPULSES[1])
    return canonical(conditions or dense or impulse_conditions(holdout.conditions)[-3:] or holdout.conditions)


def leave_one_out(clean: np.ndarray) -> np.ndarray:
    """For each face, the mean of the other faces: the template it could be pulled toward, never itself."""
    return (clean.astype(np.float64).sum(axis=0) - clean) / max(len(clean) - 1, 1)


def search_evidence(trials: pd.DataFrame, pulls: np.ndarray) -> list[Evidence]:
    """From each trial's per-face pull (trials, faces): bottleneck size against pull, and stopped against completed trials."""
    evidence = []
    sized = np.flatnonzero(trials.bottleneck_size.notna().to_numpy())
    keep = np.isfinite(pulls).all(axis=0)
    pulls = pulls[:, keep]
    if trials.bottleneck_size.iloc[sized].nunique() >= 2:
        sizes = trials.bottleneck_size.to_numpy()[sized]
        counts = lambda face_index: np.stack([np.bincount(row, minlength=pulls.shape[1]) for row in face_index])  # noqa: E731 - draws as face weights

        def statistic(_: np.ndarray, face_index: np.ndarray) -> np.ndarray:
            means = counts(face_index) @ pulls[sized].T / face_index.shape[1]  # (draws, trials)
            return spearman_rows(np.broadcast_to(sizes, means.shape), means)

        interval = bootstrap_statistic(statistic, 1, pulls.shape[1])
        if math.isfinite(interval.estimate):  # NaN: every trial pulls alike, so nothing varies with bottleneck size
            evidence.append(Evidence(f"the Spearman correlation between bottleneck size and pull over {len(sized)} trials", interval, 0.0, False,
                                     faces=pulls.shape[1]))
    stopped, completed = trials.stopped_early.to_numpy(dtype=bool), (trials.status == COMPLETED).to_numpy()
    if stopped.any() and completed.any():
        evidence.append(measured(pulls[stopped].mean(axis=0) - pulls[completed].mean(axis=0), "the pull of trials stopped by ASHA minus completed ones",
                                 0.0, True, between=("stopped trials", "completed trials")))
    return evidence


@dataclass(frozen=True)
class LevelModels:
    """A controlled experiment's trained models for the filled-in test, in the order of its file: the first level is the one
    expected to fill in most (the narrowest model, the fewest epochs), the last the one expected to fill in least."""

    label: str  # how a level is named: "width" in "width 8"
    reason: str  # what the first level is, in the expectation's words: "under-parameterised", "stopped early"
    models: Mapping[str, Mapping[int, Denoiser]]  # level -> training seed -> denoiser
    headline: bool = True  # whether the finding's verdict rests on it


def filled_in_experiments(experiments: Sequence[LevelModels], holdout: Holdout, conditions: Sequence[str] | None = None,
                          template: np.ndarray | None = None) -> Finding:
    """"Filled-in" artefacts at dense impulse noise under control: each experiment's first level against its last.

    Every level of an experiment trained from the same seeds on the same budget, so seed s of the first level and seed s
    of the last are paired, and so are the faces: the difference in ``template_pull`` (averaged over the dense
    conditions) carries the experiments' interval, a bootstrap over seeds and faces joined with a t-interval over seeds.
    Checks "filled-in artefacts when under-parameterised or stopped early": the first level pulls more than the last in
    every headline experiment. The table has each level's mean pull over seeds and faces, with its interval.
    """
    if not experiments or not any(level for experiment in experiments for level in experiment.models.values()):
        raise InputError("no experiment models to analyse: give the width and epochs experiments' directories")
    conditions = dense_conditions(holdout, conditions)
    clean = floats(holdout.clean)
    template = leave_one_out(clean) if template is None else template
    rows, evidence = [], []
    for experiment in experiments:
        pulls = {level: {seed: np.mean([template_pull(restore(denoiser, floats(holdout.noisy_for(c))), clean, template) for c in conditions], axis=0)
                         for seed, denoiser in seeds.items()} for level, seeds in experiment.models.items() if seeds}
        for level, by_seed in pulls.items():
            mean = measured(np.stack(list(by_seed.values())), "pull", 0.0, True)
            rows.append({"experiment": experiment.label, "level": level, "seeds": len(by_seed), "faces": mean.faces, "pull": mean.interval.estimate,
                         "pull_low": mean.interval.low, "pull_high": mean.interval.high})
        evidence.append(level_contrast(experiment, pulls))
    table = pd.DataFrame(rows)
    densities = "-".join(f"{impulse_density(c):g}" for c in (conditions[0], conditions[-1]))
    clauses = [f"for {e.between[0]} than {e.between[1]} by {e.number()} ({e.size()}: {verdict_word(e.supported, True)})" for e in evidence]
    sentence = (f"At impulse densities {densities}, the outputs' pull toward the mean face (0: none, 1: the mean face itself) is higher, "
                f"with 95% intervals over seeds and faces, {', and '.join(clauses)}.")
    return Finding("filled_in", "Filled-in artefacts at dense impulse noise", sentence, EXPECT_FILLED_IN, overall(evidence), table, None, tuple(evidence))


def level_contrast(experiment: LevelModels, pulls: Mapping[str, Mapping[int, np.ndarray]]) -> Evidence:
    """The first level's pull minus the last's, paired by seed and face, with the interval a verdict uses."""
    first, last = list(pulls)[0], list(pulls)[-1]
    seeds = sorted(set(pulls[first]) & set(pulls[last]))
    a, b = (np.stack([pulls[level][seed] for seed in seeds]) if seeds else np.empty((0, 0)) for level in (first, last))
    keep = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0) if seeds else np.zeros(0, dtype=bool)
    interval = paired_difference(a[:, keep], b[:, keep])[0] if keep.any() else NO_INTERVAL
    names = (f"{experiment.label} {first}", f"{experiment.label} {last}")
    return Evidence(f"pull toward the mean face of {names[0]} ({experiment.reason}) minus {names[1]}", interval, 0.0, True, faces=int(keep.sum()),
                    between=names, headline=experiment.headline)


def _plot_filled_in(trials: pd.DataFrame, out_dir: Path) -> str:
    fig = Figure(figsize=(5.5, 3.6))
    axis = fig.subplots()
    for status, part in trials.groupby("status", sort=True):
        axis.scatter(part.bottleneck_size, part.pull, label=status or "unknown", s=25)
    axis.set_xlabel("bottleneck size")
    axis.set_ylabel("pull toward the mean face")
    axis.legend(fontsize=7)
    return save_figure(fig, out_dir, "filled_in.png")

