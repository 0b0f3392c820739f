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
from results.analysis.common import Finding, canonical, default_conditions, floats, headline_condition, primary_name, runs, save_figure, with_replicates
from results.analysis.evidence import Evidence, measured, overall, verdict_word
from results.analysis.measures import db, smooth, sobel_magnitude


EDGE_KEPT = 0.8  # share of the edges' fine detail kept for edges to count as reliable
EXPECT_CONTRAST = "edges reliable, cheeks and forehead blurred"


def contrast_split(denoisers: Mapping[str, Denoiser], holdout: Holdout, conditions: Sequence[str] | None = None, out_dir: Path | None = None,
                   replicates: Sequence[Denoiser] = ()) -> Finding:
    """Error and kept detail on high-contrast pixels (top 25% of the clean face's Sobel magnitude: edges,
    jawline, brows) against low-contrast ones (bottom 50%: cheeks, forehead).

    MSE cannot show blur in low-contrast areas: blurring a nearly flat patch changes it little, so its error
    stays small even when all its fine texture is gone, while a slightly misplaced edge costs a lot. So the
    table also has ``detail_kept``: the regression gain of the denoised face's fine detail (face minus its
    Gaussian blur, sigma 1 px) on the clean face's, over the class's pixels; 1 is detail kept, 0 detail
    blurred away, and noise left in the output does not raise it, being uncorrelated with the clean detail.
    Checks "edges reliable, cheeks and forehead blurred" per face on the first denoiser (with ``replicates``, its
    other seeds) at every condition, the verdict at the headline one: the edges keep more than ``EDGE_KEPT`` of their
    detail, and more than the low-contrast pixels keep.
    """
    conditions = canonical(conditions or default_conditions(holdout))
    clean = floats(holdout.clean)
    magnitude = sobel_magnitude(clean).reshape(len(clean), -1)
    classes = {"high": magnitude >= np.quantile(magnitude, 0.75, axis=1, keepdims=True)}
    classes["low"] = (magnitude <= np.quantile(magnitude, 0.5, axis=1, keepdims=True)) & ~classes["high"]
    clean_detail = (clean - smooth(clean, 1.0)).reshape(len(clean), -1)
    primary, headline = primary_name(denoisers), headline_condition(conditions)
    rows, evidence = [], []
    for run in runs(denoisers, holdout, conditions):
        error = ((run.restored.astype(np.float64) - clean) ** 2).reshape(len(clean), -1)
        noisy_error = ((run.noisy.astype(np.float64) - clean) ** 2).reshape(len(clean), -1)
        detail = (run.restored - smooth(run.restored, 1.0)).reshape(len(clean), -1)
        for pixels, mask in classes.items():
            energy = float((clean_detail[mask] ** 2).sum())
            mse = float(error[mask].mean())
            rows.append({"denoiser": run.name, "condition": run.condition, "pixels": pixels, "share": float(mask.mean()), "mse": mse, "psnr": float(db(mse)),
                         "noisy_psnr": float(db(noisy_error[mask].mean())),
                         "detail_kept": float((detail[mask] * clean_detail[mask]).sum() / energy) if energy > 0 else math.nan})
        if run.name == primary:
            evidence += contrast_evidence(with_replicates(run, replicates), clean_detail, classes, run.condition, run.condition == headline)
    table = pd.DataFrame(rows)
    wide = table[table.denoiser == primary].pivot(index="condition", columns="pixels", values=["mse", "detail_kept"])
    mse_high, mse_low = wide.at[headline, ("mse", "high")], wide.at[headline, ("mse", "low")]
    edges, difference = [e for e in evidence if e.headline]
    ratio = f"{mse_high / mse_low:.1f}x" if mse_low > 0 else "the same as"
    harder = "edges" if mse_high > mse_low else "flat areas"
    sentence = (f"At {headline}, {primary}'s MSE on high-contrast pixels (edges, brows, jawline) is {ratio} that on low-contrast ones "
                f"({mse_high:.5f} vs {mse_low:.5f}), so by error alone {harder} are the harder part, and per face with 95% intervals ({edges.size()}) "
                f"it keeps {edges.number()} of the edges' fine detail ({verdict_word(edges.supported, True)} against at least {EDGE_KEPT:g}) and "
                f"{difference.number()} more there than on cheeks and forehead ({verdict_word(difference.supported, True)}).")
    figure = _plot_contrast(table, primary, out_dir) if out_dir is not None else None
    return Finding("contrast", "High- vs low-contrast pixels", sentence, EXPECT_CONTRAST, overall(evidence), table, figure, tuple(evidence))


def contrast_evidence(outputs: np.ndarray, clean_detail: np.ndarray, classes: Mapping[str, np.ndarray], condition: str, headline: bool) -> list[Evidence]:
    """Per face (and seed): the share of the clean fine detail kept on high-contrast pixels, and high minus low."""
    detail = np.stack([(output - smooth(output, 1.0)).reshape(len(clean_detail), -1) for output in outputs])
    with np.errstate(divide="ignore", invalid="ignore"):
        kept = {pixels: (detail * clean_detail * mask).sum(axis=-1) / ((clean_detail**2) * mask).sum(axis=-1) for pixels, mask in classes.items()}
    return [measured(kept["high"], "fine detail kept on high-contrast pixels", EDGE_KEPT, True, condition=condition, headline=headline),
            measured(kept["high"] - kept["low"], "fine detail kept on high- minus low-contrast pixels", 0.0, True, condition=condition,
                     between=("high-contrast pixels", "low-contrast pixels"), headline=headline)]


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

