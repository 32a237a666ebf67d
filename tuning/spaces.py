"""Search-space files -> Ray Tune domains.

A space maps a hyperparameter (any field of ``TrainingConfig`` or ``ModelConfig``) to either a
fixed value or one domain::

    learning_rate: {type: loguniform, low: 1.0e-5, high: 5.0e-5}
    weight_decay: {type: uniform, low: 0.0, high: 0.1}
    batch_size: {type: choice, values: [8, 16, 32, 64]}
    num_hidden_layers: {type: randint, low: 2, high: 4}      # both ends included
    lr_schedule: {type: grid, values: [linear, step]}         # every value, in order
    seed: 42                                                  # fixed

Anything else is refused with a message naming the key and what is accepted.
"""

from __future__ import annotations

import math
from typing import Any

from ray import tune

from tuning.config import ALIASES, ConfigError, ModelConfig, TrainingConfig, field_names

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


def _number(value: Any) -> float | None:
    # YAML 1.1 reads ``1e-5`` (no dot) as a string; accept it as the number a person meant.
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _domain(name: str, spec: dict[str, Any], where: str, problems: list[str]) -> Any:
    kind = spec.get("type")
    if kind not in DOMAIN_TYPES:
        problems.append(f"{where}{name}: type must be one of {list(DOMAIN_TYPES)}, got {kind!r}.")
        return None
    expected = {"type", *DOMAIN_TYPES[kind]}
    unknown = sorted(set(spec) - expected)
    missing = sorted(expected - set(spec))
    if unknown or missing:
        problems.append(
            f"{where}{name}: a {kind} domain takes exactly {sorted(expected)}"
            + (f"; unknown {unknown}" if unknown else "")
            + (f"; missing {missing}" if missing else "")
            + "."
        )
        return None
    if kind in ("choice", "grid"):
        values = spec["values"]
        if not isinstance(values, list) or not values:
            problems.append(f"{where}{name}: {kind} needs a non-empty list of values, got {values!r}.")
            return None
        values = [_number(v) if isinstance(v, str) and _number(v) is not None else v for v in values]
        return tune.grid_search(values) if kind == "grid" else tune.choice(values)
    low, high = _number(spec["low"]), _number(spec["high"])
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        problems.append(
            f"{where}{name}: low and high must be numbers, got ({spec['low']!r}, {spec['high']!r})."
        )
        return None
    if not low <= high:
        problems.append(f"{where}{name}: `low <= high` must hold, but got (low={low}, high={high}).")
        return None
    if kind == "loguniform":
        if low <= 0:
            problems.append(f"{where}{name}: loguniform needs low > 0, got low={low}.")
            return None
        return tune.loguniform(low, high)
    if kind == "randint":
        if not (low.is_integer() and high.is_integer()):
            problems.append(f"{where}{name}: randint needs whole numbers, got ({low}, {high}).")
            return None
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
            domain = _domain(raw_name, spec, where, problems)
            if domain is not None:
                out[name] = domain
        elif isinstance(spec, list):
            problems.append(
                f"{where}{raw_name}: a bare list is ambiguous; write "
                f"{{type: choice, values: {spec}}} (sampled) or {{type: grid, values: {spec}}} (every value)."
            )
        else:
            out[name] = _number(spec) if isinstance(spec, str) and _number(spec) is not None else spec
    if problems:
        raise ConfigError("\n".join(problems))
    return out


def has_grid(param_space: dict[str, Any]) -> bool:
    """Whether any entry is a grid (grids enumerate; samplers such as TPE cannot take them)."""
    return any(isinstance(v, dict) and "grid_search" in v for v in param_space.values())


def grid_size(param_space: dict[str, Any]) -> int:
    """Number of configurations a grid expands to (1 without grids)."""
    size = 1
    for value in param_space.values():
        if isinstance(value, dict) and "grid_search" in value:
            size *= len(value["grid_search"])
    return size


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
