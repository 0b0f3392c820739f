"""The seed's questions, answered from a study's own trials: how does each hyperparameter change PSNR/SSIM per density?

For bottleneck size, dropout, loss and training noise (whichever the study searched), trials are grouped by
the value they sampled (a continuous value such as dropout into three ranges of equal trial counts) and each
group's mean test PSNR and SSIM is given at every salt-and-pepper density, with the number of trials behind
it and their mean epochs: ASHA stops weak settings early, so a group's mean also carries how long its trials
trained, and the table says so rather than hiding it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from results.curves import noise_axis
from results.study_dir import Study

QUESTIONS = {"model.bottleneck_size": "bottleneck size", "model.dropout": "dropout", "loss": "loss", "noise": "training noise"}
RANGES = 3  # groups for a continuous setting


def value_groups(values: pd.Series) -> pd.Series:
    """Each trial's group label: the value itself, or for a continuous setting its range (equal-count bins)."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and numeric.nunique() > RANGES and not (numeric == numeric.round()).all():
        bins = pd.qcut(numeric, RANGES, duplicates="drop")
        return bins.map(lambda b: f"{max(b.left, 0):.3g}-{b.right:.3g}").astype(str)
    return values.map(lambda v: f"{v:g}" if isinstance(v, float) else str(v))


def question_table(study: Study, test_rows: pd.DataFrame, setting: str) -> pd.DataFrame | None:
    """One row per (value group, condition): mean PSNR/SSIM, trials, their mean epochs; None if not searched."""
    column = f"param_{setting}"
    if column not in study.trials or not len(test_rows):
        return None
    trials = study.trials[study.trials[column].notna() & study.trials["trial_id"].isin(set(test_rows["model"]))]
    if trials[column].nunique() < 2:
        return None
    groups = pd.DataFrame({"model": trials["trial_id"], "value": value_groups(trials[column]),
                           "epochs": pd.to_numeric(trials.get("epochs_run"), errors="coerce")})
    joined = test_rows.merge(groups, on="model")
    table = joined.groupby(["value", "condition"], sort=False).agg(
        psnr=("psnr", "mean"), ssim=("ssim", "mean"), trials=("model", "nunique"), mean_epochs=("epochs", "mean")).reset_index()
    table["level"] = table["condition"].map(lambda c: noise_axis(c).level)
    return table.sort_values(["value", "level"]).reset_index(drop=True)


def wide(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Values as rows, densities as columns, with the trial count and mean epochs of each value."""
    grid = table.pivot_table(index="value", columns="condition", values=metric, sort=False)
    grid = grid[sorted(grid.columns, key=lambda c: noise_axis(c).level)]
    counts = table.groupby("value")[["trials", "mean_epochs"]].first()
    return pd.concat([counts, grid], axis=1).reset_index().rename(columns={"value": "value"})


def plot_question(table: pd.DataFrame, label: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for value, rows in table.groupby("value", sort=False):
        rows = rows.sort_values("level")
        n = int(rows["trials"].max())
        for ax, metric in zip(axes, ("psnr", "ssim")):
            ax.plot(rows["level"], rows[metric], marker="o", label=f"{value} (n={n})")
    for ax, metric in zip(axes, ("PSNR (dB)", "SSIM")):
        ax.set_xlabel("salt-and-pepper density")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title=label, title_fontsize=8)
    fig.suptitle(f"{label}: mean test score of the trials with each value (n = trials)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def answers(study: Study, test_rows: pd.DataFrame, work: Path) -> list[tuple[str, str, pd.DataFrame, Path]]:
    """For each question the study can answer: setting, label, its long table (also as CSV) and its figure."""
    found = []
    for setting, label in QUESTIONS.items():
        table = question_table(study, test_rows, setting)
        if table is None:
            continue
        stem = f"question_{setting.replace('model.', '')}"
        table.to_csv(work / f"{stem}.csv", index=False)
        plot_question(table, label, work / f"{stem}.png")
        found.append((setting, label, table, work / f"{stem}.png"))
    return found
