"""Over-smoothing by impulse density: how much of the clean faces' fine detail a denoiser keeps, on hair and
wrinkles too, as the noise grows."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from denoise_core.evaluate import Denoiser
from denoise_core.holdout import Holdout
from results.analysis.common import Finding, canonical, floats, impulse_conditions, impulse_density, primary_name, runs, save_figure
from results.analysis.face_map import SIDE, WRINKLES, face_regions
from results.analysis.measures import laplacian, spearman


DECREASING_RHO = -0.5  # Spearman correlation with density that counts as "decreases with density"
EXPECT_SMOOTHING = "over-smoothing of hair and wrinkles at high noise"


def oversmoothing(denoisers: Mapping[str, Denoiser], holdout: Holdout, conditions: Sequence[str] | None = None, out_dir: Path | None = None) -> Finding:
    """High-frequency energy of the denoised faces relative to the clean ones, by impulse density.

    The energy is that of the discrete Laplacian (reflect borders), summed over faces; a ratio below 1 is
    detail smoothed away, above 1 noise left in. Also per part: hair (border/hair region) and wrinkles
    (forehead and cheeks). Checks "over-smoothing of hair and wrinkles at high noise": supported when the
    first denoiser's ratio is below 1 at the highest density and falls with density (Spearman correlation
    at most ``DECREASING_RHO``; with two densities, lower at the higher one).
    """
    conditions = canonical(conditions or impulse_conditions(holdout.conditions) or holdout.conditions)
    conditions = impulse_conditions(conditions) + tuple(c for c in conditions if math.isnan(impulse_density(c)))
    regions = face_regions()
    weights = np.vstack([np.ones((1, SIDE * SIDE)), regions.mask("border/hair").reshape(1, -1), regions.mask(*WRINKLES).reshape(1, -1)])
    clean_energy = weights @ (laplacian(floats(holdout.clean)) ** 2).reshape(len(holdout.clean), -1).sum(axis=0)
    rows = []
    for run in runs(denoisers, holdout, conditions):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = weights @ (laplacian(run.restored) ** 2).reshape(len(run.clean), -1).sum(axis=0) / clean_energy
            noisy_ratio = float((laplacian(run.noisy) ** 2).sum() / clean_energy[0])
        rows.append({"denoiser": run.name, "condition": run.condition, "density": run.density, "hf_ratio": float(ratios[0]),
                     "hf_ratio_hair": float(ratios[1]), "hf_ratio_wrinkles": float(ratios[2]), "noisy_hf_ratio": noisy_ratio})
    table = pd.DataFrame(rows)
    primary = primary_name(denoisers)
    trend = table[(table.denoiser == primary) & table.density.notna()].sort_values("density")
    if len(trend) == 0:
        part = table[table.denoiser == primary].iloc[0]
        sentence = (f"At {part.condition}, {primary} keeps {part.hf_ratio:.2f} of the clean faces' high-frequency (Laplacian) energy; "
                    "no pure impulse density was analysed.")
        return Finding("oversmoothing", "Over-smoothing by density", sentence, EXPECT_SMOOTHING, None, table, None)
    first, last = trend.iloc[0], trend.iloc[-1]
    rho = spearman(trend.density, trend.hf_ratio)
    if len(trend) >= 3:
        decreasing: bool | None = bool(rho <= DECREASING_RHO)
    else:
        decreasing = bool(last.hf_ratio < first.hf_ratio) if len(trend) == 2 else None
    supported = None if decreasing is None else bool(last.hf_ratio < 1.0 and decreasing)
    trend_text = f"a Spearman correlation with density of {rho:+.2f}" if not math.isnan(rho) else "no trend"
    sentence = (f"{primary} keeps {last.hf_ratio:.2f} of the clean faces' high-frequency (Laplacian) energy at impulse density {last.density:g} "
                f"(hair {last.hf_ratio_hair:.2f}, forehead and cheeks {last.hf_ratio_wrinkles:.2f}) against {first.hf_ratio:.2f} at {first.density:g}, "
                f"{trend_text} over {len(trend)} densities.")
    figure = _plot_oversmoothing(table, out_dir) if out_dir is not None and table.density.notna().any() else None
    return Finding("oversmoothing", "Over-smoothing by density", sentence, EXPECT_SMOOTHING, supported, table, figure)


def _plot_oversmoothing(table: pd.DataFrame, out_dir: Path) -> str:
    fig = Figure(figsize=(5.5, 3.6))
    axis = fig.subplots()
    for name, part in table[table.density.notna()].groupby("denoiser", sort=False):
        part = part.sort_values("density")
        axis.plot(part.density, part.hf_ratio, "o-", label=name)
    axis.axhline(1.0, color="gray", linewidth=0.8, linestyle=":")
    axis.set_xlabel("impulse density")
    axis.set_ylabel("Laplacian energy, denoised / clean")
    axis.set_yscale("log")
    axis.legend(fontsize=7)
    return save_figure(fig, out_dir, "oversmoothing.png")

