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
from results.analysis.common import (Finding, Run, canonical, default_conditions, floats, headline_condition, impulse_conditions, primary_name,
                                     runs, save_figure, with_replicates)
from results.analysis.evidence import Evidence, measured, overall, verdict_word
from results.analysis.face_map import FEATURES, SIDE, RegionMap, face_regions
from results.analysis.measures import db, face_db, face_mse, pooled_mse


REMOVED_GAIN_DB = 3.0  # every region at least this much better than the noisy input: impulses removed
FEATURE_GAP_DB = 2.0  # features at most this much below the whole face: features kept
EXPECT_REGIONS = "impulses removed while facial features kept"


def region_errors(denoisers: Mapping[str, Denoiser], holdout: Holdout, conditions: Sequence[str] | None = None, out_dir: Path | None = None,
                  replicates: Sequence[Denoiser] = ()) -> Finding:
    """MSE and PSNR per face region, denoiser and condition, beside the noisy input's.

    Checks "impulses removed while facial features kept" at each pure impulse condition, on the first denoiser (with
    ``replicates``, its other seeds): impulses removed when the per-face PSNR gain over the noisy input in the region
    that gains least is above ``REMOVED_GAIN_DB``; features kept when the per-face PSNR of eyes, brows, nose and mouth
    minus that of the whole face is above -``FEATURE_GAP_DB``. Each is a mean with its interval (``evidence``); the
    verdict rests on the impulse density closest to 0.5.
    """
    conditions = canonical(conditions or default_conditions(holdout))
    regions = face_regions()
    groups = (*regions.names, "features", "all")
    weights = np.vstack([regions.weights(), regions.mask(*FEATURES).reshape(1, -1), np.ones((1, SIDE * SIDE))])
    rows, outputs = [], runs(denoisers, holdout, conditions)
    for run in outputs:
        mse, noisy_mse = pooled_mse(run.restored, run.clean, weights), pooled_mse(run.noisy, run.clean, weights)
        for group, pixels, m, nm in zip(groups, weights.sum(axis=1), mse, noisy_mse):
            rows.append({"denoiser": run.name, "condition": run.condition, "density": run.density, "region": group, "pixels": int(pixels),
                         "mse": float(m), "psnr": float(db(m)), "noisy_psnr": float(db(nm)), "gain_db": float(db(m) - db(nm))})
    table = pd.DataFrame(rows)
    primary, headline = primary_name(denoisers), headline_condition(conditions)
    impulses = impulse_conditions(conditions)
    evidence = [item for run in outputs if run.name == primary and run.condition in impulses
                for item in region_evidence(run, with_replicates(run, replicates), table, regions, run.condition == headline)]
    shown = [e for e in evidence if e.headline]
    if shown:
        removed, kept = shown
        weakest = weakest_region(table, primary, headline, regions)
        sentence = (f"At {headline}, {primary} gains {removed.number()} over the noisy input in its least-gaining region (the {weakest}) "
                    f"and its eyes, brows, nose and mouth are {kept.number()} from the whole face's PSNR, per face with 95% intervals "
                    f"({removed.size()}), so impulses removed: {verdict_word(removed.supported, True)}, features kept: {verdict_word(kept.supported, True)}.")
    else:
        part = table[(table.denoiser == primary) & (table.condition == headline)].set_index("region")
        sentence = (f"At {headline}, {primary}'s eyes, brows, nose and mouth reach {part.at['features', 'psnr']:.1f} dB against "
                    f"{part.at['all', 'psnr']:.1f} dB for the whole face; no pure impulse condition was analysed, so the expectation is not tested.")
    figure = _plot_regions(table, regions, holdout, primary, out_dir) if out_dir is not None else None
    return Finding("regions", "Error by face region", sentence, EXPECT_REGIONS, overall(evidence), table, figure, tuple(evidence))


def region_evidence(run: Run, outputs: np.ndarray, table: pd.DataFrame, regions: RegionMap, headline: bool) -> list[Evidence]:
    """At one condition: the per-face gain over the noisy input in the region that gains least (pooled), and features minus whole face."""
    weakest = weakest_region(table, run.name, run.condition, regions)
    weak, features, whole = regions.mask(weakest), regions.mask(*FEATURES), np.ones((SIDE, SIDE), dtype=bool)
    gain = face_db(face_mse(outputs, run.clean, weak)) - face_db(face_mse(run.noisy, run.clean, weak))
    gap = face_db(face_mse(outputs, run.clean, features)) - face_db(face_mse(outputs, run.clean, whole))
    return [measured(gain, f"PSNR gain over the noisy input in the least-gaining region, the {weakest}", REMOVED_GAIN_DB, True, unit="dB",
                     condition=run.condition, headline=headline),
            measured(gap, "eyes, brows, nose and mouth minus the whole face (PSNR)", -FEATURE_GAP_DB, True, unit="dB", condition=run.condition,
                     between=("the features", "the whole face"), headline=headline)]


def weakest_region(table: pd.DataFrame, name: str, condition: str, regions: RegionMap) -> str:
    """The region where the denoiser's pooled PSNR gain over the noisy input is smallest at the condition."""
    part = table[(table.denoiser == name) & (table.condition == condition) & table.region.isin(regions.names)]
    return str(part.set_index("region").gain_db.idxmin())


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

