"""Trade-offs between objectives: which trials of a trial table form the Pareto front, and a scatter that shows it.

A trial is on the front when no other trial is at least as good in every column and better in one. Trials with the
same values in every column do not dominate each other, so ties are on the front together. The columns are trial-table
columns (``best_val_psnr``, ``parameters``), each with the direction ``min`` or ``max`` the study optimised it in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd


def pareto_front(trials: pd.DataFrame, directions: Mapping[str, str]) -> pd.Series:
    """For each row, whether it is on the Pareto front of ``directions`` (column -> ``min`` or ``max``); a row missing a
    value in any of those columns is on no front and counts for none."""
    if not directions:
        raise ValueError("a Pareto front needs at least one column")
    bad = {column: mode for column, mode in directions.items() if mode not in ("min", "max")}
    if bad:
        raise ValueError(f"directions must be 'min' or 'max', got {bad}")
    values = np.column_stack([pd.to_numeric(trials[column], errors="coerce").to_numpy(dtype=float) * (1.0 if mode == "min" else -1.0)
                              for column, mode in directions.items()]) if len(trials) else np.empty((0, len(directions)))
    scored = np.isfinite(values).all(axis=1)
    points = values[scored]
    no_worse = (points[:, None, :] <= points[None, :, :]).all(axis=2)  # [j, i]: trial j is at least as good as trial i everywhere
    better = (points[:, None, :] < points[None, :, :]).any(axis=2)
    on_front = np.zeros(len(trials), dtype=bool)
    on_front[np.flatnonzero(scored)] = ~(no_worse & better).any(axis=0)
    return pd.Series(on_front, index=trials.index)


def plot_front(trials: pd.DataFrame, front: pd.Series, x: str, y: str, path: Path, title: str) -> None:
    """Every trial as a grey dot, the front's trials in colour joined by a step line and named by their trial id."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    rest, best = trials[~front], trials[front].sort_values([x, y], kind="stable")
    ax.scatter(rest[x], rest[y], color="#9a9a9a", s=24, label="other trials")
    ax.step(best[x], best[y], where="post", color="#c44e52", linewidth=1.2, alpha=0.8)
    ax.scatter(best[x], best[y], color="#c44e52", s=40, zorder=3, label="Pareto front")
    for (at_x, at_y), tied in best.groupby([x, y], sort=False)["trial_id"]:  # trials that tie share one point and one label
        ax.annotate(", ".join(map(str, tied)), (at_x, at_y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(f"{x} (log scale)")
    ax.set_ylabel(y)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
