"""Hyperparameter importance and the parallel-coordinates plot, through Optuna.

The trials come from the study's own Optuna database (``optuna.db``, read through Optuna's public API), so each
parameter has the distribution it was sampled from. A study without one (started before studies kept a database, or
kept on a database server) is replayed from its trial table with the search space of ``study.yaml`` (so a log-uniform
learning rate is treated as log-scaled). Either way only *completed* trials count: ASHA-stopped trials are left out, as
Optuna leaves pruned trials out of its importance. Every table names its evaluator: Optuna's default, PED-ANOVA,
always; fANOVA (a random forest, so it needs scikit-learn) beside it from ``FANOVA_TRIALS`` completed trials on, since
two evaluators that agree are worth more than one. With only a handful of trials importances are a hint, not a
measurement.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from denoise_core.errors import InputError
from denoise_core.space import parameters
from denoise_core.study_files import COMPLETED, usable_rows
from results.study_dir import Study

MIN_TRIALS = 2
FANOVA_TRIALS = 10  # a forest on fewer trials fits noise
PED_ANOVA, FANOVA = "PED-ANOVA", "fANOVA"
DB_FILE = "optuna.db"  # the study's Optuna storage, as study.optuna_db names it


@dataclass(frozen=True)
class Importance:
    table: pd.DataFrame | None  # parameter, then one column per evaluator (PED-ANOVA, fANOVA), each summing to 1; None when not computable
    reason: str  # what was computed, or why not
    trials: int

    @property
    def evaluators(self) -> list[str]:
        return [] if self.table is None else [c for c in self.table.columns if c != "parameter"]


def distribution(spec: dict[str, Any] | None, values: pd.Series):
    """An Optuna distribution from a study.yaml search entry, else from the values seen."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if spec:
        kind, bounds = next(iter(spec.items()))
        if kind == "choice":
            return CategoricalDistribution(list(bounds))
        if kind == "randint":
            return IntDistribution(int(bounds[0]), int(bounds[1]) - 1)
        return FloatDistribution(float(bounds[0]), float(bounds[1]), log=kind == "loguniform")
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and numeric.min() < numeric.max():
        return FloatDistribution(float(numeric.min()), float(numeric.max()))
    return CategoricalDistribution(sorted({str(v) for v in values}))


def as_choice(value: Any, dist) -> Any:
    """The trial-table value in the distribution's own type (CSV turns True into 'True' and 8 into 8.0)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        for choice in dist.choices:
            if str(choice) == str(value) or (isinstance(choice, (int, float)) and not isinstance(choice, bool) and _number(value) == choice):
                return choice
        raise ValueError(f"value {value!r} is not one of {dist.choices}")
    if isinstance(dist, IntDistribution):
        return int(value)
    return float(value)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def recorded_trials(study: Study) -> list[tuple[dict, dict, float]] | None:
    """(params, distributions, value) of each COMPLETE trial in the study's ``optuna.db``, or None when it has none; the value
    is the validation metric, a multi-objective study's first objective.

    The database is only read: no table is created in it, and a file that is not an Optuna database is a one-line error.
    """
    import optuna
    import sqlalchemy
    from optuna.trial import TrialState

    path = study.path / DB_FILE
    if not path.is_file():
        return None
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}", skip_table_creation=True)
        if study.name not in optuna.get_all_study_names(storage):
            return None
        recorded = optuna.load_study(study_name=study.name, storage=storage)
        return [(t.params, t.distributions, float(t.values[0])) for t in recorded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.OptunaError, RuntimeError) as error:
        cause = error.__cause__ or error  # Optuna wraps the database's own words
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise InputError(f"{path} is not a readable Optuna database ({first}); move it away to compute importance from trials.csv") from None


def replayed_trials(study: Study) -> list[tuple[dict, dict, float]]:
    """(params, distributions, value) of each completed trial of the trial table, with the distributions of ``study.yaml``."""
    specs = parameters(study.config.get("search") or {})
    completed = study.trials[usable_rows(study.trials, study.metric) & (study.trials["status"] == COMPLETED)]
    names = [c[len("param_"):] for c in study.param_columns]
    dists = {name: distribution(specs.get(name), completed[f"param_{name}"].dropna()) for name in names
             if completed[f"param_{name}"].notna().any()} if len(completed) else {}
    trials = []
    for _, row in completed.iterrows():  # a conditional parameter is absent from the trials whose options did not use it
        params = {name: as_choice(row[f"param_{name}"], dist) for name, dist in dists.items() if pd.notna(row[f"param_{name}"])}
        trials.append((params, {name: dists[name] for name in params}, float(row[study.metric])))
    return trials


def optuna_study(study: Study, short_names: bool = False):
    """The completed trials as an in-memory Optuna study, how many there are, and where they come from (``optuna.db`` or ``trials.csv``).

    ``short_names`` keeps the last part of each dotted setting (``bottleneck_size``), for plots whose axis labels
    Optuna cuts at 20 characters, unless two settings would then share a name.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials, source = recorded_trials(study), DB_FILE
    if trials is None:
        trials, source = replayed_trials(study), "trials.csv"
    names = list(dict.fromkeys(name for params, _, _ in trials for name in params))
    shown = {name: name.rsplit(".", 1)[-1] if short_names else name for name in names}
    if len(set(shown.values())) < len(shown):
        shown = {name: name for name in names}
    replay = optuna.create_study(direction="minimize" if study.mode == "min" else "maximize", study_name=study.name)
    for params, dists, value in trials:
        replay.add_trial(optuna.trial.create_trial(params={shown[name]: v for name, v in params.items()},
                                                   distributions={shown[name]: d for name, d in dists.items()}, value=value))
    return replay, len(trials), source


def evaluator(name: str):
    """The Optuna evaluator behind a column name; fANOVA is seeded so a report is reproducible."""
    import optuna

    if name == FANOVA:
        return optuna.importance.FanovaImportanceEvaluator(seed=0)
    return optuna.importance.PedAnovaImportanceEvaluator()


def importance_column(replay, name: str) -> pd.Series | None:
    """One evaluator's importances (normalised to sum to 1), or None when it has no finite answer on these trials."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = optuna.importance.get_param_importances(replay, evaluator=evaluator(name))
    column = pd.Series({parameter: float(value) for parameter, value in values.items()}, name=name, dtype=float)
    return column if len(column) and all(math.isfinite(v) for v in column) else None


def param_importance(study: Study) -> Importance:
    """Each searched hyperparameter's importance for the validation metric by PED-ANOVA (and fANOVA from 10 trials), or why there is none."""
    if not study.param_columns:
        return Importance(None, "the study searched no hyperparameters (no param_* columns in trials.csv)", 0)
    replay, count, source = optuna_study(study)
    if count < MIN_TRIALS:
        return Importance(None, f"importance needs at least {MIN_TRIALS} completed trials; this study has {count}", count)
    ped_anova = importance_column(replay, PED_ANOVA) if len({trial.value for trial in replay.trials}) > 1 else None
    if ped_anova is None:
        return Importance(None, f"importance is undefined on these {count} trials (all scored the same)", count)
    fanova, why = None, f"fewer than {FANOVA_TRIALS} trials: treat as a hint; fANOVA is added from {FANOVA_TRIALS}"
    if count >= FANOVA_TRIALS:
        try:
            fanova, why = importance_column(replay, FANOVA), "fANOVA had no finite answer on these trials"
        except (RuntimeError, ValueError) as error:  # e.g. every tree of the forest saw zero variance
            why = f"fANOVA had no answer on these trials: {str(error).rstrip('.')}"
    table = pd.concat([ped_anova] + ([fanova] if fanova is not None else []), axis=1)
    table = table.sort_values(PED_ANOVA, ascending=False, kind="stable").rename_axis("parameter").reset_index()
    if fanova is not None:
        return Importance(table, f"PED-ANOVA importance (Optuna's default) and fANOVA importance (random forest, seed 0) of {study.metric} "
                                 f"over {count} completed trials (from {source})", count)
    return Importance(table, f"PED-ANOVA importance (Optuna's default) of {study.metric} over {count} completed trials (from {source}; {why})", count)


def plot_importance(importance: Importance, path: Path) -> None:
    """One panel per evaluator, same parameter order, so the two can be read side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = importance.table.iloc[::-1]
    names = importance.evaluators
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 + 2.6 * len(names), 0.45 * len(table) + 1.6), sharey=True, squeeze=False)
    for ax, name, colour in zip(axes[0], names, ("#4c72b0", "#55a868")):
        ax.barh(table["parameter"], table[name], color=colour)
        ax.set_xlim(0, max(1e-9, float(table[name].max())) * 1.1)
        ax.set_xlabel("importance (sums to 1)")
        ax.set_title(f"{name} importance", fontsize=10)
    fig.suptitle(f"hyperparameter importance over {importance.trials} completed trials", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_parallel_coordinates(study: Study, path: Path) -> str | None:
    """Optuna's parallel-coordinates plot of the completed trials; returns why not, when it cannot be drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    if not study.param_columns:
        return "the study searched no hyperparameters"
    replay, count, _ = optuna_study(study, short_names=True)
    if count < 1:
        return "no completed trial to draw"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax = optuna.visualization.matplotlib.plot_parallel_coordinate(replay, target_name=study.metric)
    fig = ax.figure
    for lines in ax.collections:  # Optuna's "Blues" maps the worst trial to near-white: start the scale lower, so every line shows
        low, high = lines.get_clim()
        if low is not None and high is not None and high > low:
            lines.set_clim(low - 0.35 * (high - low), high)
    fig.set_size_inches(max(7.0, 1.6 * (len(study.param_columns) + 1) + 2), 4.8)
    ax.set_title(f"completed trials: hyperparameters and {study.metric} (darker is better)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None
