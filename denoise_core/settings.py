"""One configuration pipeline: typed dataclasses as the schema, layers of plain mappings merged over them.

Every command builds its settings with ``assemble``. A base mapping (the defaults, a preset, or a saved
``config.yaml`` / ``study.yaml`` on resume) is overlaid with a YAML file (``--config``), then command-line
flags, then ``--set KEY=VALUE`` assignments, in that order. Mappings merge key by key at every depth, and a
dotted key (``train.model.dropout``) reaches into them. The merged mapping is then built into the frozen
dataclasses with one type check per field, so a wrong value is one line naming its dotted path. On resume,
only the settings in the dataclass's ``RESUMABLE`` list may differ from the saved ones.

The flags are generated from the same dataclasses (``add_flags``): one per leaf setting, its help from the
``HELP`` mapping of the dataclass that holds it. YAML values are read with the YAML 1.2 core schema (``1e-3``
is a float, ``2026-12-01`` is text, as in every other YAML reader; PyYAML's YAML 1.1 rules read the first as
text and the second as a date), in files and in flag values alike; a flag for a text setting (a name, a path)
takes its value as written. Duplicate keys and aliases are refused: a settings file is plain data.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from denoise_core.errors import InputError


class SettingsError(InputError):
    """A setting that is unknown, of the wrong type or out of range; the message names its dotted path."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the YAML 1.2 core schema's scalars (``1e-3`` and ``.5`` are numbers, no dates),
    and without what plain settings never need: a key given twice (the last would win unseen) and aliases
    (a few lines of them expand to gigabytes)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"alias *{event.anchor} refused: settings are plain data, write the value out",
                                              event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}: give each setting once", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_FLOAT_12 = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$")
_YAML_11_ONLY = ("tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp")
_Loader.yaml_implicit_resolvers = {key: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML_11_ONLY]
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
        raise SettingsError(f"unknown setting(s) {', '.join(where + k for k in unknown)}; known: {', '.join(known)}")
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
            if not math.isfinite(value):
                raise SettingsError(f"{path}: expected a finite number, got {value!r}")
            return float(value)
        raise SettingsError(f"{path}: expected a number, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise SettingsError(f"{path}: expected text, got {value!r}")
    return value


def field_paths(cls: type, prefix: str = "", instance: Any = None) -> dict[str, tuple[Any, Any]]:
    """Every leaf setting of a dataclass tree as ``dotted path -> (type, default)`` (defaults from ``instance`` if given)."""
    hints = typing.get_type_hints(cls)
    defaults = cls() if instance is None else instance
    paths: dict[str, tuple[Any, Any]] = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            paths.update(field_paths(kind, f"{prefix}{f.name}.", getattr(defaults, f.name)))
        else:
            paths[f"{prefix}{f.name}"] = (kind, getattr(defaults, f.name))
    return paths


@dataclasses.dataclass(frozen=True)
class Flag:
    """A generated flag: the dotted setting it sets (its argparse destination), the setting's type, its name and the
    default its help states."""

    path: str
    kind: Any
    name: str
    default: str


@dataclasses.dataclass(frozen=True)
class Layers:
    """What the user gave, in order: the ``--config`` file's mapping, then flags and ``--set`` as dotted assignments."""

    file: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    assignments: Sequence[tuple[str, Any]] = ()


def flag_name(path: str) -> str:
    """``model.bottleneck_size`` -> ``--model-bottleneck-size``."""
    return "--" + path.replace(".", "-").replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, cls: type, prefix: str = "", skip: tuple[str, ...] = (), taken: frozenset[str] = frozenset(),
              defaults: Any = None, shown: Mapping[str, str] | None = None, bare_switches: bool = False) -> list[Flag]:
    """One ``--flag`` per leaf setting of ``cls`` (``model.bottleneck_size`` -> ``--model-bottleneck-size``).

    Values are YAML (``--lr 1e-3``, ``--train-size null``) except for text settings, taken as written; a
    true/false setting may be given bare (``--model-skip``), negated (``--no-model-skip``) or with a value
    (``--amp false``), except with ``bare_switches``, for commands with positional arguments (``--overwrite DIR``
    must not read DIR as the switch's value). ``prefix`` places the settings in a larger tree (``train.``); a flag
    whose name is in ``taken`` gets the prefix in its name (``--train-seed``). The help shows each setting's
    default, from ``defaults`` (an instance) if given, or the text in ``shown``.
    """
    flags = []
    for path, (kind, default) in field_paths(cls, instance=defaults).items():
        if path in skip or path.split(".")[0] in skip:
            continue
        name = flag_name(path) if flag_name(path) not in taken else flag_name(prefix + path)
        stated = (shown or {}).get(path, _shown(default))
        text = f"{setting_help(cls, path) or path} (default: {stated}{f'; --no-{name[2:]}: false' if kind is bool else ''})".replace("%", "%%")
        if kind is bool:
            value = {"action": "store_const"} if bare_switches else {"nargs": "?", "metavar": "BOOL"}
            parser.add_argument(name, dest=prefix + path, default=None, const="true", help=text, **value)
            parser.add_argument(f"--no-{name[2:]}", dest=prefix + path, action="store_const", const="false", help=argparse.SUPPRESS)
        else:
            parser.add_argument(name, dest=prefix + path, default=None, metavar="TEXT" if _is_text(kind) else "VALUE", help=text)
        flags.append(Flag(prefix + path, kind, name, stated))
    return flags


def _shown(default: Any) -> str:
    if isinstance(default, tuple):
        return ",".join(map(str, default)) or "none"
    return "null" if default is None else str(default).lower() if isinstance(default, bool) else str(default)


def _is_text(kind: Any) -> bool:
    """A text setting (``str`` or ``str | None``): a name, a path, a noise spec."""
    return kind is str or (typing.get_origin(kind) in (typing.Union, types.UnionType) and set(typing.get_args(kind)) == {str, type(None)})


def settings_table(cls: type, flags: list[Flag], prefix: str = "", skip: tuple[str, ...] = (), defaults: Any = None) -> str:
    """The leaf settings of ``cls`` as a Markdown table: dotted setting, its flag among ``flags`` (if any), default, meaning.

    The README's settings tables are these, so they cannot drift from the schema (tests/test_readme_settings.py)."""
    by_path = {flag.path: flag for flag in flags}
    rows = ["| setting | flag | default | meaning |", "|---|---|---|---|"]
    for path, (_, default) in field_paths(cls, instance=defaults).items():
        if path.split(".")[0] in skip:
            continue
        flag = by_path.get(prefix + path)
        stated = f"`{_shown(default)}`" if flag is None or flag.default == _shown(default) else flag.default
        meaning = (setting_help(cls, path) or "").replace("|", "\\|")
        rows.append(f"| `{prefix}{path}` | {f'`{flag.name}`' if flag else ''} | {stated} | {meaning} |")
    return "\n".join(rows)


def setting_help(cls: type, path: str) -> str | None:
    """The description of a dotted setting, from the ``HELP`` mapping of the dataclass that holds it."""
    *groups, name = path.split(".")
    for group in groups:
        cls = typing.get_type_hints(cls)[group]
    return getattr(cls, "HELP", {}).get(name)


def flag_value(flag: Flag, raw: str) -> Any:
    """A flag's value: text as written for a text setting (``null`` is none where a setting may be none), YAML
    otherwise; a list of text may also be written comma-separated (``--holdout-conditions sp:0.1,gauss:25``)."""
    if _is_text(flag.kind):
        return None if raw == "null" and flag.kind is not str else raw
    value = load_yaml(raw, flag.name)
    if typing.get_origin(flag.kind) is tuple and typing.get_args(flag.kind)[0] is str and isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def flag_assignments(args: argparse.Namespace, flags: list[Flag]) -> list[tuple[str, Any]]:
    """The flags given on the command line as dotted assignments."""
    given = vars(args)
    return [(flag.path, flag_value(flag, given[flag.path])) for flag in flags if given.get(flag.path) is not None]


def add_layer_arguments(parser: argparse.ArgumentParser, config_help: str, set_example: str) -> None:
    """``--config FILE`` and ``--set KEY=VALUE``, the layers every command that builds settings takes."""
    parser.add_argument("--config", help=config_help)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=f"override any setting by its dotted path, e.g. {set_example}")


def read_layers(args: argparse.Namespace, flags: list[Flag]) -> Layers:
    """The user's layers from a parsed command line: ``--config``'s file, then the flags, then every ``--set``."""
    file_values = load_yaml_file(args.config) if args.config else {}
    return Layers(file_values, flag_assignments(args, flags) + [parse_assignment(item) for item in args.set])


def assemble(cls: type, base: Mapping[str, Any], layers: Layers = Layers(), whole: tuple[str, ...] = (),
             prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None, error: type[SettingsError] = SettingsError,
             resume: tuple[str, str] | None = None) -> Any:
    """The one assembler: ``base`` < the file < the assignments, built into ``cls`` and checked.

    ``whole`` names the mappings a file replaces as a unit (``--set whole.NAME`` then sets the entry NAME);
    ``prepare`` adjusts the merged mapping before it is built (relative paths made absolute); every settings
    error is raised as ``error``. ``resume`` says where ``base`` was saved and how to change the rest
    (``("the run's checkpoint", "start a new run with another --out")``): only ``cls.RESUMABLE`` may differ from it.
    """
    try:
        values = apply_assignments(merge(base, layers.file, whole), list(layers.assignments), flat=whole)
        config = build(cls, prepare(values) if prepare else values)
    except SettingsError as caught:
        if isinstance(caught, error):
            raise
        raise error(str(caught)) from None
    if resume is not None:
        saved_in, instead = resume
        changed = resume_changes(cls, base, to_dict(config))
        if changed:
            raise error(f"--resume cannot change {', '.join(changed)} (saved in {saved_in}); only {', '.join(cls.RESUMABLE)} may change; "
                        f"{instead} to change the rest")
    return config


def resume_changes(cls: type, saved: Mapping[str, Any], resumed: Mapping[str, Any]) -> list[str]:
    """The dotted settings that differ between a saved and a resumed config and that ``cls.RESUMABLE`` does not allow to."""
    return [path for path in differences(saved, resumed) if not any(path == allowed or path.startswith(f"{allowed}.") for allowed in cls.RESUMABLE)]


def override(instance: Any, assignments: Mapping[str, Any]) -> Any:
    """A copy of a config dataclass with dotted settings replaced, checked like any other layer (``{"model.skip": True}``)."""
    return assemble(type(instance), to_dict(instance), Layers(assignments=list(assignments.items())))
