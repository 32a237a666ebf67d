"""Search-space files -> Ray Tune domains.

A space maps a hyperparameter (any field of ``TrainingConfig`` or ``ModelConfig``) to either a
fixed value or one domain::

    learning_rate: {type: loguniform, low: 1.0e-5, high: 5.0e-5}
    weight_decay: {type: uniform, low: 0.0, high: 0.1}
    batch_size: {type: choice, values: [8, 16, 32, 64]}
    num_hidden_layers: {type: randint, low: 2, high: 4}      # both ends included
    lr_schedule: {type: grid, values: [linear, step]}         # every value, in order
    seed: 42                                                  # fixed

Every value a domain can take (both ends of a range, each listed value) is checked by the same
rules as a fixed value of that field (``tuning.settings.field_rules``): its type, its range, whole
numbers for integer fields. Anything else is refused with a message naming the key and what is
accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ray import tune

from tuning.settings import (
    ALIASES,
    ConfigError,
    ModelConfig,
    TrainingConfig,
    coerce,
    field_kinds,
    field_names,
    field_problem,
    read_number,
)

DOMAIN_TYPES: dict[str, tuple[str, ...]] = {
    "loguniform": ("low", "high"),
    "uniform": ("low", "high"),
    "randint": ("low", "high"),
    "choice": ("values",),
    "grid": ("values",),
}


def searchable() -> list[str]:
    """Every name a space may set: training fields, then model fields (YAML ``lambda`` too)."""
    return field_names(TrainingConfig) + field_names(ModelConfig)


def _section(name: str) -> tuple[str, type]:
    """The section a searchable setting belongs to, and its config class."""
    from tuning.trial_config import SECTIONS, section_of

    section = section_of(name)
    return section, SECTIONS[section]


@dataclass(frozen=True)
class Domain:
    """A space entry's domain, read by :func:`parse_domain`."""

    kind: str
    """One of :data:`DOMAIN_TYPES`."""
    values: tuple[Any, ...] = ()
    """``choice`` and ``grid``: the values, in order."""
    low: float = math.nan
    """``loguniform``, ``uniform``, ``randint``: the lower end of the range (included)."""
    high: float = math.nan
    """The upper end of the range (included, for ``randint`` too)."""


def parse_domain(spec: Any, name: str | None = None) -> Domain | None:
    """The domain a space entry describes, or None for a fixed value (anything but a mapping).

    Args:
        spec: ``{type: loguniform, low: 1e-5, high: 5e-5}``, ``{type: choice, values: [8, 16]}``, ...
        name: a searchable field (or its YAML name); when given, the listed values are read as
            that field's type (``"1e-5"`` -> ``1e-05``, ``16.0`` -> ``16``) where they are of
            it, and kept as written otherwise (:func:`to_tune` names those). Range ends are
            always numbers (floats).

    Raises:
        ValueError: what is wrong with the entry's shape (the type, its keys, its values or range).
    """
    return _read_domain(spec, name) if isinstance(spec, dict) else None


def _read_domain(spec: dict[str, Any], name: str | None = None) -> Domain:
    kind = spec.get("type")
    if kind not in DOMAIN_TYPES:
        raise ValueError(f"type must be one of {list(DOMAIN_TYPES)}, got {kind!r}.")
    expected = {"type", *DOMAIN_TYPES[kind]}
    unknown = sorted(set(spec) - expected)
    missing = sorted(expected - set(spec))
    if unknown or missing:
        raise ValueError(
            f"a {kind} domain takes exactly {sorted(expected)}"
            + (f"; unknown {unknown}" if unknown else "")
            + (f"; missing {missing}" if missing else "")
            + "."
        )
    field = ALIASES.get(name, name) if name else ""
    section = _section(field)[1] if field in searchable() else None

    def read(value: Any) -> Any:  # as the field's type where it is of it, else as written
        if section is None:
            return value
        typed, problem = coerce(section, field, value)
        return value if problem else typed

    if kind in ("choice", "grid"):
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise ValueError(f"{kind} needs a non-empty list of values, got {values!r}.")
        return Domain(kind, values=tuple(read(v) for v in values))
    low, high = read_number(spec["low"]), read_number(spec["high"])
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"low and high must be numbers, got ({spec['low']!r}, {spec['high']!r}).")
    if not low <= high:
        raise ValueError(f"`low <= high` must hold, but got (low={float(low)}, high={float(high)}).")
    return Domain(kind, low=float(low), high=float(high))


def _value(name: str, value: Any, where: str, problems: list[str], end: str | None = None) -> Any:
    """``value`` read as field ``name``'s type and checked by that field's rule (``end``: low/high)."""
    section, cls = _section(name)
    value, problem = coerce(cls, name, value)
    if problem:
        problems.append(f"{where}{problem}")
    else:
        problem = field_problem(f"{section}.{name}", value, f"{end}={value!r}" if end else None)
        if problem:
            problems.append(f"{where}{name} {problem}")
    return value


def _domain(name: str, spec: dict[str, Any], where: str, problems: list[str]) -> Any:
    """The Ray Tune domain of ``spec`` for field ``name``, or None (with problems) when it is wrong."""
    try:
        domain = _read_domain(spec)
    except ValueError as err:
        problems.append(f"{where}{name}: {err}")
        return None
    kind, low, high = domain.kind, domain.low, domain.high
    if kind in ("choice", "grid"):
        before = len(problems)
        values = [_value(name, v, where, problems) for v in domain.values]
        if len(problems) > before:
            return None
        return tune.grid_search(values) if kind == "grid" else tune.choice(values)
    field_kind = field_kinds(_section(name)[1])[name].base
    if field_kind not in (int, float):
        problems.append(
            f"{where}{name} is a {field_kind.__name__}: a {kind} domain gives numbers; use choice or grid."
        )
        return None
    if field_kind is int and kind != "randint":
        problems.append(
            f"{where}{name} takes whole numbers, but a {kind} domain samples fractions; use randint or choice."
        )
        return None
    if kind == "loguniform" and low <= 0:
        problems.append(f"{where}{name}: loguniform needs low > 0, got low={low}.")
        return None
    if kind == "randint" and not (low.is_integer() and high.is_integer()):
        problems.append(f"{where}{name}: randint needs whole numbers, got ({low}, {high}).")
        return None
    # Every rule of a field is an interval or a set, so both ends obeying it means all values do.
    before = len(problems)
    low, high = (_value(name, v, where, problems, end) for end, v in (("low", low), ("high", high)))
    if len(problems) > before:
        return None
    if kind == "loguniform":
        return tune.loguniform(low, high)
    if kind == "randint":
        return tune.randint(int(low), int(high) + 1)
    return tune.uniform(low, high)


def to_tune(space: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Convert a space mapping into Ray Tune's ``param_space`` entries.

    Args:
        space: hyperparameter name -> fixed value or domain mapping (see the module docstring).
        where: a prefix for messages, e.g. ``"search_spaces/optuna.yaml: space: "``.

    Raises:
        ConfigError: one message listing every problem of the space.
    """
    problems: list[str] = []
    known = searchable()
    out: dict[str, Any] = {}
    for raw_name, spec in space.items():
        name = ALIASES.get(raw_name, raw_name)
        if name not in known:
            problems.append(f"{where}unknown hyperparameter {raw_name!r}; accepted: {', '.join(known)}.")
            continue
        if isinstance(spec, dict):
            domain = _domain(name, spec, where, problems)
            if domain is not None:
                out[name] = domain
        elif isinstance(spec, list):
            problems.append(
                f"{where}{raw_name}: a bare list is ambiguous; write "
                f"{{type: choice, values: {spec}}} (sampled) or {{type: grid, values: {spec}}} (every value)."
            )
        else:
            out[name] = _value(name, spec, where, problems)
    if problems:
        raise ConfigError("\n".join(problems))
    return out


def _grids(param_space: dict[str, Any]) -> list[list[Any]]:
    """Every grid's values in a (nested) param space."""
    out: list[list[Any]] = []
    for value in param_space.values():
        if isinstance(value, dict):
            out += [value["grid_search"]] if "grid_search" in value else _grids(value)
    return out


def has_grid(param_space: dict[str, Any]) -> bool:
    """Whether any entry is a grid (grids enumerate; samplers such as TPE cannot take them)."""
    return bool(_grids(param_space))


def grid_size(param_space: dict[str, Any]) -> int:
    """Number of configurations a grid expands to (1 without grids)."""
    return math.prod(len(values) for values in _grids(param_space))


def check_experiment(space: dict[str, Any], stages: list[dict[str, Any]], source: str) -> None:
    """Convert the experiment's space and every stage's space once, before anything runs.

    Raises:
        ConfigError: every problem of every space, in one message.
    """
    problems: list[str] = []
    named = [("space", space)] + [(f"stages[{i}]", s.get("space") or {}) for i, s in enumerate(stages)]
    for where, mapping in named:
        try:
            to_tune(mapping, f"{source}: {where}: ")
        except ConfigError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError("\n".join(problems))


def _candidates(exp: Any, name: str) -> list[Any]:
    """Every value field ``name`` takes in some trial: the fixed value, and each listed value or
    range end of every space that searches it."""
    section = exp.training if name in field_names(TrainingConfig) else exp.model
    values = [getattr(section, name)]
    for mapping in [exp.space, *((s.get("space") or {}) for s in exp.stages)]:
        spec = next((v for k, v in mapping.items() if ALIASES.get(k, k) == name), None)
        if isinstance(spec, dict):
            values += spec.get("values") or [spec[end] for end in ("low", "high") if end in spec]
        elif spec is not None:
            values.append(spec)
    return values


def _encoder_layers(exp: Any) -> int | None:
    """Layers of the encoder a trial builds, when known without loading it (None: unknown)."""
    import json
    from pathlib import Path

    if exp.model.num_hidden_layers:
        return int(exp.model.num_hidden_layers)
    if exp.model.name_or_path == "builtin:tiny":
        return 2
    config = Path(exp.model.name_or_path).expanduser() / "config.json"
    if config.is_file():
        return json.loads(config.read_text(encoding="utf-8")).get("num_hidden_layers")
    return None  # a Hub id: known only once downloaded


def combination_problems(exp: Any) -> list[str]:
    """Settings that are each valid but cannot train together, in any trial the experiment can
    start: refused before Ray starts, so no trial fails on its configuration.

    - ``cosent``/``angle`` rank a bi-encoder's two embeddings: not with ``architecture: cross``.
    - ``freeze_layers`` cannot exceed the encoder's layers.
    """
    from tuning.losses import EMBEDDING_LOSSES

    problems = []
    where = f"{exp.source_file}: " if exp.source_file else ""
    ranking = sorted({v for v in _candidates(exp, "loss") if v in EMBEDDING_LOSSES})
    if ranking and "cross" in _candidates(exp, "architecture"):
        problems.append(
            f"{where}loss {ranking} ranks a bi-encoder's two embeddings, but model.architecture is "
            "cross; use architecture bi or another loss."
        )
    layers = _encoder_layers(exp)
    frozen = max((v for v in _candidates(exp, "freeze_layers") if isinstance(v, (int, float))), default=0)
    if layers is not None and frozen > layers:
        problems.append(
            f"{where}freeze_layers reaches {frozen:g}, but the encoder has {layers} layers; "
            f"freeze at most {layers}."
        )
    return problems


def in_domain(value: Any, domain: Any) -> bool:
    """Whether ``value`` is one a Ray Tune domain can take: a listed category, or a number in a
    range (both ends included); anything else (a grid, a fixed value) holds nothing."""
    from ray.tune.search.sample import Categorical, Float, Integer

    if isinstance(domain, Categorical):
        return value in domain.categories
    if isinstance(domain, (Float, Integer)):
        return isinstance(value, (int, float)) and domain.lower <= value <= domain.upper
    return False
