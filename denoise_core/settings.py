"""One configuration pipeline: typed dataclasses as the schema, layers of plain mappings merged over them.

Every command builds its settings the same way. A base mapping (the defaults, a preset, or a saved
``config.yaml`` / ``study.yaml`` on resume) is overlaid with a YAML file, then command-line flags, then
``--set KEY=VALUE`` assignments, in that order. Mappings merge key by key at every depth, and a dotted key
(``train.model.dropout``) reaches into them. The merged mapping is then built into the frozen dataclasses
with a type check per field, so a wrong value is one line naming its dotted path.

YAML values are read with the YAML 1.2 number rules (``1e-3`` is a float, as in every other YAML reader;
PyYAML's YAML 1.1 rules read it as a string), in files and in flag values alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

from denoise_core.errors import InputError


class SettingsError(InputError):
    """A setting that is unknown, of the wrong type or out of range; the message names its dotted path."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``1e-3``, ``1E5`` and ``.5`` are numbers."""


_FLOAT_12 = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$")
_Loader.yaml_implicit_resolvers = {key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
                                   for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


MAX_DEPTH = 32
"""Settings nest a few levels (``train.model.dropout``); far deeper input is refused before anything recurses into it."""


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text (safe: plain data only); a syntax error or absurd nesting becomes one line naming ``source``."""
    try:
        values = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except RecursionError:
        raise SettingsError(f"{source}: nested too deeply to read (settings nest at most {MAX_DEPTH} levels)") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SettingsError(f"{source}: not valid YAML{where}: {problem}") from None
    if nesting_depth(values) > MAX_DEPTH:
        raise SettingsError(f"{source}: nested more than {MAX_DEPTH} levels deep; settings nest a few levels (train.model.dropout)")
    return values


def nesting_depth(value: Any) -> int:
    """How many mappings and lists deep ``value`` goes (up to one past ``MAX_DEPTH``), counted without recursion."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth + 1)
            if deepest > MAX_DEPTH:  # also ends the walk of a list that holds itself
                return deepest
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def load_yaml_file(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file that must hold a mapping of settings (an empty file is an empty mapping)."""
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"{what} {path} does not exist" + (" (it is a directory)" if path.is_dir() else ""))
    values = load_yaml(read_text(path, what), str(path))
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise SettingsError(f"{what} {path} must hold a mapping of settings (KEY: VALUE lines), not a {type(values).__name__}")
    return values


def read_text(path: Path, what: str) -> str:
    """A settings file's text; a file that is not UTF-8 is one line naming it and the encoding problem."""
    raw = path.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise SettingsError(f"{what} {path} is UTF-16 text; save it as UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SettingsError(f"{what} {path} is not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start} is not valid "
                            "UTF-8); save it as UTF-8") from None


def parse_assignment(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a dotted KEY and a YAML VALUE (``train.lr=1e-3``, ``search.lr={loguniform: [1e-4, 1e-2]}``)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise SettingsError(f"--set {item!r}: write KEY=VALUE with a dotted KEY, e.g. --set train.lr=0.001")
    return key, load_yaml(raw, f"--set {key}")


def set_path(tree: Mapping[str, Any], path: str, value: Any, flat: tuple[str, ...] = ()) -> dict[str, Any]:
    """A copy of ``tree`` with the dotted ``path`` set to ``value`` (missing mappings on the way are created).

    Under a key in ``flat`` the rest of the path is one key: ``search.model.dropout`` sets the search entry
    ``model.dropout``, since search entries are named by dotted settings.
    """
    head, _, rest = path.partition(".")
    result = dict(tree)
    if head in flat and rest:
        inner = result.get(head) or {}
        result[head] = {**inner, rest: value}
        return result
    if not rest:
        result[head] = value
        return result
    inner = result.get(head)
    if inner is None:
        inner = {}
    if not isinstance(inner, Mapping):
        raise SettingsError(f"{path}: '{head}' is a value ({inner!r}), not a group of settings")
    result[head] = set_path(inner, rest, value)
    return result


def merge(base: Mapping[str, Any], layer: Mapping[str, Any], whole: tuple[str, ...] = (), prefix: str = "") -> dict[str, Any]:
    """``layer`` over ``base``, mapping by mapping at every depth; the dotted paths in ``whole`` are replaced as a unit."""
    result = dict(base)
    for key, value in layer.items():
        path = f"{prefix}{key}"
        old = result.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping) and path not in whole:
            result[key] = merge(old, value, whole, f"{path}.")
        else:
            result[key] = value
    return result


def apply_assignments(tree: Mapping[str, Any], assignments: list[tuple[str, Any]], flat: tuple[str, ...] = ()) -> dict[str, Any]:
    result = dict(tree)
    for path, value in assignments:
        result = set_path(result, path, value, flat)
    return result


def to_dict(instance: Any) -> dict[str, Any]:
    """A dataclass as plain YAML-ready data (tuples become lists)."""
    return _plain(dataclasses.asdict(instance))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths whose values differ between two nested mappings."""
    paths = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            paths += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            paths.append(f"{prefix}{key}")
    return paths


def build(cls: type, values: Mapping[str, Any], where: str = "") -> Any:
    """The dataclass ``cls`` from a mapping: unknown keys, wrong types and failed checks are one-line errors."""
    if not isinstance(values, Mapping):
        raise SettingsError(f"{where.rstrip('.') or cls.__name__}: expected a mapping of settings, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(values) - set(known))
    if unknown:
        raise SettingsError(f"{where}unknown setting(s) {', '.join(where + k for k in unknown)}; known: {', '.join(known)}")
    kwargs = {name: _convert(hints[name], value, f"{where}{name}") for name, value in values.items()}
    try:
        return cls(**kwargs)
    except InputError as error:
        if isinstance(error, SettingsError):
            raise
        raise SettingsError(f"{where.rstrip('.') + ': ' if where else ''}{error}") from None


def _convert(kind: Any, value: Any, path: str) -> Any:
    """``value`` checked against the annotation ``kind`` (ints are accepted where floats are expected)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(option, value, path)
            except SettingsError as error:
                errors.append(error)
        raise errors[0]
    if dataclasses.is_dataclass(kind):
        if isinstance(value, kind):
            return value
        return build(kind, value if value is not None else {}, f"{path}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{path}: expected a list, got {value!r}")
        return tuple(_convert(args[0], item, f"{path}[{index}]") for index, item in enumerate(value))
    if origin is dict or kind is dict:
        if not isinstance(value, Mapping):
            raise SettingsError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{path}: expected a list, got {value!r}")
        return list(value)
    if kind is Any:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(f"{path}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SettingsError(f"{path}: expected a whole number, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise SettingsError(f"{path}: expected a number, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise SettingsError(f"{path}: expected text, got {value!r}")
    return value


def field_paths(cls: type, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Every leaf setting of a dataclass tree as ``dotted path -> (type, default)``."""
    hints = typing.get_type_hints(cls)
    defaults = cls()
    paths: dict[str, tuple[Any, Any]] = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            paths.update(field_paths(kind, f"{prefix}{f.name}."))
        else:
            paths[f"{prefix}{f.name}"] = (kind, getattr(defaults, f.name))
    return paths


def add_flags(parser: argparse.ArgumentParser, cls: type, prefix: str = "", skip: tuple[str, ...] = (), flag_prefix: str = "",
              helps: Mapping[str, str] | None = None) -> list[str]:
    """One ``--flag`` per leaf setting of ``cls`` (``model.bottleneck_size`` -> ``--model-bottleneck-size``).

    Values are YAML (``--lr 1e-3``, ``--train-size null``); a true/false setting may also be given bare
    (``--model-skip``). Returns the dotted paths, which are the flags' destinations.
    """
    helps = helps or {}
    paths = []
    for path, (kind, default) in field_paths(cls).items():
        if path in skip or path.split(".")[0] in skip:
            continue
        full = f"{prefix}{path}"
        flag = "--" + (flag_prefix + path).replace(".", "-").replace("_", "-")
        text = helps.get(path) or setting_help(cls, path) or path
        extra = {"nargs": "?", "const": "true"} if kind is bool else {}
        parser.add_argument(flag, dest=full, default=None, metavar="VALUE" if kind is not bool else "BOOL",
                            help=f"{text} (default: {default})".replace("%", "%%"), **extra)
        paths.append(full)
    return paths


def setting_help(cls: type, path: str) -> str | None:
    """The description of a dotted setting, from the ``HELP`` mapping of the dataclass that holds it."""
    *groups, name = path.split(".")
    for group in groups:
        cls = typing.get_type_hints(cls)[group]
    return getattr(cls, "HELP", {}).get(name)


def flag_assignments(args: argparse.Namespace, paths: list[str]) -> list[tuple[str, Any]]:
    """The flags given on the command line as dotted assignments, values read as YAML."""
    given = vars(args)
    return [(path, load_yaml(given[path], "--" + path.replace(".", "-"))) for path in paths if given.get(path) is not None]


def override(instance: Any, assignments: Mapping[str, Any]) -> Any:
    """A copy of a config dataclass with dotted settings replaced, checked like any other layer (``{"model.skip": True}``)."""
    return build(type(instance), apply_assignments(to_dict(instance), list(assignments.items())))
