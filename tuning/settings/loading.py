"""Reading settings: a search-space YAML file (with its ``base:``), a saved ``experiment.json``
config, and single values as a file would hold them (types, ``null``, durations, ``${SHARED}``).

Only types and shapes are checked here; the rules of values are :func:`tuning.settings.validate`'s.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tuning.settings.machine import shared_dir
from tuning.settings.rules import NAME_PATTERN, NAME_RULE, SCHEDULERS
from tuning.settings.schema import (
    ALIASES,
    AUTO_FIELDS,
    DURATIONS,
    SECTIONS,
    ConfigError,
    ExperimentConfig,
    field_names,
)

TOP_LEVEL_KEYS = ("name", "method", "description", "base", "space", "stages", "methods", *SECTIONS)
STAGE_KEYS = ("name", "space", "scheduler", "num_samples")


def _expand(value: Any) -> Any:
    """Replace ``${SHARED}`` in strings (recursively) with the offline data/model folder."""
    if isinstance(value, str):
        return value.replace("${SHARED}", str(shared_dir()))
    if isinstance(value, list):
        return [_expand(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value


def _build_section(cls: type, raw: Any, where: str, problems: list[str]) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping of {cls.__name__} fields, got {raw!r}.")
        return cls()
    known = field_names(cls)
    kwargs = {}
    for key, value in raw.items():
        name = ALIASES.get(key, key)
        if name not in known:
            problems.append(f"{where}: unknown key {key!r}; accepted keys: {', '.join(known)}.")
        else:
            kwargs[name], problem = coerce(cls, name, _expand(value))
            if problem:
                problems.append(f"{where}: {problem}")
    return cls(**kwargs)


DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``1200``, ``"90s"``, ``"20m"`` or ``"1.5h"``.

    Raises:
        ValueError: naming the value and the accepted forms.
    """
    text = str(value).strip().lower()
    unit = DURATION_UNITS.get(text[-1:]) if text else None
    try:
        seconds = float(text[:-1] if unit else text) * (unit or 1.0)
    except ValueError:
        seconds = float("nan")
    if isinstance(value, bool) or not seconds > 0:
        raise ValueError(
            f"a duration must be a positive number of seconds or e.g. 90s, 20m, 1.5h; got {value!r}."
        )
    return seconds


@dataclass(frozen=True)
class FieldKind:
    """A config field's type, from its annotation."""

    base: type
    """The type of its values: ``int``, ``float``, ``str``, ``bool`` or ``dict``."""
    optional: bool
    """Whether ``None`` (YAML ``null``) is a value of it."""
    text: str
    """The annotation as messages show it: ``"int | None"``, ``"dict[str, str]"``."""


@cache
def field_kinds(cls: type) -> dict[str, FieldKind]:
    """Every field's :class:`FieldKind`, from the real annotations (``typing.get_type_hints``)."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        union = typing.get_origin(hint) in (types.UnionType, typing.Union)
        members = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
        base = typing.get_origin(members[0]) or members[0]  # dict[str, str] -> dict
        text = hint.__name__ if isinstance(hint, type) else str(hint)
        out[name] = FieldKind(base, union and len(members) < len(typing.get_args(hint)), text)
    return out


def read_number(value: Any) -> int | float | None:
    """``value`` as a number, or None when it is not one (booleans are not numbers).

    Strings that spell a number (``"3"``, ``"1e-5"``) are numbers: YAML 1.1 and so PyYAML's own
    loader leave ``1e-5`` a string (see :class:`YamlLoader`), and files written before the loader
    read it (a ``stage.json``) still hold such strings. Ints stay exact ints.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def coerce(cls: type, name: str, value: Any) -> tuple[Any, str | None]:
    """``value`` as the type of field ``name`` of ``cls``, and what is wrong with it (or None).

    Numbers written as strings (``"3"``, ``"1e-5"``) are read as numbers. The problem names the
    field: ``"batch_size must be a whole number, got 2.5."``; the value returned with a problem is
    the field's default.
    """
    kind = field_kinds(cls)[name]
    default = getattr(cls(), name)
    if value is None:
        return default, None if kind.optional else f"{name} must be set ({kind.text}), got null."
    if name in AUTO_FIELDS and value == "auto":
        return value, None
    if name in DURATIONS:
        try:
            return parse_duration(value), None
        except ValueError as err:
            return default, f"{name}: {err}"
    if kind.base is bool and not isinstance(value, bool):
        return default, f"{name} must be true or false, got {value!r}."
    if kind.base in (int, float):
        number = read_number(value)
        if number is None:
            return default, f"{name} must be a number ({kind.text}), got {value!r}."
        if kind.base is int and not float(number).is_integer():
            return default, f"{name} must be a whole number, got {value!r}."
        return kind.base(number), None
    if kind.base is str and not isinstance(value, str):
        return default, f"{name} must be a string, got {value!r}."
    if kind.base is dict and not isinstance(value, dict):
        return default, f"{name} must be a mapping, got {value!r}."
    return value, None


def parse_experiment(raw: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Build an ExperimentConfig from a parsed YAML mapping; unknown keys are errors.

    Raises:
        ConfigError: listing every unknown key or mis-shaped section at once.
    """
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a YAML mapping at the top level, got {type(raw).__name__}.")
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            problems.append(
                f"{source}: unknown top-level key {key!r}; accepted keys: {', '.join(TOP_LEVEL_KEYS)}."
            )
    sections = {
        name: _build_section(cls, raw.get(name), f"{source}: {name}", problems)
        for name, cls in SECTIONS.items()
    }
    space = raw.get("space") or {}
    stages = raw.get("stages") or []
    if not isinstance(space, dict):
        problems.append(f"{source}: space: expected a mapping of hyperparameter -> domain, got {space!r}.")
        space = {}
    if not isinstance(stages, list):
        problems.append(f"{source}: stages: expected a list of {{name, space}} mappings, got {stages!r}.")
        stages = []
    _check_stages(stages, source, problems)
    methods = raw.get("methods") or []
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        problems.append(f"{source}: methods: expected a list of method names, got {methods!r}.")
        methods = []
    if problems:
        raise ConfigError("\n".join(problems))
    return ExperimentConfig(
        name=str(raw.get("name") or Path(source).stem),
        method=str(raw.get("method") or "optuna"),
        space={ALIASES.get(k, k): _expand(v) for k, v in space.items()},
        stages=_expand(stages),
        methods=methods,
        source_file=source,
        **sections,
    )


def _check_stages(stages: list[Any], source: str, problems: list[str]) -> None:
    seen: set[str] = set()
    for i, stage in enumerate(stages):
        where = f"{source}: stages[{i}]"
        if not isinstance(stage, dict):
            problems.append(f"{where}: expected a mapping with `name` and `space`, got {stage!r}.")
            continue
        unknown = sorted(set(stage) - set(STAGE_KEYS))
        if unknown:
            problems.append(f"{where}: unknown key(s) {unknown}; accepted keys: {', '.join(STAGE_KEYS)}.")
        name = stage.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            problems.append(f"{where}: name {NAME_RULE}, got {name!r}.")
        elif name in seen:
            problems.append(f"{where}: stage name {name!r} is used twice.")
        else:
            seen.add(name)
        if not isinstance(stage.get("space"), dict) or not stage.get("space"):
            problems.append(f"{where}: space must be a non-empty mapping of hyperparameter -> domain.")
        if stage.get("scheduler") not in (None, *SCHEDULERS):
            problems.append(
                f"{where}: scheduler must be one of {list(SCHEDULERS)}, got {stage['scheduler']!r}."
            )


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; sections (mappings) merge key by key, other values replace."""
    out = dict(base)
    for key, value in over.items():
        if key in SECTIONS and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads YAML 1.2 floats: ``1e-5`` (no dot) is a number.

    (PyYAML implements YAML 1.1, where a float needs a dot, so ``1e-5`` would be the string
    ``"1e-5"`` — the most common way people write a learning rate.)
    """


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)

FILE_SHAPE = "a YAML mapping of `name:`, `space:`, `training:`, ... (see search_spaces/)"


def read_yaml(path: Path) -> Any:
    """One YAML file, as UTF-8 text, with :class:`YamlLoader`.

    Raises:
        ConfigError: naming the file when it is missing, not UTF-8 or not valid YAML.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist.") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder; name a YAML file.") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
            "save the file as UTF-8."
        ) from None
    try:
        return yaml.load(text, Loader=YamlLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML mapping, with its ``base:`` file (relative to it) merged underneath."""
    if not chain and path.is_dir():
        raise ConfigError(
            f"search-space file {str(path)!r} is a folder; pass --space with a YAML file "
            "(e.g. one in it, see search_spaces/)."
        )
    if not chain and not path.is_file():
        raise ConfigError(
            f"search-space file {str(path)!r} does not exist; pass --space with a YAML file (see search_spaces/)."
        )
    if path.resolve() in chain:
        loop = " -> ".join(map(str, (*chain, path.resolve())))
        raise ConfigError(f"{chain[-1]}: `base:` files include each other ({loop}); remove one `base:`.")
    # A base file's problem names the file the user gave too (and the file that names the base).
    via = f" (the `base:` of {chain[-1]}, from {chain[0]})" if len(chain) > 1 else ""
    via = via or (f" (the `base:` of {chain[0]})" if chain else "")
    try:
        raw = read_yaml(path)
    except ConfigError as err:
        if not via:
            raise
        raise ConfigError(f"{err}{via}") from None
    if raw is None:
        raise ConfigError(f"{path}{via}: the file is empty; a search-space file is {FILE_SHAPE}.")
    if not isinstance(raw, dict):
        kind = {"list": "a list", "str": "a string", "int": "a number", "float": "a number"}
        raise ConfigError(
            f"{path}{via}: expected {FILE_SHAPE}, got {kind.get(type(raw).__name__, type(raw).__name__)}: "
            f"{raw!r:.60}."
        )
    if "base" in raw:
        base = raw["base"]
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(
                f"{path}: base: must be one file name, relative to this file "
                f"(e.g. `base: baseline.yaml`), got {base!r}."
            )
        if not (path.parent / base).is_file():
            raise ConfigError(
                f"{path}: base: {path.parent / base} does not exist; name a YAML file relative to {path.parent}."
            )
        merged = _read_yaml(path.parent / base, (*chain, path.resolve()))
        merged.pop("name", None)
        raw = _merge(merged, {k: v for k, v in raw.items() if k != "base"})
    return raw


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read a search-space YAML file (and its ``base:`` file) into an ExperimentConfig (not yet validated)."""
    path = Path(path)
    return parse_experiment(_read_yaml(path), str(path))


def experiment_from_dict(raw: Any, source: str = "experiment.json") -> ExperimentConfig:
    """Rebuild the resolved config saved in ``experiment.json`` (``ExperimentConfig.to_dict``).

    Section values go through the same builder as a YAML file's (types, null, aliases); a key
    this version does not know is refused, never dropped: resuming with settings silently lost
    would mix results of different configurations.

    Args:
        raw: the file's ``config`` mapping.
        source: the file, as messages name it.

    Raises:
        ConfigError: naming the file and every unknown key or wrongly typed value.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: config: expected a mapping of settings, got {type(raw).__name__}.")
    known = field_names(ExperimentConfig)
    problems = [
        f"{source}: config: unknown key {key!r}; accepted keys: {', '.join(known)}."
        for key in raw
        if key not in known
    ]
    sections = {
        name: _build_section(cls, raw.get(name), f"{source}: config.{name}", problems)
        for name, cls in SECTIONS.items()
    }
    if problems:
        raise ConfigError(
            "\n".join(problems) + "\nThe file was probably written by another version of this tool: "
            "resume with that version, or start a new experiment."
        )
    rest = {k: v for k, v in raw.items() if k not in SECTIONS}
    return ExperimentConfig(**rest, **sections)
