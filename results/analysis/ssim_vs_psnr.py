"""SSIM against PSNR: which one tracks the clarity of eyes and mouth better."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from denoise_core.evaluate import Denoiser, score_images
from denoise_core.holdout import Holdout
from denoise_core.metrics import WINDOW, ssim_map
from results.analysis.common import Finding, canonical, default_conditions, primary_name, runs, save_figure, with_replicates
from results.analysis.evidence import Evidence, overall
from results.analysis.face_map import face_regions
from results.analysis.measures import nanmean, spearman, spearman_rows
from results.statistics import bootstrap_statistic


EXPECT_SSIM = "SSIM tracks perceived quality better than PSNR"


def ssim_vs_psnr(denoisers: Mapping[str, Denoiser], holdout: Holdout, conditions: Sequence[str] | None = None, out_dir: Path | None = None,
                 replicates: Sequence[Denoiser] = ()) -> Finding:
    """Whether SSIM or PSNR tracks the clarity of eyes and mouth better: Spearman correlation, per image,
    of each with the eye+mouth error (negative MSE over those regions), across images, conditions and
    denoisers, and within a condition (averaged over conditions).

    The reference is itself a squared error, which favours PSNR; so the table also correlates both with a
    structural reference (local SSIM averaged over the eyes and mouth), which favours SSIM. Checks "SSIM tracks
    perceived quality better than PSNR" on the first denoiser (with ``replicates``, its other seeds): the
    within-condition correlation with eye+mouth clarity minus PSNR's, averaged over conditions, is above 0, with a
    bootstrap interval over seeds and faces (``within_gap``); the structural reference's gap is in the evidence too.
    """
    conditions = canonical(conditions or default_conditions(holdout))
    mask = face_regions().mask("eyes", "mouth")
    rows, cols = np.nonzero(mask)
    reach = WINDOW // 2  # local SSIM only where it is needed: the features' bounding box, plus the window's reach
    box = (slice(rows.min() - reach, rows.max() + reach + 1), slice(cols.min() - reach, cols.max() + reach + 1))
    inner = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    columns: dict[str, list[np.ndarray]] = {key: [] for key in ("denoiser", "condition", "seed", "face", *MEASURES)}
    for run in runs(denoisers, holdout, conditions):
        outputs = with_replicates(run, replicates) if run.name == primary_name(denoisers) else run.restored[None]
        for seed, restored in enumerate(outputs):
            psnr, ssim = score_images(restored, run.clean)
            local = ssim_map(torch.from_numpy(restored[:, box[0], box[1]]), torch.from_numpy(run.clean[:, box[0], box[1]]))[:, 0].numpy()
            values = {"denoiser": np.full(len(psnr), run.name, dtype=object), "condition": np.full(len(psnr), run.condition, dtype=object),
                      "seed": np.full(len(psnr), seed), "face": np.arange(len(psnr)), "ssim": ssim, "psnr": psnr,
                      "eye_mouth_mse": ((restored.astype(np.float64) - run.clean) ** 2)[:, mask].mean(axis=1), "eye_mouth_ssim": local[:, inner].mean(axis=1)}
            for key, value in values.items():
                columns[key].append(value)
    images = pd.DataFrame({key: np.concatenate(values) for key, values in columns.items()})
    images["clarity"] = -images.eye_mouth_mse
    table = correlation_table(images[images.seed == 0], denoisers)
    primary = images[images.denoiser == primary_name(denoisers)]
    evidence = [within_gap(primary, "clarity", "eye-and-mouth clarity (negative MSE there)", headline=True),
                within_gap(primary, "eye_mouth_ssim", "eye-and-mouth local SSIM", headline=False)]
    gap = evidence[0]
    pooled = table[(table.scope == "all") & (table.reference == "eye_mouth_mse")].iloc[0]
    winner = {True: "SSIM tracks it better", False: "PSNR tracks it better", None: "neither tracks it detectably better"}[gap.supported]
    sentence = (f"Over {(images.seed == 0).sum()} denoised faces ({len(denoisers)} denoiser(s), {len(conditions)} condition(s)), the Spearman correlation with "
                f"eye-and-mouth clarity (negative MSE there) is {pooled.spearman_ssim:.2f} for SSIM and {pooled.spearman_psnr:.2f} for PSNR, and within a "
                f"condition SSIM's minus PSNR's is {gap.number()} for {primary_name(denoisers)} ({gap.size()}, 95% interval), so {winner}.")
    figure = _plot_ssim_vs_psnr(images[images.seed == 0], out_dir) if out_dir is not None else None
    return Finding("ssim_vs_psnr", "SSIM vs PSNR on eyes and mouth", sentence, EXPECT_SSIM, overall(evidence), table, figure, tuple(evidence))


MEASURES = ("ssim", "psnr", "eye_mouth_mse", "eye_mouth_ssim")


def correlation_table(images: pd.DataFrame, denoisers: Mapping[str, Denoiser]) -> pd.DataFrame:
    """Each metric's Spearman correlation with each reference, pooled and within a condition, over all denoisers and each one."""
    rows = []
    for scope in ("all", *denoisers):
        part = images if scope == "all" else images[images.denoiser == scope]
        for reference, column in (("eye_mouth_mse", "clarity"), ("eye_mouth_ssim", "eye_mouth_ssim")):
            within = {metric: [spearman(group[metric], group[column]) for _, group in part.groupby("condition")] for metric in ("ssim", "psnr")}
            rows.append({"scope": scope, "reference": reference, "images": len(part),
                         "spearman_ssim": spearman(part.ssim, part[column]), "spearman_psnr": spearman(part.psnr, part[column]),
                         "within_ssim": nanmean(within["ssim"]), "within_psnr": nanmean(within["psnr"])})
    return pd.DataFrame(rows)


def within_gap(images: pd.DataFrame, reference: str, name: str, headline: bool) -> Evidence:
    """SSIM's within-condition Spearman correlation with ``reference`` minus PSNR's, averaged over conditions, resampling seeds and faces."""
    grids = {metric: np.stack([part.pivot(index="seed", columns="face", values=metric).to_numpy() for _, part in images.groupby("condition", sort=False)])
             for metric in ("ssim", "psnr", reference)}  # (conditions, seeds, faces)
    conditions, seeds, faces = grids["ssim"].shape

    def statistic(seed_index: np.ndarray, face_index: np.ndarray) -> np.ndarray:
        gaps = []
        for c in range(conditions):  # one condition at a time: a draw's images are (draws, seeds x faces)
            picked = {m: grid[c][seed_index[:, :, None], face_index[:, None, :]].reshape(len(seed_index), -1) for m, grid in grids.items()}
            gaps.append(spearman_rows(picked["ssim"], picked[reference]) - spearman_rows(picked["psnr"], picked[reference]))
        gaps = np.stack(gaps)
        counted = np.isfinite(gaps).sum(axis=0)
        return np.where(counted > 0, np.nansum(gaps, axis=0) / np.maximum(counted, 1), np.nan)

    interval = bootstrap_statistic(statistic, seeds, faces)
    return Evidence(f"SSIM's minus PSNR's within-condition rank correlation with {name}", interval, 0.0, True, faces=faces,
                    between=("SSIM", "PSNR"), headline=headline)


def _plot_ssim_vs_psnr(images: pd.DataFrame, out_dir: Path) -> str:
    fig = Figure(figsize=(8, 3.4))
    left, right = fig.subplots(1, 2)
    finite = images[np.isfinite(images.psnr)]
    for axis, metric in ((left, "ssim"), (right, "psnr")):
        axis.scatter(finite[metric], finite.clarity, s=3, alpha=0.4, rasterized=True)
        axis.set_xlabel(metric.upper())
        axis.set_ylabel("eye+mouth clarity (-MSE)")
    return save_figure(fig, out_dir, "ssim_vs_psnr.png")

