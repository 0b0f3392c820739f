"""Sampling a search space (``denoise_core.space``) with Optuna, define-by-run (``OptunaSearch(space=callable)``).

Each group is one categorical parameter named after the group, and only the chosen option's entries are
asked for after it, so a trial's parameters are exactly the choices it depended on. A setting that appears
in several options is one parameter, which Optuna learns across them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

from denoise_core.space import is_distribution, is_group


def sample(space: Mapping[str, Any], trial: Any) -> None:
    """The define-by-run function: ask ``trial`` (an Optuna trial) for every parameter the chosen path needs."""
    _sample_entries(space, trial)


def _sample_entries(entries: Mapping[str, Any], trial: Any) -> None:
    for name, entry in entries.items():
        if is_distribution(entry):
            kind, values = next(iter(entry.items()))
            if kind == "choice":
                trial.suggest_categorical(name, list(values))
            elif kind == "randint":
                trial.suggest_int(name, values[0], values[1] - 1)
            else:
                trial.suggest_float(name, float(values[0]), float(values[1]), log=kind == "loguniform")
        elif is_group(entry):
            options = entry["choice"]
            chosen = trial.suggest_categorical(name, list(options))
            _sample_entries(options[chosen] or {}, trial)


def sampler_for(space: Mapping[str, Any]) -> Callable[[Any], None]:
    """A picklable define-by-run function for ``OptunaSearch(space=...)``."""
    return functools.partial(sample, space)
