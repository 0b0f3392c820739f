"""Answers with error bars: means over seeds with t-intervals, paired differences with a two-level bootstrap, verdicts.

The unit of replication is the training seed: each seed trains one model per level, and a level's score at a
condition is that model's mean over the same hold-out faces. So

- a level's mean carries a Student-t interval over its seeds' scores (n - 1 degrees of freedom). It is exact for
  normally distributed seed scores and honest about small n: with 2 seeds t is 12.7, with 3 it is 4.3, so the
  interval is wide rather than falsely narrow; one seed gives no interval at all (NaN);
- two levels are compared on the same faces and the same seeds (seed s of every level draws the same batches and
  noise: common random numbers), so the difference is paired: d[s, f] = score_a[s, f] - score_b[s, f]. Its
  bootstrap interval resamples seeds, then faces, from a seeded generator. With few seeds that alone is too
  narrow (3 seeds have 10 distinct resamples, and a bootstrap of n values has (n - 1) / n of their variance: in a
  simulation with no true difference it excluded 0 far more often than 1 in 20), so the interval a verdict uses
  is the union of it and the paired t-interval over the seeds' mean differences, which is exact for normal seed
  effects however few seeds there are. With one seed there is no t-interval: the bootstrap then covers
  face-to-face variation only, which the verdict says;
- a verdict names a direction only when the interval excludes 0, and otherwise says the levels do not differ
  at this n (which is not the same as being equal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
DRAWS = 2000  # bootstrap resamples
BOOTSTRAP_SEED = 0
UNITS = {"psnr": "dB", "ssim": "SSIM"}


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    n: int  # seeds behind it

    def excludes_zero(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high) and (self.low > 0 or self.high < 0)


def t_interval(values: np.ndarray | list[float], confidence: float = CONFIDENCE) -> Interval:
    """The mean of ``values`` and its Student-t interval (n - 1 degrees of freedom); NaN bounds when n < 2."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * float(values.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, draws: int = DRAWS, seed: int = BOOTSTRAP_SEED,
                     confidence: float = CONFIDENCE) -> Interval:
    """Mean of ``a - b`` (both shaped seeds x faces, row s of each from seed s) with a two-level percentile bootstrap.

    Each draw resamples the seeds with replacement, then the faces with replacement (the same faces for every
    seed and both levels, so the pairing holds), and takes the mean difference over the drawn cells. Counts
    drawn from multinomials make every draw one weighted mean, so 2,000 draws over 3,300 faces take a fraction of
    a second. The same generator seed gives the same interval.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"paired scores must share one (seeds, faces) shape, got {a.shape} and {b.shape}")
    difference = a - b
    seeds, faces = difference.shape
    rng = np.random.default_rng(seed)
    seed_counts = rng.multinomial(seeds, np.full(seeds, 1.0 / seeds), size=draws)  # (draws, seeds)
    face_counts = rng.multinomial(faces, np.full(faces, 1.0 / faces), size=draws)  # (draws, faces)
    per_face = seed_counts @ difference / seeds  # (draws, faces): the drawn seeds' mean difference at each face
    means = (per_face * face_counts).sum(axis=1) / faces
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(difference.mean()), float(low), float(high), seeds)


def paired_difference(a: np.ndarray, b: np.ndarray, draws: int = DRAWS, seed: int = BOOTSTRAP_SEED,
                      confidence: float = CONFIDENCE) -> tuple[Interval, Interval, Interval]:
    """The interval a verdict uses (the union of the two below), the two-level bootstrap one, and the t-interval over seeds."""
    boot = paired_bootstrap(a, b, draws, seed, confidence)
    over_seeds = t_interval((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).mean(axis=1), confidence)
    return joined(boot, over_seeds), boot, over_seeds


def joined(boot: Interval, over_seeds: Interval) -> Interval:
    """The interval a verdict uses: the bootstrap one widened to cover the t-interval over seeds (the bootstrap alone
    when there is one seed, which has no t-interval)."""
    if over_seeds.n < 2:
        return boot
    return Interval(boot.estimate, min(boot.low, over_seeds.low), max(boot.high, over_seeds.high), boot.n)


def bootstrap_statistic(statistic: Callable[[np.ndarray, np.ndarray], np.ndarray], seeds: int, faces: int, draws: int = DRAWS,
                        seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> Interval:
    """A statistic that is not a mean of per-face values (a rank correlation) with the same two-level interval as a paired difference.

    ``statistic(seed_index, face_index)`` takes index arrays shaped (draws, seeds) and (draws, faces) and returns one value per
    row, so a draw is one row of resampled seeds and faces. The estimate uses every seed and face once; the bootstrap resamples
    seeds, then faces, with replacement from a seeded generator; with several seeds the interval is joined with a t-interval
    over the statistic of each seed alone, as ``paired_difference`` does.
    """
    if seeds < 1 or faces < 2:
        return Interval(math.nan, math.nan, math.nan, max(seeds, 0))
    rng = np.random.default_rng(seed)
    seed_index, face_index = rng.integers(0, seeds, size=(draws, seeds)), rng.integers(0, faces, size=(draws, faces))
    estimate = float(statistic(np.arange(seeds)[None], np.arange(faces)[None])[0])
    values = np.asarray(statistic(seed_index, face_index), dtype=np.float64)
    values = values[np.isfinite(values)]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail]) if len(values) else (math.nan, math.nan)
    boot = Interval(estimate, float(low), float(high), seeds)
    per_seed = statistic(np.arange(seeds)[:, None], np.tile(np.arange(faces), (seeds, 1))) if seeds > 1 else np.array([estimate])
    return joined(boot, t_interval(per_seed, confidence))


def seed_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per (level, seed, condition): that model's mean PSNR and SSIM over the hold-out faces."""
    return scores.groupby(["level", "seed", "condition"], sort=False)[["psnr", "ssim"]].mean().reset_index()


def level_summary(scores: pd.DataFrame, metrics: tuple[str, ...] = ("psnr", "ssim")) -> pd.DataFrame:
    """Per level and condition: the mean over seeds of each metric, its 95% t-interval, the seeds and faces behind it.

    ``scores`` has one row per (level, seed, condition, face) with the metrics as columns.
    """
    rows = []
    faces = scores.groupby(["level", "condition"], sort=False)["face"].nunique()
    for (level, condition), group in seed_scores(scores).groupby(["level", "condition"], sort=False):
        row = {"level": level, "condition": condition, "seeds": len(group), "faces": int(faces[(level, condition)])}
        for metric in metrics:
            interval = t_interval(group[metric].to_numpy())
            row.update({metric: interval.estimate, f"{metric}_low": interval.low, f"{metric}_high": interval.high})
        rows.append(row)
    return pd.DataFrame(rows)


def paired_arrays(scores: pd.DataFrame, level_a: str, level_b: str, condition: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeds x faces arrays of two levels at one condition, on the seeds both have scores for (failed trials drop out)."""
    rows = scores[scores["condition"] == condition]
    a, b = (rows[rows["level"] == level].pivot_table(index="seed", columns="face", values=metric) for level in (level_a, level_b))
    seeds, faces = a.index.intersection(b.index), a.columns.intersection(b.columns)
    a, b = a.loc[seeds, faces], b.loc[seeds, faces]
    complete = a.notna().all(axis=1) & b.notna().all(axis=1)
    return a[complete].to_numpy(), b[complete].to_numpy()


def pairwise_differences(scores: pd.DataFrame, levels: list[str], metrics: tuple[str, ...] = ("psnr", "ssim"),
                         draws: int = DRAWS, seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """Every pair of levels (a before b in ``levels``) at every condition: the paired difference a - b, the interval a
    verdict uses, and the bootstrap and t-intervals it joins."""
    rows = []
    conditions = list(dict.fromkeys(scores["condition"]))
    for i, level_a in enumerate(levels):
        for level_b in levels[i + 1:]:
            for condition in conditions:
                row = {"a": level_a, "b": level_b, "condition": condition}
                for metric in metrics:
                    a, b = paired_arrays(scores, level_a, level_b, condition, metric)
                    none = Interval(math.nan, math.nan, math.nan, 0)
                    interval, boot, over_seeds = paired_difference(a, b, draws, seed) if a.size else (none, none, none)
                    row.update({metric: interval.estimate, f"{metric}_low": interval.low, f"{metric}_high": interval.high,
                                f"{metric}_bootstrap_low": boot.low, f"{metric}_bootstrap_high": boot.high,
                                f"{metric}_t_low": over_seeds.low, f"{metric}_t_high": over_seeds.high,
                                "seeds": interval.n, "faces": a.shape[1] if a.size else 0})
                rows.append(row)
    return pd.DataFrame(rows)


def verdict(a: str, b: str, condition: str, interval: Interval, metric: str = "psnr", faces: int | None = None) -> str:
    """One plain sentence, never stronger than the interval: a direction only when it excludes 0."""
    unit = UNITS.get(metric, metric)
    digits = 2 if metric == "psnr" else 4
    low, high = (interval.low, interval.high) if interval.estimate >= 0 else (-interval.high, -interval.low)
    numbers = f"{abs(interval.estimate):.{digits}f} {unit} [{low:.{digits}f}, {high:.{digits}f}]"
    at = f"at {condition}"
    if not math.isfinite(interval.estimate):
        return f"{a} and {b} cannot be compared {at}: no seed has both"
    spread = "" if interval.n >= 2 else " (one seed: the interval covers face-to-face variation only, not training variation)"
    if interval.excludes_zero():
        word = "better" if interval.estimate > 0 else "worse"
        return f"{a} is {word} than {b} by {numbers} {at}{spread}"
    size = f"n = {interval.n} seed{'s' * (interval.n != 1)}" + (f", {faces} faces" if faces else "")
    return (f"{a} and {b} do not differ {at} at {size} (difference {interval.estimate:+.{digits}f} {unit} "
            f"[{interval.low:.{digits}f}, {interval.high:.{digits}f}]){spread}")


def verdict_table(differences: pd.DataFrame, metric: str = "psnr", label: str = "") -> pd.DataFrame:
    """The difference table with one verdict sentence per pair and condition; ``label`` names the factor in it."""
    def sentence(row: pd.Series) -> str:
        interval = Interval(row[metric], row[f"{metric}_low"], row[f"{metric}_high"], int(row["seeds"]))
        return verdict(named(label, row["a"]), str(row["b"]), str(row["condition"]), interval, metric, int(row["faces"]))

    table = differences[["a", "b", "condition", "seeds", "faces", metric, f"{metric}_low", f"{metric}_high"]].copy()
    table["verdict"] = differences.apply(sentence, axis=1) if len(differences) else []
    return table


def named(label: str, level: object) -> str:
    """A level as the first word of a sentence names it: "bottleneck 16" (then "is worse than 32")."""
    return f"{label} {level}" if label else str(level)


def pair_summary(differences: pd.DataFrame, metric: str = "psnr", label: str = "") -> list[str]:
    """One sentence per pair of levels: at how many conditions each is ahead, and the widest gap that the interval supports."""
    lines = []
    for (level_a, b), rows in differences.groupby(["a", "b"], sort=False):
        a = named(label, level_a)
        low, high = rows[f"{metric}_low"], rows[f"{metric}_high"]
        ahead, behind = rows[low > 0], rows[high < 0]
        total, seeds = len(rows), int(rows["seeds"].min())
        parts = []
        for name, chosen, sign in ((f"{a} ahead of {b}", ahead, 1), (f"{a} behind {b}", behind, -1)):
            if len(chosen):
                widest = chosen.loc[(chosen[metric] * sign).idxmax()]
                interval = Interval(widest[metric], widest[f"{metric}_low"], widest[f"{metric}_high"], seeds)
                parts.append(f"{name} at {len(chosen)} of {total} conditions (most: {verdict(a, b, widest['condition'], interval, metric)})")
        undecided = total - len(ahead) - len(behind)
        if undecided:
            parts.append(f"no detectable difference at {undecided} of {total} conditions at n = {seeds} seed{'s' * (seeds != 1)}")
        lines.append(f"{a} against {b}: " + "; ".join(parts) + ".")
    return lines
