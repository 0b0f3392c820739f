"""``python -m results.experiment_report EXPERIMENT_DIR``: a controlled experiment's answer, with error bars, in ``EXPERIMENT_DIR/report/``.

It reads ``experiment.yaml``, ``trials.csv`` and ``scores.parquet`` (each trial's best model scored per face on the
fixed hold-out) and never trains or runs a model. The report holds the curve of every level over noise density
with its 95% band over seeds, the level means with their intervals, the paired differences between levels with
their intervals (a seeded bootstrap joined with a t-interval over seeds), and a verdict per pair in plain words (``results.statistics``). It is built beside
``report/`` and moved into place, and an existing report is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import math
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from denoise_core.cli import ArgumentParser, run_cli, setup_logging
from denoise_core.errors import MissingFile
from results.curves import AXIS_LABELS, KINDS, noise_axis
from results.html import Figure, Section, Table, Text, render_html, render_markdown
from results.output import check_output, publish, scratch_dir
from results.statistics import CONFIDENCE, DRAWS, level_summary, pair_summary, pairwise_differences, verdict_table

REPORT_DIR = "report"
METRICS = ("psnr", "ssim")


@dataclass(frozen=True)
class Experiment:
    """One experiment directory as the report sees it."""

    path: Path
    config: dict[str, Any]  # experiment.yaml
    trials: pd.DataFrame  # trials.csv
    scores: pd.DataFrame  # scores.parquet: one row per (trial, condition, face)

    @property
    def label(self) -> str:
        return str(self.config.get("label") or self.config.get("factor", "level"))

    @property
    def levels(self) -> list[str]:
        """Level names in the order of the experiment file (those that have scores)."""
        present = set(self.scores["level"])
        return [str(name) for name in self.config.get("names", []) if str(name) in present]


def read_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    if not (path / "experiment.yaml").is_file():
        raise MissingFile(f"{path} is not an experiment directory: no experiment.yaml (run python study/run_experiment.py FILE first)")
    if not (path / "scores.parquet").is_file():
        raise MissingFile(f"{path} has no scores.parquet: the experiment has not finished (continue it with --resume)")
    config = yaml.safe_load((path / "experiment.yaml").read_text()) or {}
    trials = pd.read_csv(path / "trials.csv") if (path / "trials.csv").is_file() else pd.DataFrame()
    scores = pd.read_parquet(path / "scores.parquet")
    scores["level"] = scores["level"].astype(str)
    return Experiment(path=path, config=config, trials=trials, scores=scores)


def condition_order(conditions: list[str]) -> list[str]:
    """Conditions grouped by noise kind (the curves' panels), each by level."""
    return sorted(dict.fromkeys(conditions), key=lambda c: (KINDS.index(noise_axis(c).kind) if noise_axis(c).kind in KINDS else len(KINDS), noise_axis(c).level))


def plot_levels(summary: pd.DataFrame, levels: list[str], title: str, path: Path) -> None:
    """PSNR (top) and SSIM (bottom) against each noise kind's level: one line per level, its 95% band over seeds shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axis = summary["condition"].map(noise_axis)
    summary = summary.assign(kind=axis.map(lambda a: a.kind), x=axis.map(lambda a: a.level))
    kinds = [k for k in KINDS if (summary["kind"] == k).any()]
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.8 * len(kinds) + 0.6, 7.2), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for column, kind in enumerate(kinds):
        for row, metric in enumerate(METRICS):
            ax = axes[row][column]
            for index, level in enumerate(levels):
                points = summary[(summary["kind"] == kind) & (summary["level"] == level)].sort_values("x")
                color = colors[index % len(colors)]
                ax.plot(points["x"], points[metric], marker="o", color=color, label=f"{level} (n={int(points['seeds'].min())})")
                if points[f"{metric}_low"].notna().all():
                    ax.fill_between(points["x"], points[f"{metric}_low"], points[f"{metric}_high"], color=color, alpha=0.18, linewidth=0)
            ax.set_xlabel(AXIS_LABELS.get(kind, kind))
            ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def interval_table(summary: pd.DataFrame, levels: list[str], metric: str) -> pd.DataFrame:
    """Levels as rows, conditions as columns, each cell 'mean [low, high]'."""
    digits = 2 if metric == "psnr" else 4

    def cell(row: pd.Series) -> str:
        bounds = f" [{row[f'{metric}_low']:.{digits}f}, {row[f'{metric}_high']:.{digits}f}]" if math.isfinite(row[f"{metric}_low"]) else ""
        return f"{row[metric]:.{digits}f}{bounds}"

    cells = summary.assign(cell=summary.apply(cell, axis=1)).pivot(index="level", columns="condition", values="cell")
    cells = cells.reindex(index=levels, columns=condition_order(list(summary["condition"])))
    seeds = summary.groupby("level")["seeds"].min().reindex(levels)
    return pd.concat([seeds.rename("seeds"), cells], axis=1).reset_index().rename(columns={"level": "level"})


def design_text(experiment: Experiment) -> str:
    config, base = experiment.config, experiment.config.get("base", {})
    faces = experiment.scores.groupby(["trial_id", "condition"])["face"].nunique().min()
    epochs = "the level's epochs" if config.get("factor") == "epochs" else f"{base.get('epochs')} epochs"
    return (f"{config.get('factor')} at {', '.join(experiment.levels)}; each level trained from {len(config.get('seeds', []))} seeds "
            f"({', '.join(map(str, config.get('seeds', [])))}), {epochs} on {base.get('train_size') or 'all'} training faces, "
            f"validated on {base.get('val_size') or 'all'} faces with {base.get('val_noise') or base.get('noise')}, no early stopping and no "
            f"scheduler cutting trials: the same budget for every trial. Reference: {config.get('reference')} with train: "
            f"{config.get('train') or {}}. Each trial's best weights were scored on the first {int(faces)} faces of the fixed hold-out "
            "(PrivateTest faces not in Training) at every condition below; the statistics pair those faces.")


def question_text(experiment: Experiment) -> str:
    """The experiment file's question, or one made from its factor."""
    return experiment.config.get("question") or f"What does {experiment.config.get('factor')} change?"


def method_text(seeds: int) -> str:
    return (f"Level means: the mean over seeds of each model's mean score, with a {CONFIDENCE:.0%} Student-t interval over seeds "
            f"(n - 1 degrees of freedom; with {seeds} seeds the interval is wide on purpose, and one seed has none). Differences: "
            f"a - b on the same faces and seeds (seed s of every level draws the same batches and noise). Their interval joins a "
            f"percentile bootstrap of {DRAWS} draws that resamples seeds, then faces (seeded, so rebuilding gives the same numbers), "
            "with the paired t-interval over the seeds' mean differences: with few seeds the bootstrap alone understates the "
            "seed-to-seed spread. A verdict names a direction only where that interval excludes 0; 'do not differ' means this "
            "experiment cannot tell them apart, not that they are equal. Across many conditions and pairs about 1 in 20 intervals "
            "misses by chance: read a single condition's verdict among many with that in mind. All intervals are in differences.csv.")


def answer_section(experiment: Experiment, summary: pd.DataFrame, differences: pd.DataFrame, work: Path) -> Section:
    levels, label = experiment.levels, experiment.label
    question = question_text(experiment)
    plot_levels(summary, levels, f"{experiment.config.get('name')}: {question}", work / "levels.png")
    blocks: list = [Text(question), Text(design_text(experiment), "note")]
    blocks += [Text(line) for line in pair_summary(differences, "psnr", label)]
    blocks += [Figure("levels.png", f"mean over seeds of each level's hold-out PSNR (top) and SSIM (bottom), with {CONFIDENCE:.0%} t-interval bands"),
               Text(method_text(int(summary["seeds"].min())), "note")]
    for metric in METRICS:
        blocks.append(Table(interval_table(summary, levels, metric), f"{metric.upper()} per level: mean over seeds [{CONFIDENCE:.0%} t-interval]",
                            markdown_rows=None))
    for metric in METRICS:
        verdicts = verdict_table(differences, metric, label)
        verdicts.to_csv(work / f"verdicts_{metric}.csv", index=False)
        blocks.append(Table(verdicts, f"{metric.upper()} differences a - b with {CONFIDENCE:.0%} intervals (bootstrap over seeds and "
                                      f"faces joined with a t-interval over seeds; verdicts_{metric}.csv)", markdown_rows=None if metric == "psnr" else 12))
    return Section("The answer", blocks)


def trials_section(experiment: Experiment) -> Section:
    shown = experiment.trials.drop(columns=[c for c in ("checkpoint",) if c in experiment.trials.columns])
    failed = shown[shown["status"] != "completed"] if "status" in shown else shown.iloc[0:0]
    blocks: list = [Text("Every trial of the grid, with its validation scores (used only to pick each trial's best epoch) and its "
                         "outcome. Only completed trials are scored; a seed missing at one level drops out of that level's comparisons."),
                    Table(shown, "trials (trials.csv)", markdown_rows=None)]
    if len(failed):
        blocks.append(Text(f"{len(failed)} trial(s) did not complete: {', '.join(map(str, failed['trial_id']))}.", "warning"))
    return Section("Trials", blocks)


def build_experiment_report(experiment_dir: Path, overwrite: bool = False) -> Path:
    """Write ``experiment_dir/report/`` and return its path."""
    experiment = read_experiment(experiment_dir)
    out = experiment.path / REPORT_DIR
    check_output(out, overwrite)
    work = scratch_dir(out)
    try:
        summary = level_summary(experiment.scores)
        differences = pairwise_differences(experiment.scores, experiment.levels)
        summary.to_csv(work / "levels.csv", index=False)
        differences.to_csv(work / "differences.csv", index=False)
        sections = [answer_section(experiment, summary, differences, work), trials_section(experiment)]
        title = f"Experiment: {experiment.config.get('name', experiment.path.name)}"
        subtitle = f"{experiment.path.resolve()} - generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
        (work / "index.html").write_text(render_html(title, subtitle, sections, work))
        (work / "summary.md").write_text(render_markdown(title, subtitle, sections))
        publish(work, out, overwrite)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m results.experiment_report", description="Build EXPERIMENT_DIR/report/ from a finished experiment.")
    parser.add_argument("experiment_dir", type=Path, help="a finished experiment's directory (with experiment.yaml and scores.parquet)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    def run() -> None:
        setup_logging(args.verbose)
        out = build_experiment_report(args.experiment_dir, args.overwrite)
        print(f"report: {out / 'index.html'}\nsummary: {out / 'summary.md'}")

    run_cli(run, "results.experiment_report")


if __name__ == "__main__":
    main()
