"""Warm start: seed a stage's searcher from an earlier experiment (``search.warm_start``).

Read from storage, not from the earlier study alone, so any method's trials can seed an Optuna
stage (their params, metrics and how each ended are all stored):

- **the same problem** (same data, and every setting that is not searched here equal: model,
  epochs, loss, ...): its trials that trained their whole budget are told to the searcher as
  evaluated (Ray's ``evaluated_rewards``, Optuna's ``add_trial``) — nothing is retrained, and TPE
  starts from them as if this search had run them;
- **another problem** (another depth, model, data file, epochs): the values are not comparable,
  so its top ``search.top_k`` configurations are tried first (enqueued), then TPE goes on.

Only configurations inside this stage's space are carried over; the stage's record says what was
(``StageRecord.warm_start``) and the report repeats it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuning import store
from tuning.metrics import MODES
from tuning.settings import ConfigError, ExperimentConfig
from tuning.spaces import in_domain
from tuning.store import WarmStart
from tuning.trial_config import section_of

IGNORED = {
    ("training", "eval_every_pairs"),  # when a trial reports, not what it learns
    ("training", "logging_steps"),
    ("training", "eval_batch_size"),
    # bf16 autocast and fp32 reached the same validation Pearson to 0.0002 on the CPU profile
    # (docs/benchmarks.md, cpu_levers): precision follows the machine, not the problem
    ("training", "precision"),
}


@dataclass
class WarmPoints:
    """What a searcher starts from: points (``section/key`` -> value), with rewards when evaluated."""

    points: list[dict[str, Any]] = field(default_factory=list)
    rewards: list[Any] | None = None
    """One per point: the metric, or ``[metric, cost]`` for a two-objective search."""


def differences(
    old: ExperimentConfig, new: ExperimentConfig, searched: set[str], same_data: bool
) -> list[str]:
    """What makes the earlier experiment another problem (empty: the same problem)."""
    out = [] if same_data else ["data: another data set (fingerprint)"]
    for section in ("model", "training"):
        before, after = vars(getattr(old, section)), vars(getattr(new, section))
        for key, value in after.items():
            if key in searched or (section, key) in IGNORED:
                continue
            if before.get(key) != value:
                out.append(f"{section}.{key}: {_shown(key, before.get(key))} -> {_shown(key, value)}")
    if old.search.metric != new.search.metric:
        out.append(f"search.metric: {old.search.metric} -> {new.search.metric}")
    return out


def _shown(key: str, value: Any) -> str:
    """A setting's value as the message shows it (``None`` depth: the whole encoder)."""
    if key == "num_hidden_layers" and value is None:
        return "all layers"
    return repr(value)


def inside(point: dict[str, Any], space: dict[str, Any]) -> bool:
    """Whether every value of ``point`` lies in its domain of ``space`` (flat names)."""
    return all(in_domain(point.get(name), domain) for name, domain in space.items())


def warm_points(
    exp: ExperimentConfig,
    meta_data_fingerprint: str,
    searched: dict[str, Any],
    costs: dict[str, dict[str, float]] | None,
    fixed_model: dict[str, Any],
) -> tuple[WarmPoints, WarmStart]:
    """The points an earlier experiment gives this stage, and the record of what was carried.

    Args:
        exp: this experiment (``search.warm_start`` names the earlier one).
        meta_data_fingerprint: this experiment's data fingerprint.
        searched: this stage's searched settings -> Tune domains (only those with a domain).
        costs: this experiment's measured cost levels (``search.cost``), else None.
        fixed_model: this stage's fixed ``model`` section (for a point's cost level).

    Raises:
        ConfigError: the folder is not a finished experiment, or holds no usable trial.
    """
    from tuning.cost import full_depth, level_key

    source = str(exp.search.warm_start)
    folder = Path(source)
    try:
        record = store.read_experiment(folder)
    except (OSError, store.StorageError, ValueError) as err:
        raise ConfigError(
            f"--warm-start {source}: not an experiment folder this tool wrote ({str(err).splitlines()[0]}). "
            "Pass runs/<name>, the folder of an earlier search."
        ) from None
    old = record.meta.settings
    same_data = bool(meta_data_fingerprint) and record.meta.data_fingerprint == meta_data_fingerprint
    diff = differences(old, exp, set(searched), same_data)
    metric = exp.search.metric
    flat = {f"{section_of(k)}/{k}": d for k, d in searched.items()}
    rows = []
    for trial in record.trials:
        best = trial.best(metric)
        if best is None or best.get(metric) is None or not math.isfinite(float(best[metric])):
            continue
        try:
            config = trial.config()
        except (OSError, ValueError):
            continue
        point = {}
        for name in flat:
            section, key = name.split("/", 1)
            point[name] = (config.get(section) or {}).get(key)
        if not inside(point, flat):
            continue
        rows.append((trial, best, point, config))
    if not rows:
        raise ConfigError(
            f"--warm-start {source}: none of its {len(record.trials)} trials has a {metric} result with "
            f"values inside this search's space ({', '.join(flat) or 'nothing searched'})."
        )
    sign = 1 if MODES[metric] == "max" else -1
    rows.sort(key=lambda r: -sign * float(r[1][metric]))
    carried = WarmStart(source=source, same_problem=not diff, differences=diff)
    if diff:
        top = rows[: exp.search.top_k]
        carried.enqueued = len(top)
        return WarmPoints([p for _, _, p, _ in top]), carried
    points: list[dict[str, Any]] = []
    rewards: list[Any] = []
    for trial, best, point, config in rows:
        if trial.status != "finished":  # stopped early or cut: its value is not a full budget's
            continue
        value = float(trial.reports[-1].get(metric, best[metric]))
        if costs is not None:
            model = {**fixed_model, **(config.get("model") or {})}
            level = costs.get(level_key(full_depth(model)))
            if level is None:
                continue
            rewards.append([value, level[exp.search.cost or ""]])
        else:
            rewards.append(value)
        points.append(point)
    carried.evaluated = len(points)
    if not points:
        raise ConfigError(
            f"--warm-start {source}: the same problem, but none of its trials trained its whole budget "
            "(all were stopped early or cut): there is no value to give the searcher."
        )
    return WarmPoints(points, rewards), carried
