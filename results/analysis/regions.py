"""Error by face region: does a denoiser remove impulses everywhere while it keeps eyes, brows, nose and mouth?"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import ndimage

from denoise_core.evaluate import Denoiser
from denoise_core.holdout import Holdout
from results.analysis.common import (Finding, canonical, default_conditions, floats, headline_condition, impulse_conditions, primary_name,
                                     runs, save_figure)
from results.analysis.face_map import FEATURES, SIDE, RegionMap, face_regions
from results.analysis.measures import db, majority, pooled_mse


REMOVED_GAIN_DB = 3.0  # every region at least this much better than the noisy input: impulses removed
FEATURE_GAP_DB = 2.0  # features at most this much below the whole face: features kept
EXPECT_REGIONS = "impulses removed while facial features kept"


def region_errors(denoisers: Mapping[str, Denoiser], holdout: Holdout, conditions: Sequence[str] | None = None, out_dir: Path | None = None) -> Finding:
    """MSE and PSNR per face region, denoiser and condition, beside the noisy input's.

    Checks "impulses removed while facial features kept": at a pure impulse condition the first denoiser
    removes impulses when every region is at least ``REMOVED_GAIN_DB`` above the noisy input, and keeps the
    features when eyes, brows, nose and mouth together are at most ``FEATURE_GAP_DB`` below the whole face;
    supported when both hold at most of the impulse densities analysed.
    """
    conditions = canonical(conditions or default_conditions(holdout))
    regions = face_regions()
    groups = (*regions.names, "features", "all")
    weights = np.vstack([regions.weights(), regions.mask(*FEATURES).reshape(1, -1), np.ones((1, SIDE * SIDE))])
    rows = []
    for run in runs(denoisers, holdout, conditions):
        mse, noisy_mse = pooled_mse(run.restored, run.clean, weights), pooled_mse(run.noisy, run.clean, weights)
        for group, pixels, m, nm in zip(groups, weights.sum(axis=1), mse, noisy_mse):
            rows.append({"denoiser": run.name, "condition": run.condition, "density": run.density, "region": group, "pixels": int(pixels),
                         "mse": float(m), "psnr": float(db(m)), "noisy_psnr": float(db(nm)), "gain_db": float(db(m) - db(nm))})
    table = pd.DataFrame(rows)
    primary = primary_name(denoisers)

    def verdict(condition: str) -> tuple[float, str, float, float, bool]:
        part = table[(table.denoiser == primary) & (table.condition == condition)].set_index("region")
        gains = part.loc[list(regions.names), "gain_db"]
        with np.errstate(divide="ignore", invalid="ignore"):
            gap = float(np.nan_to_num(db(part.at["features", "mse"]) - db(part.at["all", "mse"]), nan=0.0))
        kept = bool(gains.min() >= REMOVED_GAIN_DB and gap >= -FEATURE_GAP_DB)
        return float(gains.min()), str(gains.idxmin()), float(part.at["features", "psnr"]), float(part.at["all", "psnr"]), kept

    headline = headline_condition(conditions)
    min_gain, weakest, features, whole, _ = verdict(headline)
    flags = [verdict(c)[-1] for c in impulse_conditions(conditions)]
    weakest_psnr = float(table[(table.denoiser == primary) & (table.condition == headline) & (table.region == weakest)].psnr.iloc[0])
    tally = f"both hold at {sum(flags)} of {len(flags)} impulse densities" if flags else "no pure impulse condition was analysed"
    sentence = (f"At {headline}, {primary} gains at least {min_gain:.1f} dB over the noisy input in every face region (least in the {weakest}, "
                f"at {weakest_psnr:.1f} dB), and its eyes, brows, nose and mouth reach {features:.1f} dB against {whole:.1f} dB for the whole face; {tally}.")
    figure = _plot_regions(table, regions, holdout, primary, out_dir) if out_dir is not None else None
    return Finding("regions", "Error by face region", sentence, EXPECT_REGIONS, majority(flags), table, figure)


def _plot_regions(table: pd.DataFrame, regions: RegionMap, holdout: Holdout, primary: str, out_dir: Path) -> str:
    fig = Figure(figsize=(10, 4.2))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    left.imshow(floats(holdout.clean).mean(axis=0), cmap="gray", vmin=0, vmax=1)
    left.contour(regions.labels, levels=np.arange(len(regions.names)) + 0.5, colors="red", linewidths=0.6)
    for index, name in enumerate(regions.names):
        depth = ndimage.distance_transform_edt(np.pad(regions.labels == index, 1))[1:-1, 1:-1]
        row, col = np.unravel_index(np.argmax(depth), depth.shape)  # the region's most interior pixel
        left.text(col, row, name, color="yellow", fontsize=6, ha="center", va="center")
    left.set_title("region map on the mean hold-out face", fontsize=9)
    left.axis("off")
    part = table[(table.denoiser == primary) & (table.region.isin(regions.names))]
    grid = part.pivot(index="region", columns="condition", values="psnr").reindex(index=list(regions.names), columns=list(dict.fromkeys(part.condition)))
    values = grid.to_numpy(dtype=np.float64)
    image = right.imshow(np.where(np.isfinite(values), values, np.nan), cmap="viridis", aspect="auto")
    right.set_xticks(range(grid.shape[1]), grid.columns, rotation=45, ha="right", fontsize=7)
    right.set_yticks(range(grid.shape[0]), grid.index, fontsize=7)
    right.set_title(f"PSNR (dB) per region: {primary}", fontsize=9)
    fig.colorbar(image, ax=right)
    return save_figure(fig, out_dir, "regions.png")

