"""Error analysis of denoisers on the noisy test hold-out: where on the face, on which pixels and on which
faces they fail, so a reader can see what a denoiser does to eyes, mouths and cheeks, not only its mean PSNR.

Each analysis returns one ``Finding``: a single sentence with its numbers, the table behind it, an optional
figure and, where the project's seed expected a finding, whether this data supports it (the criterion is in
each function's docstring). Denoisers come as ``{name: Denoiser}``; the first one is the one each sentence
speaks of (put the best learned model first), the tables hold them all. Errors are on the [0, 1] scale, and
the PSNR of a group of pixels comes from their MSE pooled over faces, so a group with no error reads inf.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import ndimage, stats

from denoise_core.errors import InputError
from denoise_core.evaluate import Denoiser, score_images
from denoise_core.holdout import Holdout
from denoise_core.metrics import WINDOW, psnr, ssim_map
from denoise_core.noise import NoiseSpec, corrupt, make_generator
from denoise_core.study_files import COMPLETED, STOPPED_BY_ASHA

SIDE = 48
REGION_NAMES = ("border/hair", "forehead", "cheeks", "jaw", "brows", "eyes", "nose", "mouth")
FEATURES = ("eyes", "brows", "nose", "mouth")
WRINKLES = ("forehead", "cheeks")
PREFERRED_CONDITIONS = ("sp:0.1", "sp:0.3", "sp:0.5", "sp:0.7", "sp:0.9", "gauss:25", "sp:0.2+gauss:20")
DENSE_IMPULSES = (0.7, 0.9)

# Thresholds that turn a tendency into supported / not supported; each function's docstring says how.
REMOVED_GAIN_DB = 3.0  # every region at least this much better than the noisy input: impulses removed
FEATURE_GAP_DB = 2.0  # features at most this much below the whole face: features kept
EDGE_KEPT = 0.8  # share of the edges' fine detail kept for edges to count as reliable
DECREASING_RHO = -0.5  # Spearman correlation with density that counts as "decreases with density"
MISALIGN_DB = 0.1  # PSNR lost to misalignment (beyond the input's own change) that counts as "harder"

EXPECT_REGIONS = "impulses removed while facial features kept"
EXPECT_CONTRAST = "edges reliable, cheeks and forehead blurred"
EXPECT_SMOOTHING = "over-smoothing of hair and wrinkles at high noise"
EXPECT_FILLED_IN = "filled-in artefacts when under-parameterised or stopped early"
EXPECT_MISALIGNMENT = "misaligned faces are harder"
EXPECT_SSIM = "SSIM tracks perceived quality better than PSNR"


@dataclass(frozen=True)
class Finding:
    key: str
    title: str
    sentence: str  # one sentence stating the finding with its numbers
    expectation: str | None  # the project's expected finding this checks, or None
    supported: bool | None  # whether the data supports the expectation (None: not applicable / not testable)
    table: pd.DataFrame  # the numbers behind it
    figure: str | None = None  # file name of a PNG in out_dir, or None


@dataclass(frozen=True)
class RegionMap:
    """One label per pixel of the aligned 48x48 face, indexing ``names``."""

    labels: np.ndarray  # int64 (48, 48)
    names: tuple[str, ...]

    def mask(self, *names: str) -> np.ndarray:
        """Boolean (48, 48) union of the named regions."""
        return np.isin(self.labels, [self.names.index(name) for name in names])

    def weights(self) -> np.ndarray:
        """(regions, 48*48) 0/1 rows, so per-region sums over a batch are one matrix product."""
        return (self.labels.reshape(1, -1) == np.arange(len(self.names))[:, None]).astype(np.float64)


@dataclass(frozen=True)
class Transform:
    """A small misalignment of a face: content moved by ``shift`` (rows, columns) px, turned by ``angle``
    degrees and enlarged by ``scale`` about the image centre."""

    kind: str  # "aligned", "shift", "rotation" or "scale"
    magnitude: float  # pixels, degrees, or |1 - scale factor|
    label: str
    shift: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0
    scale: float = 1.0


@dataclass(frozen=True)
class _Run:
    """One denoiser's output for one condition, with the inputs it came from."""

    name: str
    condition: str
    density: float
    clean: np.ndarray
    noisy: np.ndarray
    restored: np.ndarray


# --------------------------------------------------------------------------------------------- region map


def face_regions() -> RegionMap:
    """The region map of the aligned FER2013 face: border/hair, forehead, cheeks, jaw, brows, eyes, nose, mouth.

    FER2013 faces are detected, centred and scaled alike, so one fixed map fits most of them. It was drawn
    on the mean of all 35,875 FER2013 faces (and checked on random single faces): the eyes are the two dark
    blobs centred at row 17.5, columns 14.5 and 32.5 (mirror images about the centre column 23.5), the
    brows the band just above them (rows 10-14), the nose a bright ridge down the midline (columns 21-26,
    rows 15-23) widening to the nostrils (columns 19-28, rows 24-31), the mouth a dark band centred at row
    38 (columns 15-32), and the face an ellipse centred at (22, 23.5) with half-axes 27 rows x 17.5
    columns. Inside the face: forehead above row 11 (and the gap between the brows), jaw from row 33 down
    (chin and jawline), cheeks in between; outside it: border/hair. Parts are ellipses and bands painted
    in this order, later ones on top, so every pixel gets exactly one label, and the map is exactly
    left/right symmetric.
    """
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    centre = (SIDE - 1) / 2
    off_midline = np.abs(x - centre)

    def ellipse(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
        return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0

    def pair(cy: float, offset: float, ry: float, rx: float) -> np.ndarray:
        return ellipse(cy, centre - offset, ry, rx) | ellipse(cy, centre + offset, ry, rx)

    face = ellipse(22.0, centre, 27.0, 17.5)
    parts = [
        ("forehead", face & ((y < 11) | ((y < 15) & (off_midline <= 2.5)))),
        ("cheeks", face & (y >= 11) & (y < 33) & ~((y < 15) & (off_midline <= 2.5))),
        ("jaw", face & (y >= 33)),
        ("brows", pair(12.0, 9.0, 2.0, 6.5)),
        ("eyes", pair(17.5, 9.0, 3.0, 5.5)),
        ("nose", ((y >= 15) & (y < 24) & (off_midline <= 2.5)) | ((y >= 24) & (y <= 31) & (off_midline <= 5.0))),
        ("mouth", ellipse(38.0, centre, 3.0, 9.0)),
    ]
    labels = np.zeros((SIDE, SIDE), dtype=np.int64)  # 0: border/hair
    for name, mask in parts:
        labels[mask] = REGION_NAMES.index(name)
    return RegionMap(labels=labels, names=REGION_NAMES)


# ---------------------------------------------------------------------------------------------- helpers


def subset(holdout: Holdout, faces: int | None) -> Holdout:
    """The first ``faces`` faces of every slab, so a quick analysis sees the same faces at every condition."""
    if faces is None or faces >= len(holdout.clean):
        return holdout
    return dataclasses.replace(holdout, clean=holdout.clean[:faces], noisy=holdout.noisy[:, :faces], checksum=f"{holdout.checksum}[:{faces}]")


def memoised(denoiser: Denoiser) -> Denoiser:
    """The denoiser with its outputs remembered by input bytes, so analyses that share a noisy slab run it once
    (each call gets its own copy)."""
    cache: dict[tuple, np.ndarray] = {}

    def run(noisy: np.ndarray) -> np.ndarray:
        noisy = np.ascontiguousarray(noisy)
        key = (noisy.shape, str(noisy.dtype), hashlib.blake2b(noisy.tobytes(), digest_size=16).hexdigest())
        if key not in cache:
            out = np.array(denoiser(noisy), dtype=np.float32)
            out.setflags(write=False)
            cache[key] = out
        return cache[key].copy()

    return run


def impulse_density(condition: str) -> float:
    """The density of a pure, fixed-density salt-and-pepper condition; NaN for anything else."""
    spec = NoiseSpec.parse(condition)
    if spec.kind == "sp" and not spec.is_blind:
        return float(spec.density[0])
    return math.nan


def default_conditions(holdout: Holdout) -> tuple[str, ...]:
    """A spread of impulse, Gaussian and mixed conditions present in the hold-out (all of them if none is)."""
    present = [c for c in PREFERRED_CONDITIONS if c in holdout.conditions]
    return tuple(present) or holdout.conditions


def impulse_conditions(conditions: Sequence[str]) -> tuple[str, ...]:
    """The pure salt-and-pepper conditions, by increasing density."""
    return tuple(sorted((c for c in conditions if not math.isnan(impulse_density(c))), key=impulse_density))


def headline_condition(conditions: Sequence[str]) -> str:
    """The condition a sentence quotes: the impulse density closest to 0.5, else the first condition."""
    impulses = impulse_conditions(conditions)
    return min(impulses, key=lambda c: abs(impulse_density(c) - 0.5)) if impulses else conditions[0]


def _canonical(conditions: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(NoiseSpec.parse(c)) for c in conditions)


def _floats(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / np.float32(255.0)


def _restore(denoiser: Denoiser, noisy: np.ndarray) -> np.ndarray:
    restored = np.asarray(denoiser(noisy), dtype=np.float32)
    if restored.shape != noisy.shape:
        raise ValueError(f"a denoiser returned shape {restored.shape} for input {noisy.shape}")
    return restored


def _runs(denoisers: Mapping[str, Denoiser], holdout: Holdout, conditions: Sequence[str]) -> list[_Run]:
    if not denoisers:
        raise InputError("no denoisers to analyse")
    missing = [c for c in conditions if str(NoiseSpec.parse(c)) not in holdout.conditions]
    if missing:
        raise InputError(f"conditions {', '.join(missing)} are not in the hold-out, which has {', '.join(holdout.conditions)}")
    clean = _floats(holdout.clean)
    runs = []
    for condition in conditions:
        noisy = _floats(holdout.noisy_for(condition))
        for name, denoiser in denoisers.items():
            runs.append(_Run(name, condition, impulse_density(condition), clean, noisy, _restore(denoiser, noisy)))
    return runs


def _primary(denoisers: Mapping[str, Denoiser]) -> str:
    return next(iter(denoisers))


def _db(mse: np.ndarray | float) -> np.ndarray | float:
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / np.asarray(mse, dtype=np.float64))


def _mean_psnr(restored: np.ndarray, clean: np.ndarray) -> float:
    """Mean per-image PSNR, capped as every reported mean is (unlike the pooled group PSNRs above, which may read inf)."""
    return float(psnr(torch.from_numpy(np.ascontiguousarray(restored)), torch.from_numpy(np.ascontiguousarray(clean))).mean())


def _pooled_mse(pred: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """MSE of each pixel group (rows of ``weights``, (G, 48*48)) pooled over all faces, shape (G,)."""
    squared = (pred.astype(np.float64) - target.astype(np.float64)) ** 2
    return (weights @ squared.reshape(len(squared), -1).sum(axis=0)) / (len(squared) * weights.sum(axis=1))


def _filter(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """A 2-D correlation of every face, never across the batch axis (as ``ndimage.sobel`` on 3-D would)."""
    return ndimage.correlate(images.astype(np.float64), kernel[None], mode="reflect")


def _sobel_magnitude(images: np.ndarray) -> np.ndarray:
    kernel = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    return np.hypot(_filter(images, kernel), _filter(images, kernel.T))


def _laplacian(images: np.ndarray) -> np.ndarray:
    return _filter(images, np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]))


def _smooth(images: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(images.astype(np.float64), sigma=(0.0, sigma, sigma), mode="reflect")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation; NaN (not a warning) when either side is constant or has fewer than 2 values."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2:
        return math.nan
    ra, rb = stats.rankdata(a), stats.rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _nanmean(values: Sequence[float]) -> float:
    """Mean of the finite-or-inf values, NaN (not a warning) when there are none."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def _majority(flags: Sequence[bool]) -> bool | None:
    """A tendency holds when it holds at more than half of the conditions checked; None when none was."""
    return None if len(flags) == 0 else bool(sum(flags) * 2 > len(flags))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def _save(fig: Figure, out_dir: Path, name: str) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(Path(out_dir) / name, dpi=100)
    return name


# -------------------------------------------------------------------------------------------- analyses


def region_errors(denoisers: Mapping[str, Denoiser], holdout: Holdout, conditions: Sequence[str] | None = None, out_dir: Path | None = None) -> Finding:
    """MSE and PSNR per face region, denoiser and condition, beside the noisy input's.

    Checks "impulses removed while facial features kept": at a pure impulse condition the first denoiser
    removes impulses when every region is at least ``REMOVED_GAIN_DB`` above the noisy input, and keeps the
    features when eyes, brows, nose and mouth together are at most ``FEATURE_GAP_DB`` below the whole face;
    supported when both hold at most of the impulse densities analysed.
    """
    conditions = _canonical(conditions or default_conditions(holdout))
    regions = face_regions()
    groups = (*regions.names, "features", "all")
    weights = np.vstack([regions.weights(), regions.mask(*FEATURES).reshape(1, -1), np.ones((1, SIDE * SIDE))])
    rows = []
    for run in _runs(denoisers, holdout, conditions):
        mse, noisy_mse = _pooled_mse(run.restored, run.clean, weights), _pooled_mse(run.noisy, run.clean, weights)
        for group, pixels, m, nm in zip(groups, weights.sum(axis=1), mse, noisy_mse):
            rows.append({"denoiser": run.name, "condition": run.condition, "density": run.density, "region": group, "pixels": int(pixels),
                         "mse": float(m), "psnr": float(_db(m)), "noisy_psnr": float(_db(nm)), "gain_db": float(_db(m) - _db(nm))})
    table = pd.DataFrame(rows)
    primary = _primary(denoisers)

    def verdict(condition: str) -> tuple[float, str, float, float, bool]:
        part = table[(table.denoiser == primary) & (table.condition == condition)].set_index("region")
        gains = part.loc[list(regions.names), "gain_db"]
        with np.errstate(divide="ignore", invalid="ignore"):
            gap = float(np.nan_to_num(_db(part.at["features", "mse"]) - _db(part.at["all", "mse"]), nan=0.0))
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
    return Finding("regions", "Error by face region", sentence, EXPECT_REGIONS, _majority(flags), table, figure)


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
    conditions = _canonical(conditions or default_conditions(holdout))
    clean = _floats(holdout.clean)
    magnitude = _sobel_magnitude(clean).reshape(len(clean), -1)
    high = magnitude >= np.quantile(magnitude, 0.75, axis=1, keepdims=True)
    low = (magnitude <= np.quantile(magnitude, 0.5, axis=1, keepdims=True)) & ~high
    clean_detail = (clean - _smooth(clean, 1.0)).reshape(len(clean), -1)
    rows = []
    for run in _runs(denoisers, holdout, conditions):
        error = ((run.restored.astype(np.float64) - clean) ** 2).reshape(len(clean), -1)
        noisy_error = ((run.noisy.astype(np.float64) - clean) ** 2).reshape(len(clean), -1)
        detail = (run.restored - _smooth(run.restored, 1.0)).reshape(len(clean), -1)
        for pixels, mask in (("high", high), ("low", low)):
            energy = float((clean_detail[mask] ** 2).sum())
            mse = float(error[mask].mean())
            rows.append({"denoiser": run.name, "condition": run.condition, "pixels": pixels, "share": float(mask.mean()), "mse": mse, "psnr": float(_db(mse)),
                         "noisy_psnr": float(_db(noisy_error[mask].mean())),
                         "detail_kept": float((detail[mask] * clean_detail[mask]).sum() / energy) if energy > 0 else math.nan})
    table = pd.DataFrame(rows)
    primary = _primary(denoisers)
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
    return Finding("contrast", "High- vs low-contrast pixels", sentence, EXPECT_CONTRAST, _majority(flags), table, figure)


def oversmoothing(denoisers: Mapping[str, Denoiser], holdout: Holdout, conditions: Sequence[str] | None = None, out_dir: Path | None = None) -> Finding:
    """High-frequency energy of the denoised faces relative to the clean ones, by impulse density.

    The energy is that of the discrete Laplacian (reflect borders), summed over faces; a ratio below 1 is
    detail smoothed away, above 1 noise left in. Also per part: hair (border/hair region) and wrinkles
    (forehead and cheeks). Checks "over-smoothing of hair and wrinkles at high noise": supported when the
    first denoiser's ratio is below 1 at the highest density and falls with density (Spearman correlation
    at most ``DECREASING_RHO``; with two densities, lower at the higher one).
    """
    conditions = _canonical(conditions or impulse_conditions(holdout.conditions) or holdout.conditions)
    conditions = impulse_conditions(conditions) + tuple(c for c in conditions if math.isnan(impulse_density(c)))
    regions = face_regions()
    weights = np.vstack([np.ones((1, SIDE * SIDE)), regions.mask("border/hair").reshape(1, -1), regions.mask(*WRINKLES).reshape(1, -1)])
    clean_energy = weights @ (_laplacian(_floats(holdout.clean)) ** 2).reshape(len(holdout.clean), -1).sum(axis=0)
    rows = []
    for run in _runs(denoisers, holdout, conditions):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = weights @ (_laplacian(run.restored) ** 2).reshape(len(run.clean), -1).sum(axis=0) / clean_energy
            noisy_ratio = float((_laplacian(run.noisy) ** 2).sum() / clean_energy[0])
        rows.append({"denoiser": run.name, "condition": run.condition, "density": run.density, "hf_ratio": float(ratios[0]),
                     "hf_ratio_hair": float(ratios[1]), "hf_ratio_wrinkles": float(ratios[2]), "noisy_hf_ratio": noisy_ratio})
    table = pd.DataFrame(rows)
    primary = _primary(denoisers)
    trend = table[(table.denoiser == primary) & table.density.notna()].sort_values("density")
    if len(trend) == 0:
        part = table[table.denoiser == primary].iloc[0]
        sentence = (f"At {part.condition}, {primary} keeps {part.hf_ratio:.2f} of the clean faces' high-frequency (Laplacian) energy; "
                    "no pure impulse density was analysed.")
        return Finding("oversmoothing", "Over-smoothing by density", sentence, EXPECT_SMOOTHING, None, table, None)
    first, last = trend.iloc[0], trend.iloc[-1]
    rho = _spearman(trend.density, trend.hf_ratio)
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
        images = _smooth(np.broadcast_to(images, clean.shape), sigma) if sigma > 0 else np.broadcast_to(images, clean.shape).astype(np.float64)
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
    return float((_smooth(error, sigma) ** 2).sum() / total) if total > 0 else math.nan


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
    conditions = _canonical(conditions or dense or impulse_conditions(holdout.conditions)[-3:] or holdout.conditions)
    clean = _floats(holdout.clean)
    if template is None:
        template = (clean.astype(np.float64).sum(axis=0) - clean) / max(len(clean) - 1, 1)
    rows = []
    for index, (row, denoiser) in enumerate(trial_models):
        for condition in conditions:
            restored = _restore(denoiser, _floats(holdout.noisy_for(condition)))
            rows.append({"trial_id": str(row.get("trial_id", f"trial {index}")), "bottleneck_size": float(row.get(bottleneck_key, math.nan) or math.nan),
                         "status": str(row.get("status", "")), "epochs_run": row.get("epochs_run"), "best_epoch": row.get("best_epoch"),
                         "stopped_early": row.get("status") == STOPPED_BY_ASHA, "condition": condition, "density": impulse_density(condition),
                         "pull": float(np.nanmean(template_pull(restored, clean, template))), "lowfreq_share": lowfreq_share(restored, clean),
                         "psnr": _mean_psnr(restored, clean)})
    table = pd.DataFrame(rows)
    trials = table.groupby("trial_id", sort=False).agg(pull=("pull", "mean"), lowfreq_share=("lowfreq_share", "mean"), bottleneck_size=("bottleneck_size", "first"),
                                                      stopped_early=("stopped_early", "first"), status=("status", "first"))
    sized = trials[trials.bottleneck_size.notna()]
    rho = _spearman(sized.bottleneck_size, sized.pull) if sized.bottleneck_size.nunique() >= 2 else math.nan
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


def misalignments(shifts: Sequence[int] = (2, 4), angles: Sequence[float] = (5, 10), scales: Sequence[float] = (0.9, 1.1)) -> list[Transform]:
    """The aligned face plus shifts (each size in 4 directions), rotations (both ways) and scalings."""
    transforms = [Transform("aligned", 0.0, "aligned")]
    for size in shifts:
        for dx, dy in ((size, 0), (-size, 0), (0, size), (0, -size)):
            transforms.append(Transform("shift", float(size), f"shift {dx:+d},{dy:+d} px", shift=(float(dy), float(dx))))
    for angle in angles:
        for signed in (angle, -angle):
            transforms.append(Transform("rotation", float(abs(angle)), f"rotate {signed:+g} deg", angle=float(signed)))
    for factor in scales:
        transforms.append(Transform("scale", round(abs(1.0 - factor), 6), f"scale x{factor:g}", scale=float(factor)))
    return transforms


def cosine_weights(positions: np.ndarray, n: int = SIDE) -> np.ndarray:
    """Interpolation weights (*positions.shape, n) of n samples for values at fractional positions, from the
    samples' cosine (DCT-II) series: exact at whole positions, mirrored beyond the ends like scipy's
    'reflect', and with no smoothing in between (a linear interpolator blurs, see ``warp``)."""
    k = np.arange(n)
    at_positions = np.cos(np.pi * np.multiply.outer(np.asarray(positions, dtype=np.float64) + 0.5, k) / n) * np.where(k == 0, 1.0, 2.0) / n
    return at_positions @ np.cos(np.pi * np.outer(k, np.arange(n) + 0.5) / n)


def warp(images: np.ndarray, transform: Transform) -> np.ndarray:
    """Float faces (N, 48, 48) moved by the transform, quantised to the 256 levels a stored face has.

    Resampling is the cosine-series interpolation of ``cosine_weights``: shift and scale are one matrix per
    axis, rotation three shears (Unser et al. 1995), so whole-pixel shifts are exact and nothing is blurred.
    Bilinear resampling (``grid_sample``) would halve a face's fine detail at a 10 degree rotation, and a
    blurred face is easier to denoise, which made rotated faces look 2 dB easier than aligned ones.
    """
    faces = images.astype(np.float64)
    grid = np.arange(SIDE, dtype=np.float64)
    centre = (SIDE - 1) / 2
    if transform.scale != 1.0 or transform.shift != (0.0, 0.0):
        rows = cosine_weights(centre + (grid - centre) / transform.scale - transform.shift[0])
        cols = cosine_weights(centre + (grid - centre) / transform.scale - transform.shift[1])
        faces = rows @ faces @ cols.T
    if transform.angle:
        along = np.tan(math.radians(transform.angle) / 2)
        across = -math.sin(math.radians(transform.angle))
        row_shear = cosine_weights(grid[None, :] - along * (grid[:, None] - centre))  # (row, column, source column)
        col_shear = cosine_weights(grid[None, :] - across * (grid[:, None] - centre))  # (column, row, source row)
        faces = np.einsum("yxi,nyi->nyx", row_shear, faces)
        faces = np.einsum("xyi,nix->nyx", col_shear, faces)
        faces = np.einsum("yxi,nyi->nyx", row_shear, faces)
    return (np.clip(np.round(faces * 255.0), 0.0, 255.0) / 255.0).astype(np.float32)


def misalignment(denoisers: Mapping[str, Denoiser], holdout: Holdout, condition: str = "sp:0.3", transforms: Sequence[Transform] | None = None,
                 seed: int = 2013, out_dir: Path | None = None) -> Finding:
    """Drop in PSNR/SSIM when the clean test faces are shifted, rotated or scaled a little before corruption.

    Faces are moved by ``warp`` (no blur), and every version of a face gets the same seeded noise draw, so
    the comparison with the aligned face is paired. Moving a face changes its pixel values a little (mirrored
    borders), which changes the noisy input's own PSNR, so the table has that drop too. Checks "misaligned
    faces are harder": supported when the first denoiser's PSNR drop beyond its noisy input's, averaged over
    the transforms, exceeds ``MISALIGN_DB``.
    """
    condition = str(NoiseSpec.parse(condition))
    transforms = list(transforms or misalignments())
    if transforms[0].kind != "aligned":
        transforms.insert(0, misalignments((), (), ())[0])
    clean = _floats(holdout.clean)
    rows = []
    for transform in transforms:
        target = warp(clean, transform)
        noisy = corrupt(torch.from_numpy(target), condition, make_generator(seed)).mul(255.0).round().div(255.0).numpy()
        noisy_psnr = _mean_psnr(noisy, target)
        for name, denoiser in denoisers.items():
            psnr, ssim = score_images(_restore(denoiser, noisy), target)
            rows.append({"denoiser": name, "transform": transform.label, "kind": transform.kind, "magnitude": transform.magnitude,
                         "psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)), "noisy_psnr": noisy_psnr})
    table = pd.DataFrame(rows)
    aligned = table[table.kind == "aligned"].set_index("denoiser")
    base = aligned.loc[table.denoiser]
    table["psnr_drop"] = base.psnr.to_numpy() - table.psnr
    table["ssim_drop"] = base.ssim.to_numpy() - table.ssim
    table["noisy_psnr_drop"] = base.noisy_psnr.to_numpy() - table.noisy_psnr
    table["net_psnr_drop"] = table.psnr_drop - table.noisy_psnr_drop
    primary = _primary(denoisers)
    moved = table[(table.denoiser == primary) & (table.kind != "aligned")]
    if len(moved) == 0:
        raise InputError("no misalignment to analyse: give at least one shift, angle or scale")
    summary = moved.groupby(["kind", "magnitude"], sort=False)[["psnr_drop", "ssim_drop"]].mean()
    parts = []
    for kind, noun, unit in (("shift", "shifted", " px"), ("rotation", "rotated", "°"), ("scale", "scaled by", "")):
        if kind in summary.index.get_level_values(0):
            worst = summary.loc[kind].index.max()
            drops = summary.loc[(kind, worst)]
            amount = f"{1 - worst:g}/{1 + worst:g}" if kind == "scale" else f"{worst:g}{unit}"
            parts.append(f"{-drops.psnr_drop:+.2f} dB (SSIM {-drops.ssim_drop:+.3f}) {noun} {amount}")
    net = float(moved.net_psnr_drop.mean())
    sentence = (f"With {condition} noise, {primary}'s PSNR changes by {', '.join(parts)}, from {aligned.at[primary, 'psnr']:.2f} dB on "
                f"aligned faces: {-net:+.2f} dB on average beyond the {-moved.noisy_psnr_drop.mean():+.2f} dB change of its noisy input itself.")
    figure = _plot_misalignment(table, out_dir) if out_dir is not None else None
    return Finding("misalignment", "Misaligned faces", sentence, EXPECT_MISALIGNMENT, bool(net > MISALIGN_DB), table, figure)


def face_attributes(clean: np.ndarray) -> pd.DataFrame:
    """Per face (uint8 (N, 48, 48)): mean brightness and contrast (std) on [0, 1], the share of pixels at
    exactly 0 or 255 (which an impulse detector cannot tell from noise) and the mean squared Sobel magnitude."""
    images = _floats(clean)
    return pd.DataFrame({"brightness": images.mean(axis=(1, 2)), "contrast": images.std(axis=(1, 2)),
                         "saturated": ((clean == 0) | (clean == 255)).mean(axis=(1, 2)),
                         "gradient_energy": (_sobel_magnitude(images) ** 2).mean(axis=(1, 2))})


def worst_faces(denoiser: Denoiser, holdout: Holdout, condition: str, out_dir: Path | None = None, k: int = 12, name: str = "denoiser") -> Finding:
    """The k lowest-PSNR faces at a condition, a gallery (noisy | denoised | clean rows) and what they share.

    The table has one row per worst face (``index`` into the hold-out, PSNR ascending) with its
    ``face_attributes``; ``table.attrs["comparison"]`` compares each attribute's mean on the worst faces
    with the rest, in standard deviations over all faces, and the sentence names the largest difference.
    """
    condition = str(NoiseSpec.parse(condition))
    clean, noisy = _floats(holdout.clean), _floats(holdout.noisy_for(condition))
    restored = _restore(denoiser, noisy)
    psnr, ssim = score_images(restored, clean)
    k = min(k, len(clean))
    order = np.argsort(psnr, kind="stable")
    worst, rest = order[:k], order[k:]
    attributes = face_attributes(holdout.clean)
    table = pd.DataFrame({"rank": np.arange(1, k + 1), "index": worst, "psnr": psnr[worst], "ssim": ssim[worst]})
    table = pd.concat([table, attributes.iloc[worst].reset_index(drop=True)], axis=1)
    spread = attributes.std(ddof=0).replace(0.0, np.nan)
    comparison = pd.DataFrame({"worst": attributes.iloc[worst].mean(), "rest": attributes.iloc[rest].mean() if len(rest) else np.nan})
    comparison["difference_sd"] = (comparison.worst - comparison.rest) / spread
    comparison = comparison.rename_axis("attribute").reset_index()
    table.attrs["comparison"] = comparison
    ranked = comparison.assign(size=comparison.difference_sd.abs()).sort_values("size", ascending=False, na_position="last")
    lead = ranked.iloc[0]
    rest_psnr = f"{np.mean(psnr[rest]):.1f} dB for the other {len(rest)}" if len(rest) else "no other faces"
    if math.isnan(lead.difference_sd):
        traits = "no attribute can be compared with the rest"
    else:
        runner = ranked.iloc[1]
        traits = (f"they differ most in {lead.attribute} ({lead.worst:.3f} vs {lead.rest:.3f}, {lead.difference_sd:+.1f} SD), "
                  f"then {runner.attribute} ({runner.difference_sd:+.1f} SD)")
    sentence = f"At {condition}, the {k} worst faces for {name} average {np.mean(psnr[worst]):.1f} dB against {rest_psnr}, and {traits}."
    figure = _plot_gallery(noisy[worst], restored[worst], clean[worst], psnr[worst], condition, name, out_dir) if out_dir is not None else None
    return Finding("worst_faces", f"Worst faces at {condition}", sentence, None, None, table, figure)


def ssim_vs_psnr(denoisers: Mapping[str, Denoiser], holdout: Holdout, conditions: Sequence[str] | None = None, out_dir: Path | None = None) -> Finding:
    """Whether SSIM or PSNR tracks the clarity of eyes and mouth better: Spearman correlation, per image,
    of each with the eye+mouth error (negative MSE over those regions), across images, conditions and
    denoisers, and within a condition (averaged over conditions).

    The reference is itself a squared error, which favours PSNR; so the table also correlates both with a
    structural reference (local SSIM averaged over the eyes and mouth). Checks "SSIM tracks perceived
    quality better than PSNR": supported when |corr(SSIM)| > |corr(PSNR)| with the eye+mouth error, pooled.
    """
    conditions = _canonical(conditions or default_conditions(holdout))
    mask = face_regions().mask("eyes", "mouth")
    rows, cols = np.nonzero(mask)
    reach = WINDOW // 2  # local SSIM only where it is needed: the features' bounding box, plus the window's reach
    box = (slice(rows.min() - reach, rows.max() + reach + 1), slice(cols.min() - reach, cols.max() + reach + 1))
    inner = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    columns: dict[str, list[np.ndarray]] = {key: [] for key in ("denoiser", "condition", "ssim", "psnr", "eye_mouth_mse", "eye_mouth_ssim")}
    for run in _runs(denoisers, holdout, conditions):
        psnr, ssim = score_images(run.restored, run.clean)
        local = ssim_map(torch.from_numpy(run.restored[:, box[0], box[1]]), torch.from_numpy(run.clean[:, box[0], box[1]]))[:, 0].numpy()
        columns["denoiser"].append(np.full(len(psnr), run.name, dtype=object))
        columns["condition"].append(np.full(len(psnr), run.condition, dtype=object))
        columns["ssim"].append(ssim)
        columns["psnr"].append(psnr)
        columns["eye_mouth_mse"].append(((run.restored.astype(np.float64) - run.clean) ** 2)[:, mask].mean(axis=1))
        columns["eye_mouth_ssim"].append(local[:, inner].mean(axis=1))
    images = pd.DataFrame({key: np.concatenate(values) for key, values in columns.items()})
    images["clarity"] = -images.eye_mouth_mse
    rows = []
    for scope in ("all", *denoisers):
        part = images if scope == "all" else images[images.denoiser == scope]
        for reference, column in (("eye_mouth_mse", "clarity"), ("eye_mouth_ssim", "eye_mouth_ssim")):
            within = {metric: [_spearman(group[metric], group[column]) for _, group in part.groupby("condition")] for metric in ("ssim", "psnr")}
            rows.append({"scope": scope, "reference": reference, "images": len(part),
                         "spearman_ssim": _spearman(part.ssim, part[column]), "spearman_psnr": _spearman(part.psnr, part[column]),
                         "within_ssim": _nanmean(within["ssim"]), "within_psnr": _nanmean(within["psnr"])})
    table = pd.DataFrame(rows)
    pooled = table[(table.scope == "all") & (table.reference == "eye_mouth_mse")].iloc[0]
    supported = None if math.isnan(pooled.spearman_ssim) or math.isnan(pooled.spearman_psnr) else bool(abs(pooled.spearman_ssim) > abs(pooled.spearman_psnr))
    winner = {True: "SSIM tracks it better", False: "PSNR tracks it at least as well", None: "neither can be ranked"}[supported]
    sentence = (f"Over {len(images)} denoised faces ({len(denoisers)} denoisers, {len(conditions)} conditions), the Spearman correlation with "
                f"eye-and-mouth clarity (negative MSE there) is {pooled.spearman_ssim:.2f} for SSIM and {pooled.spearman_psnr:.2f} for PSNR "
                f"({pooled.within_ssim:.2f} vs {pooled.within_psnr:.2f} within a condition), so {winner}.")
    figure = _plot_ssim_vs_psnr(images, out_dir) if out_dir is not None else None
    return Finding("ssim_vs_psnr", "SSIM vs PSNR on eyes and mouth", sentence, EXPECT_SSIM, supported, table, figure)


def error_analysis(denoisers: Mapping[str, Denoiser], holdout: Holdout, out_dir: Path, trial_models: Sequence[tuple[Mapping, Denoiser]] | None = None,
                   conditions: Sequence[str] | None = None, faces: int | None = None) -> list[Finding]:
    """Every analysis above on the first ``faces`` hold-out faces, each denoiser run once per noisy slab.

    ``conditions`` (default: ``default_conditions``) drive the region, contrast and SSIM analyses, their pure
    impulse ones the over-smoothing curve (default: every impulse density of the hold-out); the worst faces
    are the first denoiser's at ``headline_condition``; filled-in artefacts run only with ``trial_models``.
    """
    out_dir = Path(out_dir)
    holdout = subset(holdout, faces)
    cached = {name: memoised(denoiser) for name, denoiser in denoisers.items()}
    chosen = _canonical(conditions or default_conditions(holdout))
    smoothing = impulse_conditions(chosen) if conditions else None
    primary = _primary(cached)
    findings = [region_errors(cached, holdout, chosen, out_dir), contrast_split(cached, holdout, chosen, out_dir),
                oversmoothing(cached, holdout, smoothing or None, out_dir)]
    if trial_models:
        findings.append(filled_in_artefacts(trial_models, holdout, out_dir=out_dir))
    findings.append(misalignment(cached, holdout, out_dir=out_dir))
    findings.append(worst_faces(cached[primary], holdout, headline_condition(chosen), out_dir, name=primary))
    findings.append(ssim_vs_psnr(cached, holdout, chosen, out_dir))
    return findings


# --------------------------------------------------------------------------------------------- figures


def _plot_regions(table: pd.DataFrame, regions: RegionMap, holdout: Holdout, primary: str, out_dir: Path) -> str:
    fig = Figure(figsize=(10, 4.2))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    left.imshow(_floats(holdout.clean).mean(axis=0), cmap="gray", vmin=0, vmax=1)
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
    fig.tight_layout()
    return _save(fig, out_dir, "regions.png")


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
    fig.tight_layout()
    return _save(fig, out_dir, "contrast.png")


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
    fig.tight_layout()
    return _save(fig, out_dir, "oversmoothing.png")


def _plot_filled_in(trials: pd.DataFrame, out_dir: Path) -> str:
    fig = Figure(figsize=(5.5, 3.6))
    axis = fig.subplots()
    for status, part in trials.groupby("status", sort=True):
        axis.scatter(part.bottleneck_size, part.pull, label=status or "unknown", s=25)
    axis.set_xlabel("bottleneck size")
    axis.set_ylabel("pull toward the mean face")
    axis.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out_dir, "filled_in.png")


def _plot_misalignment(table: pd.DataFrame, out_dir: Path) -> str:
    summary = table[table.kind != "aligned"].groupby(["kind", "magnitude", "denoiser"], sort=False).psnr_drop.mean().unstack("denoiser")
    fig = Figure(figsize=(6.5, 3.6))
    axis = fig.subplots()
    width = 0.8 / max(summary.shape[1], 1)
    for offset, name in enumerate(summary.columns):
        axis.bar(np.arange(len(summary)) + offset * width, summary[name], width=width, label=name)
    axis.set_xticks(np.arange(len(summary)) + 0.4 - width / 2, [f"{kind} {magnitude:g}" for kind, magnitude in summary.index], fontsize=7)
    axis.axhline(0.0, color="gray", linewidth=0.8)
    axis.set_ylabel("PSNR drop vs aligned (dB)")
    axis.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out_dir, "misalignment.png")


def _plot_gallery(noisy: np.ndarray, restored: np.ndarray, clean: np.ndarray, psnr: np.ndarray, condition: str, name: str, out_dir: Path) -> str:
    """One mosaic image (rows noisy | denoised | clean), far quicker to draw than a grid of axes."""
    gap, count = 2, len(clean)
    mosaic = np.ones((3 * SIDE + 2 * gap, count * SIDE + (count - 1) * gap), dtype=np.float32)
    for row, images in enumerate((noisy, restored, clean)):
        top = row * (SIDE + gap)
        strip = np.concatenate([np.pad(np.clip(image, 0, 1), ((0, 0), (0, gap)), constant_values=1.0) for image in images], axis=1)
        mosaic[top:top + SIDE] = strip[:, :mosaic.shape[1]]
    fig = Figure(figsize=(max(0.75 * count, 3.0) + 0.9, 2.9))
    axis = fig.subplots()
    axis.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axis.set_xticks([column * (SIDE + gap) + SIDE / 2 for column in range(count)], [f"{value:.1f}" for value in psnr], fontsize=6)
    axis.set_yticks([row * (SIDE + gap) + SIDE / 2 for row in range(3)], ["noisy", "denoised", "clean"], fontsize=7)
    axis.set_title(f"{count} worst faces for {name} at {condition} (PSNR dB)", fontsize=8)
    fig.tight_layout()
    return _save(fig, out_dir, f"worst_faces_{_slug(condition)}.png")


def _plot_ssim_vs_psnr(images: pd.DataFrame, out_dir: Path) -> str:
    fig = Figure(figsize=(8, 3.4))
    left, right = fig.subplots(1, 2)
    finite = images[np.isfinite(images.psnr)]
    for axis, metric in ((left, "ssim"), (right, "psnr")):
        axis.scatter(finite[metric], finite.clarity, s=3, alpha=0.4, rasterized=True)
        axis.set_xlabel(metric.upper())
        axis.set_ylabel("eye+mouth clarity (-MSE)")
    fig.tight_layout()
    return _save(fig, out_dir, "ssim_vs_psnr.png")
