"""The experiment statistics against cases whose answer is known: seeded simulations, a model against itself, a known shift."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from results.statistics import (Interval, level_summary, pair_summary, paired_arrays, paired_bootstrap, paired_difference, pairwise_differences,
                                t_interval, verdict, verdict_table)


def simulated_scores(levels: dict[str, float], seeds: int = 3, faces: int = 200, seed_sd: float = 0.3, face_sd: float = 2.0,
                     conditions: tuple[str, ...] = ("sp:0.1", "sp:0.5"), rng_seed: int = 0) -> pd.DataFrame:
    """Per-face scores: a face effect shared by every level, a seed effect per (level, seed), and noise per face."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for condition in conditions:
        face_effect = rng.normal(0.0, face_sd, faces)
        for level, mean in levels.items():
            for seed in range(seeds):
                psnr = mean + face_effect + rng.normal(0.0, seed_sd) + rng.normal(0.0, 0.2, faces)
                rows.append(pd.DataFrame({"level": level, "seed": seed, "condition": condition, "face": np.arange(faces),
                                          "psnr": psnr, "ssim": psnr / 100.0}))
    return pd.concat(rows, ignore_index=True)


def test_t_interval_matches_the_textbook_formula():
    values = np.array([30.1, 30.9, 29.7, 30.4])
    interval = t_interval(values)
    half = stats.t.ppf(0.975, 3) * values.std(ddof=1) / 2.0
    assert interval.estimate == pytest.approx(values.mean())
    assert (interval.low, interval.high) == pytest.approx((values.mean() - half, values.mean() + half))
    assert interval.n == 4


def test_t_interval_of_one_seed_has_no_bounds():
    interval = t_interval([31.2])
    assert interval.estimate == 31.2 and math.isnan(interval.low) and math.isnan(interval.high)
    assert not interval.excludes_zero()


def test_t_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    draws = rng.normal(25.0, 0.8, size=(4000, 3))
    intervals = [t_interval(row) for row in draws]
    covered = [interval.low <= 25.0 <= interval.high for interval in intervals]
    assert 0.935 <= np.mean(covered) <= 0.965


def test_paired_difference_of_a_model_with_itself_is_exactly_zero():
    scores = np.random.default_rng(1).normal(30.0, 2.0, size=(3, 150))
    interval = paired_bootstrap(scores, scores.copy())
    assert (interval.estimate, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert not interval.excludes_zero()


def test_paired_bootstrap_recovers_a_known_shift_and_is_reproducible():
    rng = np.random.default_rng(2)
    base = rng.normal(28.0, 3.0, size=(3, 300))
    shifted = base - 1.2 + rng.normal(0.0, 0.4, size=base.shape)
    interval = paired_bootstrap(base, shifted, seed=5)
    assert interval.low < 1.2 < interval.high
    assert interval.low > 1.0 and interval.high < 1.4
    assert paired_bootstrap(base, shifted, seed=5) == interval


def test_pairing_faces_narrows_the_interval_against_a_large_face_effect():
    rng = np.random.default_rng(3)
    faces = rng.normal(0.0, 5.0, 400)
    a, b = 30.0 + faces + rng.normal(0, 0.3, (2, 400)), 29.5 + faces + rng.normal(0, 0.3, (2, 400))
    paired = paired_bootstrap(a, b)
    unpaired_half = 1.96 * math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert paired.high - paired.low < unpaired_half
    assert paired.excludes_zero()


def test_difference_interval_keeps_its_coverage_with_three_seeds_where_the_bootstrap_alone_does_not():
    rng = np.random.default_rng(11)
    misses, bootstrap_misses = 0, 0
    for _ in range(200):
        faces = rng.normal(0.0, 2.0, 100)
        a = 27.0 + faces + rng.normal(0.0, 0.3, (3, 1)) + rng.normal(0.0, 0.2, (3, 100))
        b = 27.0 + faces + rng.normal(0.0, 0.3, (3, 1)) + rng.normal(0.0, 0.2, (3, 100))
        interval, boot, _ = paired_difference(a, b, draws=200, seed=0)
        misses += interval.excludes_zero()
        bootstrap_misses += boot.excludes_zero()
    assert misses / 200 <= 0.08
    assert bootstrap_misses / 200 > 0.15


def test_paired_difference_of_a_model_with_itself_is_exactly_zero_in_every_interval():
    scores = np.random.default_rng(4).normal(30.0, 2.0, size=(3, 80))
    for interval in paired_difference(scores, scores.copy(), draws=100):
        assert (interval.estimate, interval.low, interval.high) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_refuses_unpaired_shapes():
    with pytest.raises(ValueError, match="share one"):
        paired_bootstrap(np.zeros((2, 10)), np.zeros((3, 10)))


def test_level_summary_means_over_seeds_of_each_models_mean():
    scores = simulated_scores({"16": 25.0, "32": 26.0}, seeds=3)
    summary = level_summary(scores)
    row = summary[(summary["level"] == "16") & (summary["condition"] == "sp:0.5")].iloc[0]
    per_seed = scores[(scores["level"] == "16") & (scores["condition"] == "sp:0.5")].groupby("seed")["psnr"].mean()
    assert row["psnr"] == pytest.approx(per_seed.mean())
    assert (row["psnr_low"], row["psnr_high"]) == pytest.approx((t_interval(per_seed).low, t_interval(per_seed).high))
    assert (row["seeds"], row["faces"]) == (3, 200)


def test_pairwise_differences_find_a_real_gap_with_an_interval_joining_bootstrap_and_t():
    scores = simulated_scores({"16": 25.0, "32": 26.5, "64": 26.5}, seeds=3, seed_sd=0.1)
    differences = pairwise_differences(scores, ["16", "32", "64"], draws=500)
    assert len(differences) == 3 * 2
    gap = differences[(differences["a"] == "16") & (differences["b"] == "32")]
    assert (gap["psnr_high"] < 0).all() and gap["psnr"].between(-1.9, -1.1).all()
    assert (differences["psnr_low"] == differences[["psnr_bootstrap_low", "psnr_t_low"]].min(axis=1)).all()
    assert (differences["psnr_high"] == differences[["psnr_bootstrap_high", "psnr_t_high"]].max(axis=1)).all()
    same = differences[(differences["a"] == "32") & (differences["b"] == "64")]
    assert same["psnr"].abs().max() < 0.3


def test_a_failed_seed_drops_out_of_both_sides_of_a_comparison():
    scores = simulated_scores({"mse": 25.0, "psnr": 26.0}, seeds=3)
    scores = scores[~((scores["level"] == "mse") & (scores["seed"] == 2))]
    a, b = paired_arrays(scores, "mse", "psnr", "sp:0.1", "psnr")
    assert a.shape == b.shape == (2, 200)


def test_verdicts_never_claim_more_than_the_interval():
    assert verdict("bottleneck 16", "32", "sp:0.9", Interval(-1.2, -1.5, -0.9, 3)) == "bottleneck 16 is worse than 32 by 1.20 dB [0.90, 1.50] at sp:0.9"
    assert verdict("psnr", "mse", "sp:0.1", Interval(0.8, 0.3, 1.3, 3)) == "psnr is better than mse by 0.80 dB [0.30, 1.30] at sp:0.1"
    undecided = verdict("bottleneck 32", "64", "sp:0.9", Interval(0.1, -0.2, 0.4, 3), faces=500)
    assert undecided == "bottleneck 32 and 64 do not differ at sp:0.9 at n = 3 seeds, 500 faces (difference +0.10 dB [-0.20, 0.40])"
    assert "face-to-face variation only" in verdict("a", "b", "sp:0.1", Interval(1.0, 0.5, 1.5, 1))


def test_verdict_table_and_pair_summary_name_the_factor():
    scores = simulated_scores({"16": 25.0, "32": 26.5}, seeds=3, seed_sd=0.1)
    differences = pairwise_differences(scores, ["16", "32"], draws=300)
    table = verdict_table(differences, "psnr", "bottleneck")
    assert table["verdict"].str.startswith("bottleneck 16 is worse than 32 by").all()
    (line,) = pair_summary(differences, "psnr", "bottleneck")
    assert line.startswith("bottleneck 16 against 32: bottleneck 16 behind 32 at 2 of 2 conditions")
