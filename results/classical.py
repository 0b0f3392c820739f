"""The classical baselines on the curves: each filter's parameter tuned on validation faces, then scored on
the test hold-out, condition by condition.

Tuning is per condition (the validation faces corrupted the same way, with another seed), so every filter is
shown at its best setting for that noise level: a generous comparison for the classical side. Non-local means
and BM3D cost milliseconds to a second per 48x48 face, so they run on the first ``slow_faces`` hold-out faces
(and tune on at most ``SLOW_TUNE_FACES`` validation faces); BM3D also only at ``bm3d_conditions``. Scores are
cached on disk (``ScoreCache``), so only the first report on a machine pays for them.

The report's reference filter (``best_baseline``, and per condition ``reference_baselines``) is chosen on the same
validation faces and noise, never on the test faces whose scores it then shows.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch

from denoise_core.baselines import BASELINES, TUNABLE, tune_parameter
from denoise_core.data import to_float
from denoise_core.holdout import DEFAULT_SEED, Holdout, make_holdout
from denoise_core.metrics import psnr
from results.curves import COLUMNS, SCORES, Denoiser, canonical, curve_row, noise_axis, score
from results.options import BM3D_CONDITIONS
from results.score_cache import ScoreCache

log = logging.getLogger(__name__)

SLOW = ("nlm", "bm3d")
SLOW_TUNE_FACES = 8
VAL_SEED = DEFAULT_SEED + 1  # validation noise for tuning: not the test hold-out's noise
GRIDS: dict[str, tuple[float, ...]] = {
    "gaussian_blur": (0.5, 0.8, 1.2, 1.8, 2.7),  # sigma, pixels
    "tv": (0.03, 0.06, 0.12, 0.25, 0.5),  # Chambolle weight
    "nlm": (0.04, 0.08, 0.15, 0.3),  # h, 0..1 scale
    "bm3d": (0.04, 0.1, 0.2, 0.4),  # noise sigma, 0..1 scale
}


@dataclass(frozen=True)
class BaselinePlan:
    """How much of the hold-out each baseline sees."""

    faces: int | None = None  # hold-out faces for the fast filters (None: all)
    slow_faces: int = 200  # hold-out faces for NLM and BM3D
    tune_faces: int = 64  # validation faces for tuning the fast filters
    bm3d_conditions: tuple[str, ...] = BM3D_CONDITIONS
    names: tuple[str, ...] = tuple(BASELINES)


def baseline_faces(name: str, plan: BaselinePlan) -> int | None:
    if name not in SLOW:
        return plan.faces
    return plan.slow_faces if plan.faces is None else min(plan.slow_faces, plan.faces)


def baseline_conditions(name: str, conditions: tuple[str, ...], plan: BaselinePlan) -> tuple[str, ...]:
    if name != "bm3d":
        return conditions
    wanted = {canonical(c) for c in plan.bm3d_conditions}
    return tuple(c for c in conditions if c in wanted)


def tuning_faces(name: str, plan: BaselinePlan) -> int:
    faces = baseline_faces(name, plan)
    limit = min(plan.tune_faces, SLOW_TUNE_FACES) if name in SLOW else plan.tune_faces
    return max(1, min(limit, faces) if faces else limit)


def tune(name: str, condition: str, val: np.ndarray, faces: int, cache: ScoreCache) -> tuple[float, float]:
    """The grid value with the best mean validation PSNR at this condition, and that PSNR."""
    subset = val[:faces]
    key = {"kind": "tune", "name": name, "condition": condition, "grid": list(GRIDS[name]), "seed": VAL_SEED,
           "val": hashlib.sha256(subset.tobytes()).hexdigest()}
    cached = cache.get(key)
    if cached is not None:
        return cached["value"], cached["val_psnr"]
    noisy = make_holdout(subset, (condition,), VAL_SEED).noisy[0]
    value, table = tune_parameter(name, to_float(noisy), to_float(subset), list(GRIDS[name]))
    val_psnr = dict(table)[value]
    cache.put(key, {"value": value, "val_psnr": val_psnr})
    return value, val_psnr


def baseline_denoiser(name: str, value: float | None = None) -> Denoiser:
    return partial(BASELINES[name], **{TUNABLE[name]: value}) if value is not None else BASELINES[name]


def slab_hash(holdout: Holdout, condition: str, faces: int | None) -> str:
    digest = hashlib.sha256(holdout.clean[:faces].tobytes())
    digest.update(holdout.noisy_for(condition)[:faces].tobytes())
    return digest.hexdigest()


def baseline_curves(holdout: Holdout, val: np.ndarray, conditions: tuple[str, ...], plan: BaselinePlan, cache: ScoreCache) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curve rows for every baseline and the tuning table (baseline, condition, parameter, value, val_psnr)."""
    rows, tuning = [], []
    for name in plan.names:
        started = time.perf_counter()
        faces = baseline_faces(name, plan)
        for condition in baseline_conditions(name, conditions, plan):
            value, parameter = None, ""
            if name in TUNABLE:
                value, val_psnr = tune(name, condition, val, tuning_faces(name, plan), cache)
                parameter = f"{TUNABLE[name]}={value:g}"
                tuning.append({"baseline": name, "condition": condition, "parameter": TUNABLE[name], "value": value,
                               "val_psnr": val_psnr, "val_faces": tuning_faces(name, plan)})
            key = {"kind": "score", "name": name, "value": value, "condition": condition, "faces": faces,
                   "slab": slab_hash(holdout, condition, faces)}
            scores = cache.get(key)
            if scores is None or not set(SCORES) <= set(scores):
                scores = score(baseline_denoiser(name, value), holdout, condition, faces)
                cache.put(key, scores)
            rows.append(curve_row(name, "classical", condition, scores, parameter))
        log.info("baseline %s: %d conditions on %s faces in %.1f s", name, len(baseline_conditions(name, conditions, plan)),
                 faces or "all", time.perf_counter() - started)
    return pd.DataFrame(rows, columns=list(COLUMNS)), pd.DataFrame(tuning)


def validation_scores(val: np.ndarray, conditions: tuple[str, ...], plan: BaselinePlan, tuning: pd.DataFrame, cache: ScoreCache) -> pd.DataFrame:
    """Per-face validation PSNR of every baseline at its tuned setting for each condition (baseline, condition, faces,
    face_psnr): the validation faces it was tuned on, with the same condition's validation noise (``VAL_SEED``)."""
    rows = []
    for name in plan.names:
        faces = tuning_faces(name, plan)
        subset = val[:faces]
        for condition in baseline_conditions(name, conditions, plan):
            own = tuning[(tuning["baseline"] == name) & (tuning["condition"] == condition)] if len(tuning) else tuning
            value = float(own["value"].iloc[0]) if len(own) else None
            key = {"kind": "validate", "name": name, "value": value, "condition": condition, "seed": VAL_SEED,
                   "val": hashlib.sha256(subset.tobytes()).hexdigest()}
            cached = cache.get(key)
            if cached is None:
                noisy = make_holdout(subset, (condition,), VAL_SEED).noisy[0]
                restored = baseline_denoiser(name, value)(to_float(noisy))
                cached = {"face_psnr": psnr(torch.from_numpy(restored), torch.from_numpy(to_float(subset))).tolist()}
                cache.put(key, cached)
            rows.append({"baseline": name, "condition": condition, "faces": len(subset), "face_psnr": cached["face_psnr"]})
    return pd.DataFrame(rows, columns=["baseline", "condition", "faces", "face_psnr"])


def validation_means(validation: pd.DataFrame) -> pd.DataFrame:
    """Mean validation PSNR per (baseline, condition), every baseline of a condition on the same faces: the first
    ``faces`` validation faces that all of them were scored on (NLM and BM3D see fewer)."""
    rows = []
    for condition, group in validation.groupby("condition", sort=False):
        faces = int(group["faces"].min())
        rows += [{"baseline": row.baseline, "condition": condition, "val_psnr": float(np.mean(row.face_psnr[:faces])), "val_faces": faces}
                 for row in group.itertuples()]
    return pd.DataFrame(rows, columns=["baseline", "condition", "val_psnr", "val_faces"])


def best_baseline(validation: pd.DataFrame) -> str:
    """The classical filter with the highest mean validation PSNR over the S&P conditions, among those validated on all
    of them: chosen on validation faces, so that its test scores are an honest reference."""
    means = validation_means(validation)
    impulse = means[means["condition"].map(lambda c: noise_axis(c).kind == "sp")]
    counts = impulse.groupby("baseline")["condition"].nunique()
    complete = counts[counts == counts.max()].index
    return str(impulse[impulse["baseline"].isin(complete)].groupby("baseline")["val_psnr"].mean().idxmax())


def reference_baselines(validation: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per condition, the filter with the best validation PSNR, beside its test scores from ``curves``."""
    means = validation_means(validation)
    chosen = means.loc[means.groupby("condition", sort=False)["val_psnr"].idxmax()]
    test = curves.loc[curves["family"] == "classical", ["model", "condition", "psnr", "ssim", "ssim_gauss", "faces"]]
    merged = chosen.merge(test.rename(columns={"model": "baseline", "faces": "test_faces"}), on=["baseline", "condition"], how="left")
    return merged.rename(columns={"psnr": "test_psnr", "ssim": "test_ssim", "ssim_gauss": "test_ssim_gauss"}).reset_index(drop=True)


def fixed_denoiser(name: str, tuning: pd.DataFrame, density: float = 0.5) -> tuple[Denoiser, str]:
    """The baseline as one denoiser for every input: a tuned filter keeps the value tuned at the S&P density
    nearest ``density`` (used where the condition is not known, e.g. by the error analysis)."""
    if name not in TUNABLE or tuning.empty:
        return baseline_denoiser(name), ""
    own = tuning[tuning["baseline"] == name]
    levels = own["condition"].map(lambda c: noise_axis(c).level if noise_axis(c).kind == "sp" else np.inf)
    if not np.isfinite(levels).any():
        return baseline_denoiser(name), ""
    chosen = own.loc[(levels - density).abs().idxmin()]
    return baseline_denoiser(name, float(chosen["value"])), f"{chosen['parameter']}={chosen['value']:g} (tuned at {chosen['condition']})"


def denoiser_at(name: str, tuning: pd.DataFrame, condition: str) -> Denoiser:
    """The baseline with the parameter tuned for ``condition`` (the S&P-0.5 setting where none was tuned)."""
    if name not in TUNABLE:
        return BASELINES[name]
    own = tuning[(tuning["baseline"] == name) & (tuning["condition"] == canonical(condition))] if len(tuning) else tuning
    if len(own) == 0:
        return fixed_denoiser(name, tuning)[0]
    return baseline_denoiser(name, float(own["value"].iloc[0]))
