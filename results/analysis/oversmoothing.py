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
from results.analysis.common import Finding, canonical, floats, impulse_conditions, impulse_density, primary_name, runs, save_figure, with_replicates
from results.analysis.evidence import Evidence, measured, overall, verdict_word
from results.analysis.face_map import FEATURES, SIDE, WRINKLES, face_regions
from results.analysis.measures import laplacian


EXPECT_SMOOTHING = "over-smoothing of hair and wrinkles at high noise"
KEPT = 1.0  # a share of the clean faces' high-frequency energy below this is detail smoothed away


def oversmoothing(denoisers: Mapping[str, Denoiser], holdout: Holdout, conditions: Sequence[str] | None = None, out_dir: Path | None = None,
                  replicates: Sequence[Denoiser] = ()) -> Finding:
    """High-frequency energy of the denoised faces relative to the clean ones, by impulse density and face part.

    The energy is that of the discrete Laplacian (reflect borders); a ratio below 1 is detail smoothed away, above 1
    noise left in. The table pools it over faces, for the whole face, hair (border/hair region), wrinkles (forehead and
    cheeks) and features (eyes, brows, nose, mouth). The evidence is per face, on the first denoiser (with
    ``replicates``, its other seeds), at every density and part; checks "over-smoothing of hair and wrinkles at high
    noise" at the highest density: the whole face keeps less than ``KEPT`` of its energy, less than at the lowest
    density, and hair, forehead and cheeks keep less than the features (lost first).
    """
    conditions = canonical(conditions or impulse_conditions(holdout.conditions) or holdout.conditions)
    conditions = impulse_conditions(conditions) + tuple(c for c in conditions if math.isnan(impulse_density(c)))
    regions = face_regions()
    parts = {"face": np.ones((SIDE, SIDE), dtype=bool), "hair": regions.mask("border/hair"), "wrinkles": regions.mask(*WRINKLES),
             "features": regions.mask(*FEATURES), "texture": regions.mask("border/hair", *WRINKLES)}
    clean = floats(holdout.clean)
    clean_energy = {part: face_energy(clean, mask) for part, mask in parts.items()}
    rows, kept = [], {}
    for run in runs(denoisers, holdout, conditions):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = {part: face_energy(run.restored, mask).sum() / clean_energy[part].sum() for part, mask in parts.items() if part != "texture"}
            noisy_ratio = float(face_energy(run.noisy, parts["face"]).sum() / clean_energy["face"].sum())
        rows.append({"denoiser": run.name, "condition": run.condition, "density": run.density, "hf_ratio": float(ratios["face"]),
                     "hf_ratio_hair": float(ratios["hair"]), "hf_ratio_wrinkles": float(ratios["wrinkles"]), "hf_ratio_features": float(ratios["features"]),
                     "noisy_hf_ratio": noisy_ratio})
        if run.name == primary_name(denoisers) and not math.isnan(run.density):
            outputs = with_replicates(run, replicates)
            kept[run.condition] = {part: face_ratio(np.stack([face_energy(o, mask) for o in outputs]), clean_energy[part]) for part, mask in parts.items()}
    table = pd.DataFrame(rows)
    evidence = smoothing_evidence(kept)
    figure = _plot_oversmoothing(table, out_dir) if out_dir is not None and table.density.notna().any() else None
    return Finding("oversmoothing", "Over-smoothing by density", smoothing_sentence(table, primary_name(denoisers), evidence), EXPECT_SMOOTHING,
                   overall(evidence), table, figure, tuple(evidence))


def face_energy(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Laplacian energy of each face (N, 48, 48) over a (48, 48) mask, shape (N,)."""
    return (laplacian(images) ** 2)[:, mask].sum(axis=1)


def face_ratio(energy: np.ndarray, clean_energy: np.ndarray) -> np.ndarray:
    """Per-face share of the clean face's energy kept; NaN (left out of the evidence) where the clean face has none there."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(clean_energy > 1e-9, energy / clean_energy, np.nan)


def smoothing_evidence(kept: Mapping[str, Mapping[str, np.ndarray]]) -> list[Evidence]:
    """Per density and part, the share kept; at the highest density the three headline tests of the docstring."""
    if not kept:
        return []
    names = {"face": "the whole face", "hair": "hair (border)", "wrinkles": "forehead and cheeks", "features": "eyes, brows, nose and mouth"}
    densest, lightest = list(kept)[-1], list(kept)[0]
    evidence = [measured(shares[part], f"high-frequency energy kept by {name}", KEPT, False, condition=condition, headline=False)
                for condition, shares in kept.items() for part, name in names.items() if (condition, part) != (densest, "face")]
    evidence.append(measured(kept[densest]["face"], "high-frequency energy kept by the whole face", KEPT, False, condition=densest))
    if densest != lightest:
        evidence.append(measured(kept[densest]["face"] - kept[lightest]["face"], f"energy kept at {densest} minus at {lightest}", 0.0, False,
                                 between=(densest, lightest)))
    evidence.append(measured(kept[densest]["texture"] - kept[densest]["features"], "energy kept by hair, forehead and cheeks minus by the features",
                             0.0, False, condition=densest, between=("hair, forehead and cheeks", "the features")))
    return evidence


def smoothing_sentence(table: pd.DataFrame, primary: str, evidence: Sequence[Evidence]) -> str:
    trend = table[(table.denoiser == primary) & table.density.notna()].sort_values("density")
    if len(trend) == 0:
        part = table[table.denoiser == primary].iloc[0]
        return (f"At {part.condition}, {primary} keeps {part.hf_ratio:.2f} of the clean faces' high-frequency (Laplacian) energy; "
                "no pure impulse density was analysed, so the expectation is not tested.")
    first, last = trend.iloc[0], trend.iloc[-1]
    tests = [e for e in evidence if e.headline]
    clauses = ", ".join(f"{e.claim} {e.number()} ({verdict_word(e.supported, True)})" for e in tests)
    return (f"{primary} keeps {last.hf_ratio:.2f} of the clean faces' high-frequency (Laplacian) energy at impulse density {last.density:g} "
            f"(hair {last.hf_ratio_hair:.2f}, forehead and cheeks {last.hf_ratio_wrinkles:.2f}, features {last.hf_ratio_features:.2f}) against "
            f"{first.hf_ratio:.2f} at {first.density:g}, and per face with 95% intervals ({tests[0].size()}): {clauses}.")


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

