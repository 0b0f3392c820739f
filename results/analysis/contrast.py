"""High- against low-contrast pixels: are edges reliable while cheeks and forehead are blurred?"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from denoise_core.evaluate import Denoiser
from denoise_core.holdout import Holdout
from results.analysis.common import Finding, canonical, default_conditions, floats, headline_condition, primary_name, runs, save_figure
from results.analysis.measures import db, majority, smooth, sobel_magnitude


EDGE_KEPT = 0.8  # share of the edges' fine detail kept for edges to count as reliable
EXPECT_CONTRAST = "edges reliable, cheeks and forehead blurred"


def contrast_split(denoisers: Mapping[str, Denoiser], holdout: Holdout, conditions: Sequence[str] | None = None, out_dir: Path | None = None) -> Finding:
    """Error and kept detail on high-contrast pixels (top 25% of the clean face's Sobel magnitude: edges,
    jawline, brows) against low-contrast ones (bottom 50%: cheeks, forehead).

    MSE cannot show blur in low-contrast areas: blurring a nearly flat patch changes it little, so its error
    stays small even when all its fine texture is gone, while a slightly misplaced edge costs a lot. So the
    table also has ``detail_kept``: the regression gain of the denoised face's fine detail (face minus its
    Gaussian blur, sigma 1 px) on the clean face's, over the class's pixels; 1 is detail kept, 0 detail
    blurred away, and noise left in the output does not raise it, being uncorrelated with the clean detail.
    Checks "edges reliable, cheeks and forehead blurred": supported when, at most conditions, the first
    denoiser keeps at least ``EDGE_KEPT`` of the edges' detail and less of the low-contrast pixels' detail.
    """
    conditions = canonical(conditions or default_conditions(holdout))
    clean = floats(holdout.clean)
    magnitude = sobel_magnitude(clean).reshape(len(clean), -1)
    high = magnitude >= np.quantile(magnitude, 0.75, axis=1, keepdims=True)
    low = (magnitude <= np.quantile(magnitude, 0.5, axis=1, keepdims=True)) & ~high
    clean_detail = (clean - smooth(clean, 1.0)).reshape(len(clean), -1)
    rows = []
    for run in runs(denoisers, holdout, conditions):
        error = ((run.restored.astype(np.float64) - clean) ** 2).reshape(len(clean), -1)
        noisy_error = ((run.noisy.astype(np.float64) - clean) ** 2).reshape(len(clean), -1)
        detail = (run.restored - smooth(run.restored, 1.0)).reshape(len(clean), -1)
        for pixels, mask in (("high", high), ("low", low)):
            energy = float((clean_detail[mask] ** 2).sum())
            mse = float(error[mask].mean())
            rows.append({"denoiser": run.name, "condition": run.condition, "pixels": pixels, "share": float(mask.mean()), "mse": mse, "psnr": float(db(mse)),
                         "noisy_psnr": float(db(noisy_error[mask].mean())),
                         "detail_kept": float((detail[mask] * clean_detail[mask]).sum() / energy) if energy > 0 else math.nan})
    table = pd.DataFrame(rows)
    primary = primary_name(denoisers)
    wide = table[table.denoiser == primary].pivot(index="condition", columns="pixels", values=["mse", "detail_kept"])
    flags = [bool(wide.at[c, ("detail_kept", "high")] >= EDGE_KEPT and wide.at[c, ("detail_kept", "low")] < wide.at[c, ("detail_kept", "high")]) for c in conditions]
    headline = headline_condition(conditions)
    mse_high, mse_low = wide.at[headline, ("mse", "high")], wide.at[headline, ("mse", "low")]
    kept_high, kept_low = wide.at[headline, ("detail_kept", "high")], wide.at[headline, ("detail_kept", "low")]
    ratio = f"{mse_high / mse_low:.1f}x" if mse_low > 0 else "the same as"
    harder = "edges" if mse_high > mse_low else "flat areas"
    sentence = (f"At {headline}, {primary}'s MSE on high-contrast pixels (edges, brows, jawline) is {ratio} that on low-contrast ones "
                f"({mse_high:.5f} vs {mse_low:.5f}), so by error alone {harder} are the harder part, yet it keeps {kept_high:.0%} of the edges' "
                f"fine detail against {kept_low:.0%} on cheeks and forehead; edges kept (at least {EDGE_KEPT:.0%}) and flat areas blurred more "
                f"at {sum(flags)} of {len(flags)} conditions.")
    figure = _plot_contrast(table, primary, out_dir) if out_dir is not None else None
    return Finding("contrast", "High- vs low-contrast pixels", sentence, EXPECT_CONTRAST, majority(flags), table, figure)


def _plot_contrast(table: pd.DataFrame, primary: str, out_dir: Path) -> str:
    fig = Figure(figsize=(8, 3.4))
    left, right = fig.subplots(1, 2)
    part = table[table.denoiser == primary]
    conditions = list(dict.fromkeys(part.condition))
    for pixels, style in (("high", "o-"), ("low", "s--")):
        chosen = part[part.pixels == pixels].set_index("condition").loc[conditions]
        left.plot(range(len(conditions)), chosen.psnr, style, label=f"{pixels}-contrast")
        right.plot(range(len(conditions)), chosen.detail_kept, style, label=f"{pixels}-contrast")
    for axis, title in ((left, "PSNR (dB)"), (right, "share of fine detail kept")):
        axis.set_xticks(range(len(conditions)), conditions, rotation=45, ha="right", fontsize=7)
        axis.set_title(f"{title}: {primary}", fontsize=9)
        axis.legend(fontsize=7)
    return save_figure(fig, out_dir, "contrast.png")

