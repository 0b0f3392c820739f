"""The search-space language of ``study.yaml``: distributions, and named options that make settings conditional.

A search space maps names to entries. A *setting* (a training field such as ``lr``, or a model field such as
``model.dropout``) takes one distribution::

    lr: {loguniform: [0.0005, 0.005]}
    model.bottleneck_size: {choice: [16, 32, 64]}
    model.dropout: {uniform: [0.0, 0.3]}
    epochs: {randint: [4, 9]}               # 4..8: the high bound is excluded

Any other name is a *group*: a choice between named options, each of which fixes settings and may hold
entries of its own, searched only when that option is chosen (conditional parameters)::

    output:
      choice:
        plain: {}
        gate: {model.gate: true, model.mask_input: true}
        switching: {model.switching: true, model.mask_input: {choice: [false, true]}}
    refinement:
      choice:
        none: {model.refine: 0}
        stage: {model.refine: {choice: [3, 5]}, model.refine_width: {choice: [16, 32]}}

Each group is one parameter named after the group (its options are its values) and each setting one parameter
named after the setting, so a trial's parameters are exactly the choices it depended on. A setting may
appear in several options, always with the same distribution, but never twice on one path: not in an option and an
enclosing level, nor in options of two groups that one trial can choose together.

This module reads a space and needs neither Ray nor Optuna: checking it, its option paths, the settings a
trial's parameters stand for, the values a setting can take. Sampling it with Optuna is ``study.space``.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping

from denoise_core.errors import InputError

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
Assignments = list[tuple[str, Any]]


class SearchSpaceError(InputError):
    """A search space that cannot be sampled; the message names the entry."""


def is_distribution(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS and not is_group(value)


def check_space(space: Mapping[str, Any], settings: set[str]) -> None:
    """Structure and bounds of every entry (values are checked against the schema by ``study.config``)."""
    if not isinstance(space, Mapping):
        raise SearchSpaceError(f"search must be a mapping of settings and groups, got {space!r}")
    seen: dict[str, Any] = {}
    _check_entries(space, settings, "search", set(), seen)
    for path in _setters(space, "search"):
        _check_set_once(path)


def _check_entries(entries: Mapping[str, Any], settings: set[str], where: str, on_path: set[str], seen: dict[str, Any]) -> None:
    for name, entry in entries.items():
        at = f"{where}.{name}"
        if not isinstance(name, str) or not name:
            raise SearchSpaceError(f"{where}: entry names must be text, got {name!r}")
        if name in on_path:
            raise SearchSpaceError(f"{at}: '{name}' is set twice on one path (once in an enclosing option); set it in one place")
        if name in settings:
            if is_distribution(entry):
                _check_distribution(entry, at)
                if name in seen and seen[name] != entry:
                    raise SearchSpaceError(f"{at}: '{name}' is searched with {seen[name]} elsewhere; use the same distribution everywhere")
                seen[name] = entry
            elif where == "search":
                raise SearchSpaceError(f"{at}: a searched setting needs one of {', '.join(DISTRIBUTIONS)}, e.g. {{choice: [a, b]}} "
                                       f"(a fixed value belongs under train:)")
            elif isinstance(entry, Mapping):
                raise SearchSpaceError(f"{at}: needs one of {', '.join(DISTRIBUTIONS)} or a plain value, got {dict(entry)}")
            continue
        if "." in name or not is_group(entry):
            known = "; searchable: " + ", ".join(sorted(settings))
            raise SearchSpaceError(f"{at}: unknown setting '{name}' (a group needs {{choice: {{OPTION: {{...}}, ...}}}}){known}")
        if name in seen:
            raise SearchSpaceError(f"{at}: the group name '{name}' is used twice")
        seen[name] = "group"
        options = entry["choice"]
        if not options:
            raise SearchSpaceError(f"{at}: a group needs at least one option")
        for option, body in options.items():
            if not isinstance(option, str):
                raise SearchSpaceError(f"{at}: option names must be text, got {option!r}")
            if body is None:
                body = {}
            if not isinstance(body, Mapping):
                raise SearchSpaceError(f"{at}.{option}: an option is a mapping of settings (or {{}}), got {body!r}")
            _check_entries(body, settings, f"{at}.{option}", on_path | {name} | _fixed_names(entries, name), seen)


def _fixed_names(entries: Mapping[str, Any], except_name: str) -> set[str]:
    """Settings that this level already searches, which an option below must not set again."""
    return {name for name, entry in entries.items() if name != except_name and is_distribution(entry)}


def _setters(entries: Mapping[str, Any], where: str) -> Iterator[list[tuple[str, str]]]:
    """Every option path as the settings it sets, each with the option that sets it (``search.GROUP.OPTION``)."""
    own = [(name, where) for name, entry in entries.items() if not is_group(entry)]
    groups = [(name, entry["choice"]) for name, entry in entries.items() if is_group(entry)]
    yield from _combine(own, groups, where)


def _combine(found: list[tuple[str, str]], groups: list[tuple[str, Mapping[str, Any]]], where: str) -> Iterator[list[tuple[str, str]]]:
    if not groups:
        yield found
        return
    (name, options), rest = groups[0], groups[1:]
    for option, body in options.items():
        for below in _setters(body or {}, f"{where}.{name}.{option}"):
            yield from _combine(found + below, rest, where)


def _check_set_once(path: list[tuple[str, str]]) -> None:
    """A setting set twice on one path (two sibling groups' options, say) would train a trial with one value and record the other."""
    first: dict[str, str] = {}
    for name, where in path:
        if name in first:
            raise SearchSpaceError(f"search: '{name}' is set by both {first[name]} and {where}, which one trial can choose "
                                   "together, so it would train with one value and be recorded with the other; set it in one place only")
        first[name] = where


def _check_distribution(spec: Mapping[str, Any], at: str) -> None:
    kind, values = next(iter(spec.items()))
    if not isinstance(values, list) or not values:
        raise SearchSpaceError(f"{at}: {kind} needs a non-empty list, e.g. {{{kind}: {'[a, b]' if kind == 'choice' else '[low, high]'}}}")
    if kind == "choice":
        if len({repr(v) for v in values}) != len(values):
            raise SearchSpaceError(f"{at}: choice lists a value twice: {values}")
        return
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    if len(values) != 2 or not numeric or values[0] >= values[1]:
        raise SearchSpaceError(f"{at}: {kind} needs [low, high] with low < high, got {values}")
    if kind == "randint" and not all(isinstance(v, int) for v in values):
        raise SearchSpaceError(f"{at}: randint needs whole numbers [low, high) , got {values}")
    if kind == "randint" and values[1] - values[0] < 1:
        raise SearchSpaceError(f"{at}: randint [low, high) excludes high, so it needs high > low")
    if kind == "loguniform" and values[0] <= 0:
        raise SearchSpaceError(f"{at}: loguniform needs a positive low bound, got {values[0]}")


def edge_values(spec: Mapping[str, Any]) -> list[Any]:
    """The values a sampled setting can take at its edges: every choice, both bounds of a range."""
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        return list(values)
    if kind == "randint":
        return [values[0], values[1] - 1]
    return [values[0], values[1]]


def discrete_values(space: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Every value of each parameter that is a choice (a ``choice`` setting or a group), in the space's order."""
    found: dict[str, list[Any]] = {}
    for name, entry in space.items():
        if is_group(entry):
            found.setdefault(name, list(entry["choice"]))
            for body in entry["choice"].values():
                for inner, values in discrete_values(body or {}).items():
                    found.setdefault(inner, values)
        elif is_distribution(entry) and "choice" in entry:
            found.setdefault(name, list(entry["choice"]))
    return found


def branches(space: Mapping[str, Any]) -> Iterator[tuple[str, Assignments, dict[str, Any]]]:
    """Every option path of the space: its description, its fixed settings, and the distributions it samples.

    The number of paths is the product of the options of independent groups, which stays small in practice.
    """
    yield from _branches(space, "", [], {})


def _branches(entries: Mapping[str, Any], label: str, fixed: Assignments, sampled: dict[str, Any]) -> Iterator[tuple[str, Assignments, dict[str, Any]]]:
    fixed, sampled = list(fixed), dict(sampled)
    groups = []
    for name, entry in entries.items():
        if is_distribution(entry):
            sampled[name] = entry
        elif is_group(entry):
            groups.append((name, entry["choice"]))
        else:
            fixed.append((name, entry))
    yield from _expand_groups(groups, label, fixed, sampled)


def is_group(entry: Any) -> bool:
    return isinstance(entry, Mapping) and set(entry) == {"choice"} and isinstance(entry["choice"], Mapping)


def _expand_groups(groups, label, fixed, sampled):
    if not groups:
        yield label or "(no groups)", fixed, sampled
        return
    (name, options), rest = groups[0], groups[1:]
    for option, body in options.items():
        for sub_label, sub_fixed, sub_sampled in _branches(body or {}, f"{label + ', ' if label else ''}{name}={option}", fixed, sampled):
            yield from _expand_groups(rest, sub_label, sub_fixed, sub_sampled)


def assignments(space: Mapping[str, Any], params: Mapping[str, Any]) -> Assignments:
    """The training settings a trial's sampled ``params`` stand for: sampled values and the chosen options' fixed ones."""
    result: Assignments = []
    _assign(space, params, result)
    return result


def _assign(entries: Mapping[str, Any], params: Mapping[str, Any], result: Assignments) -> None:
    for name, entry in entries.items():
        if is_distribution(entry):
            if name not in params:
                raise SearchSpaceError(f"trial parameters {dict(params)} lack '{name}', which the search space samples")
            result.append((name, params[name]))
        elif is_group(entry):
            chosen = params.get(name)
            options = entry["choice"]
            if chosen not in options:
                raise SearchSpaceError(f"trial parameter '{name}' is {chosen!r}, not one of its options {list(options)}")
            _assign(options[chosen] or {}, params, result)
        else:
            result.append((name, entry))


def parameters(space: Mapping[str, Any]) -> dict[str, dict[str, list]]:
    """Every Optuna parameter of the space as a distribution entry (a group is a choice of its option names)."""
    found: dict[str, dict[str, list]] = {}
    _collect(space, found)
    return found


def _collect(entries: Mapping[str, Any], found: dict[str, dict[str, list]]) -> None:
    for name, entry in entries.items():
        if is_distribution(entry):
            found[name] = {k: list(v) for k, v in entry.items()}
        elif is_group(entry):
            found[name] = {"choice": list(entry["choice"])}
            for body in entry["choice"].values():
                _collect(body or {}, found)


def possible_values(space: Mapping[str, Any], name: str) -> list[Any]:
    """Every value the setting ``name`` can take on any option path: fixed values, and the edges of its distributions."""
    found = []
    for _, fixed, sampled in branches(space):
        found += [value for setting, value in fixed if setting == name]
        if name in sampled:
            found += edge_values(sampled[name])
    return found


def searched_settings(space: Mapping[str, Any]) -> set[str]:
    """Settings that can differ between trials: sampled anywhere, or fixed by some option."""
    names: set[str] = set()
    for _, fixed, sampled in branches(space):
        names |= {name for name, _ in fixed} | set(sampled)
    return names
