"""The search as it ran: each trial's per-epoch history from its result.json, and the tables and figures drawn from it.

Tune appends one JSON line per reported epoch to ``trial_<id>/result.json``. From those lines and trials.csv come
the optimization history (each trial's selection metric in the order the trials finished), the learning curves
(where ASHA cut each trial, against its rungs) and the timeline (which node trained which trial, and when). A
missing or damaged file costs that trial its place in these figures, never the report: the reader gets a note.
Older studies saved sample faces in every line (``val_images``, hundreds of kB); they are cut out of the text
before it is parsed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from denoise_core.space import possible_values
from denoise_core.study_files import COMPLETED, FAILED, INTERRUPTED, RESULT_FILE, STOPPED_BY_ASHA, trial_dirname, usable_rows
from results.study_dir import Study, ranked_trials

VAL_IMAGES = re.compile(r'"val_images":\s*\[[-0-9.,\s\[\]eE+]*\]\s*,?\s*')
KINDS = (COMPLETED, STOPPED_BY_ASHA, INTERRUPTED, FAILED)
COLOURS = {COMPLETED: "#4c72b0", STOPPED_BY_ASHA: "#dd8452", INTERRUPTED: "#8c8c8c", FAILED: "#c44e52"}
EPOCH_COLUMNS = ("trial_id", "epoch", "value", "timestamp", "time_this_iter_s", "iterations_since_restore", "node")
LABELLED = 3  # best trials named at the end of their learning curve


@dataclass(frozen=True)
class Histories:
    epochs: pd.DataFrame  # one row per reported epoch, in file order (EPOCH_COLUMNS; value: the study's per-epoch metric)
    notes: list[str]  # which trials are missing from it, and why


def status_kind(status: Any) -> str:
    """The four kinds the figures tell apart; every ``failed: ...`` and ``error: ...`` status is one kind."""
    return status if status in KINDS[:3] else FAILED


def trial_dir(study: Study, row: pd.Series) -> Path:
    """``trial_<id>`` under the study directory, else the recorded path's name under it (a copy), else the recorded path."""
    here = study.path / trial_dirname(row["trial_id"])
    recorded = row.get("path")
    if here.is_dir() or not isinstance(recorded, str) or not recorded:
        return here
    moved = study.path / Path(recorded).name
    return moved if moved.is_dir() else Path(recorded)


def number(value: Any) -> float:
    """A JSON number as a float; anything else (missing, a string, a boolean) as NaN."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def parse_line(line: str) -> dict[str, Any]:
    """One result.json line as a dict, its ``val_images`` cut out of the text first (parsing the pixels is most of the cost)."""
    try:
        record = json.loads(VAL_IMAGES.sub("", line, count=1))
    except ValueError:
        record = json.loads(line)  # val_images was the last key and left a trailing comma: parse the whole line
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def read_epochs(path: Path, trial_id: str, metric: str) -> list[dict[str, Any]]:
    """The epochs one result.json reports; a ValueError names the first line that is not a JSON object."""
    rows = []
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = parse_line(line)
            except ValueError:
                raise ValueError(f"line {line_number} is not a JSON object") from None
            rows.append({"trial_id": trial_id, "epoch": number(record.get("epoch", record.get("training_iteration"))),
                         "value": number(record.get(metric)), "timestamp": number(record.get("timestamp")),
                         "time_this_iter_s": number(record.get("time_this_iter_s")),
                         "iterations_since_restore": number(record.get("iterations_since_restore")),
                         "node": record.get("train_node_ip") or record.get("node_ip")})
    return rows


def listed(ids: list[str], most: int = 8) -> str:
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")


def read_histories(study: Study) -> Histories:
    """Every trial's reported epochs; a trial whose result.json is missing, empty or damaged is left out with a note."""
    rows: list[dict[str, Any]] = []
    missing, empty, notes = [], [], []
    for _, trial in study.trials.iterrows():
        path = trial_dir(study, trial) / RESULT_FILE
        if not path.is_file():
            missing.append(trial["trial_id"])
            continue
        try:
            epochs = read_epochs(path, trial["trial_id"], study.epoch_metric)
        except (OSError, ValueError) as error:
            notes.append(f"Trial {trial['trial_id']}: its {RESULT_FILE} is damaged ({error}), so it is left out of the optimization "
                         "history, the learning curves and the timeline.")
            continue
        if not epochs:
            empty.append(trial["trial_id"])
        rows += epochs
    if missing:
        notes.insert(0, f"{len(missing)} of {len(study.trials)} trials have no {RESULT_FILE} ({listed(missing)}): they are not in the "
                        "optimization history, the learning curves or the timeline.")
    if empty:
        notes.append(f"{len(empty)} trials reported no epoch ({listed(empty)}): their {RESULT_FILE} is empty.")
    return Histories(pd.DataFrame(rows, columns=list(EPOCH_COLUMNS)), notes)


def optimization_history(study: Study, epochs: pd.DataFrame) -> pd.DataFrame:
    """Trials in the order they finished (their last result), their selection metric, and the best so far among usable trials.

    Usable is what model selection uses: completed or stopped by ASHA, with a finite metric (``usable_rows``).
    """
    columns = ["order", "trial_id", "status", "finished", study.metric, "best_so_far"]
    finished = epochs.dropna(subset=["timestamp"]).groupby("trial_id")["timestamp"].max()
    trials = study.trials[study.trials["trial_id"].isin(finished.index)].copy()
    if trials.empty:
        return pd.DataFrame(columns=columns)
    trials["finished"] = trials["trial_id"].map(finished)
    trials = trials.sort_values(["finished", "trial_id"], kind="stable").reset_index(drop=True)
    values = pd.to_numeric(trials[study.metric], errors="coerce") if study.metric in trials else pd.Series(math.nan, index=trials.index)
    counted = values.where(usable_rows(trials, study.metric))
    best = (counted.cummax() if study.mode == "max" else counted.cummin()).ffill()
    return pd.DataFrame({"order": range(1, len(trials) + 1), "trial_id": trials["trial_id"], "status": trials["status"],
                         "finished": trials["finished"], study.metric: values, "best_so_far": best})[columns]


def learning_curves(study: Study, epochs: pd.DataFrame) -> pd.DataFrame:
    """The per-epoch metric of every trial (an epoch reported twice after a restore: its last report); ``cut``: where ASHA stopped it."""
    metric = study.epoch_metric
    curves = (epochs.dropna(subset=["epoch", "value"]).drop_duplicates(["trial_id", "epoch"], keep="last")
              .sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True))
    status = dict(zip(study.trials["trial_id"], study.trials["status"]))
    curves = pd.DataFrame({"trial_id": curves["trial_id"], "status": curves["trial_id"].map(status), "epoch": curves["epoch"].astype(int),
                           metric: curves["value"]})
    last = curves.groupby("trial_id")["epoch"].transform("max") if len(curves) else curves["epoch"]
    curves["cut"] = (curves["status"] == STOPPED_BY_ASHA) & (curves["epoch"] == last)
    return curves


def max_epochs(config: dict[str, Any]) -> int | None:
    """ASHA's ``max_t`` as the study set it: the most epochs any trial can train (train.epochs, or more if the search sets epochs)."""
    train = (config.get("train") or {}).get("epochs")
    found = [v for v in [train, *possible_values(config.get("search") or {}, "epochs")] if isinstance(v, int) and not isinstance(v, bool)]
    return max(found) if found else None


def asha_rungs(config: dict[str, Any]) -> list[int]:
    """The epochs where ASHA compares trials: grace_period * reduction_factor**k, below the most epochs a trial can train."""
    if config.get("scheduler") != "asha":
        return []
    grace, factor, limit = config.get("grace_period"), config.get("reduction_factor"), max_epochs(config)
    if not isinstance(grace, int) or not isinstance(factor, int) or limit is None or grace < 1 or factor < 2:
        return []
    rungs = []
    while grace < limit:
        rungs.append(grace)
        grace *= factor
    return rungs


def timeline(study: Study, epochs: pd.DataFrame) -> pd.DataFrame:
    """One bar per stretch of training: start of its first epoch, its last result, the node that trained it, a lane in that node's row.

    A trial restored from a checkpoint (``iterations_since_restore`` back at 1) starts a new stretch, perhaps on another node.
    """
    status = dict(zip(study.trials["trial_id"], study.trials["status"]))
    recorded = dict(zip(study.trials["trial_id"], study.trials["node_ip"])) if "node_ip" in study.trials else {}
    rows = []
    for trial_id, reports in epochs.dropna(subset=["timestamp"]).groupby("trial_id", sort=False):
        stretches = (reports["iterations_since_restore"] == 1).cumsum()
        for segment, (_, part) in enumerate(reports.groupby(stretches, sort=True)):
            first, nodes = part.iloc[0], part["node"].dropna()
            fallback = recorded.get(trial_id)
            node = str(nodes.iloc[-1]) if len(nodes) else (fallback if isinstance(fallback, str) and fallback else "unknown")
            took = first["time_this_iter_s"] if math.isfinite(first["time_this_iter_s"]) else 0.0
            rows.append({"trial_id": trial_id, "status": status.get(trial_id), "node": node, "segment": segment,
                         "start": first["timestamp"] - took, "end": part["timestamp"].max()})
    table = pd.DataFrame(rows, columns=["trial_id", "status", "node", "segment", "start", "end"])
    table = table.sort_values(["node", "start", "trial_id"], kind="stable").reset_index(drop=True)
    table["lane"] = lanes(table)
    return table


def lanes(table: pd.DataFrame) -> list[int]:
    """A lane within its node's row for each bar (sorted by node, then start), so trials that ran at once on a node do not overlap."""
    found, ends, node = [], [], None
    for row in table.itertuples():
        if row.node != node:
            ends, node = [], row.node
        free = next((lane for lane, end in enumerate(ends) if end <= row.start), len(ends))
        ends[free:free + 1] = [row.end]
        found.append(free)
    return found


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def legend_handles(kinds: set[str]) -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=COLOURS[kind], lw=2, label=kind) for kind in KINDS if kind in kinds]


def plot_history(history: pd.DataFrame, metric: str, mode: str, path: Path) -> None:
    """Each trial's metric by finishing order, marked by status, and the best-so-far step line."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    kinds = history["status"].map(status_kind)
    values = pd.to_numeric(history[metric], errors="coerce")
    styles = {COMPLETED: dict(marker="o", color=COLOURS[COMPLETED]),
              STOPPED_BY_ASHA: dict(marker="o", facecolors="none", edgecolors=COLOURS[STOPPED_BY_ASHA], linewidths=1.4),
              INTERRUPTED: dict(marker="s", color=COLOURS[INTERRUPTED]),
              FAILED: dict(marker="x", color=COLOURS[FAILED], linewidths=1.8)}
    for kind in KINDS:
        scored = history[(kinds == kind) & values.notna()]
        if len(scored):
            ax.scatter(scored["order"], values[scored.index], s=36, zorder=3, label=kind, **styles[kind])
    unscored = history[values.isna()]
    if len(unscored):  # failed before a score: marked at the bottom edge, at their finishing position
        ax.scatter(unscored["order"], [0.03] * len(unscored), transform=ax.get_xaxis_transform(), s=36, zorder=3, clip_on=False,
                   label="no score (at the bottom)", **{**styles[FAILED], "color": "#7f1d1d"})
    ax.step(history["order"], history["best_so_far"], where="post", color="black", lw=1.3, zorder=2,
            label=f"best so far ({'highest' if mode == 'max' else 'lowest'}, completed or stopped by ASHA)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial, in the order it finished")
    ax.set_ylabel(f"{metric} (trials.csv)")
    ax.set_title(f"optimization history: {len(history)} trials ({'higher' if mode == 'max' else 'lower'} is better)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_learning_curves(curves: pd.DataFrame, rungs: list[int], metric: str, best: list[str], path: Path) -> None:
    """The per-epoch metric of every trial coloured by status, ASHA's cuts as crosses, its rungs as dotted lines; ``best`` trials named."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.6))
    kinds = set()
    for trial_id, rows in curves.groupby("trial_id", sort=False):
        kind = status_kind(rows["status"].iloc[0])
        kinds.add(kind)
        strong = kind == COMPLETED
        ax.plot(rows["epoch"], rows[metric], color=COLOURS[kind], lw=1.8 if strong else 1.0, alpha=0.95 if strong else 0.7,
                marker=".", ms=4, zorder=3 if strong else 2)
        if trial_id in best:
            ax.annotate(trial_id, (rows["epoch"].iloc[-1], rows[metric].iloc[-1]), xytext=(7, 0), textcoords="offset points",
                        fontsize=7, va="center", color=COLOURS[kind])
    cuts = curves[curves["cut"]]
    ax.scatter(cuts["epoch"], cuts[metric], marker="x", s=50, color="black", linewidths=1.6, zorder=4)
    for rung in rungs:
        ax.axvline(rung, color="#777777", ls=":", lw=1.2, zorder=1)
        ax.text(rung, 0.98, f" rung {rung}", transform=ax.get_xaxis_transform(), fontsize=8, va="top", color="#555555")
    handles = legend_handles(kinds)
    if len(cuts):
        handles.append(Line2D([], [], color="black", marker="x", lw=0, label="stopped by ASHA here"))
    if rungs:
        handles.append(Line2D([], [], color="#777777", ls=":", label="ASHA rung"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    last = int(curves["epoch"].max())
    ax.set_xlim(0.5, last + 0.5 + (0.12 * last if best else 0.0))  # room for the names at the right end
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} (result.json, each epoch)")
    ax.set_title(f"learning curves of {curves['trial_id'].nunique()} trials", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_timeline(table: pd.DataFrame, path: Path) -> None:
    """One row per node (a lane for each trial running at the same time), one bar per stretch of training, labelled with its trial id."""
    from matplotlib.patches import Patch

    plt = pyplot()
    origin = float(table["start"].min())
    span = max(float(table["end"].max()) - origin, 1.0)
    unit, scale = ("hours", 3600.0) if span > 3 * 3600 else ("minutes", 60.0)
    nodes = list(dict.fromkeys(table["node"]))
    heights = {node: int(table.loc[table["node"] == node, "lane"].max()) + 1 for node in nodes}
    base = dict(zip(nodes, [sum(heights[n] for n in nodes[:i]) for i in range(len(nodes))]))
    fig, ax = plt.subplots(figsize=(9, 1.3 + 0.42 * sum(heights.values())))
    y = [base[row.node] + row.lane for row in table.itertuples()]
    left = (table["start"] - origin) / scale
    width = (table["end"] - table["start"]) / scale
    colours = [COLOURS[status_kind(s)] for s in table["status"]]
    ax.barh(y, width, left=left, height=0.8, color=colours, edgecolor="white", linewidth=0.6)
    for node in nodes[1:]:
        ax.axhline(base[node] - 0.5, color="#bbbbbb", lw=0.8)
    ax.set_yticks([base[n] + (heights[n] - 1) / 2 for n in nodes], nodes)
    ax.set_ylim(sum(heights.values()) - 0.5, -0.5)
    ax.set_xlim(0, span / scale * 1.01)
    ax.set_xlabel(f"{unit} since the first trial started")
    ax.set_title(f"timeline: {table['trial_id'].nunique()} trials on {len(nodes)} node{'s' if len(nodes) > 1 else ''}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    kinds = {status_kind(s) for s in table["status"]}
    ax.legend(handles=[Patch(color=COLOURS[k], label=k) for k in KINDS if k in kinds], fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)
    fig.tight_layout()
    inches_per_unit = ax.get_position().width * fig.get_figwidth() / (span / scale * 1.01)
    for row, x, w, height in zip(table.itertuples(), left, width, y):
        label = next((text for text in (row.trial_id, row.trial_id[:4]) if w * inches_per_unit > 0.6 * 7 / 72 * len(text) + 0.04), None)
        if label:
            ax.text(x + w / 2, height, label, ha="center", va="center", fontsize=7, color="white")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def best_trials(study: Study, count: int = LABELLED) -> list[str]:
    return list(ranked_trials(study)["trial_id"].head(count))
