"""Rankings: pure functions from trial records to ranked rows.

A metric's direction (is larger better?) comes from its one definition, ``tuning.metrics.MODES``.
The search picks stage winners and the winners to score with these functions, and the report
shows the same order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tuning.metrics import MODES
from tuning.settings import ALIASES
from tuning.store import EPOCH, PAIRS, ExperimentRecord, TrialRecord, TrialStatus, epoch_number
from tuning.trial_config import section_of

METRIC_COLUMNS = ("pearson", "f1", "spearman", "mse")


@dataclass
class Row:
    """One trial as ranked: its best report by the search metric (the checkpoint it keeps)."""

    trial_id: str
    stage: str
    params: dict[str, Any]
    best_epoch: int | float | None
    metrics: dict[str, float]
    epochs_run: int | float
    planned_epochs: int
    status: TrialStatus
    error: str | None = None
    retries: int = 0
    pairs: int | None = None
    """Training pairs the kept checkpoint had seen: the budget its metrics were reached with."""


def to_rows(trials: list[TrialRecord], metric: str = "pearson") -> list[Row]:
    """Each trial's best report by ``metric``; trials without a report get empty metrics."""
    rows = []
    for t in trials:
        best = t.best(metric)
        rows.append(
            Row(
                trial_id=t.trial_id,
                stage=t.stage,
                params=t.params,
                best_epoch=epoch_number(best[EPOCH]) if best else None,
                metrics={k: float(best[k]) for k in METRIC_COLUMNS if best and best.get(k) is not None},
                pairs=int(best[PAIRS]) if best and best.get(PAIRS) is not None else None,
                epochs_run=epoch_number(t.reports[-1][EPOCH]) if t.reports else 0,
                planned_epochs=t.planned_epochs,
                status=t.status,
                error=t.error,
                retries=t.retries,
            )
        )
    return rows


def rank(rows: list[Row], by: str) -> list[Row]:
    """Sort rows best first by metric ``by`` (in its direction); rows without it go last; ties by
    stage and trial id."""
    sign = 1 if MODES.get(by) == "min" else -1

    def key(row: Row) -> tuple:
        value = row.metrics.get(by)
        return (value is None, sign * value if value is not None else 0.0, row.stage, row.trial_id)

    return sorted(rows, key=key)


def ranked(trials: list[TrialRecord], metric: str) -> list[Row]:
    """The trials that reported ``metric``, best first by it."""
    return [r for r in rank(to_rows(trials, metric), metric) if metric in r.metrics]


def best_trials(record: ExperimentRecord, metric: str, k: int | None = None) -> list[TrialRecord]:
    """The experiment's ``k`` best trials (all when ``k`` is None) by their best ``metric``."""
    by_id = {(t.stage, t.trial_id): t for t in record.trials}
    rows = ranked(record.trials, metric)
    return [by_id[(r.stage, r.trial_id)] for r in rows[:k]]


def pareto_front(rows: list[Row], metrics: tuple[str, str] = ("pearson", "f1")) -> list[Row]:
    """Rows no other row beats on both metrics (each in its direction), best first by the first."""
    a, b = metrics
    sa, sb = (-1 if MODES.get(m) == "min" else 1 for m in metrics)
    scored = [r for r in rows if a in r.metrics and b in r.metrics]
    front = [
        r
        for r in scored
        if not any(
            sa * o.metrics[a] >= sa * r.metrics[a]
            and sb * o.metrics[b] >= sb * r.metrics[b]
            and (sa * o.metrics[a] > sa * r.metrics[a] or sb * o.metrics[b] > sb * r.metrics[b])
            for o in scored
        )
    ]
    return rank(front, a)


def recipe_trials(record: ExperimentRecord) -> dict[str, str]:
    """Stage -> the trial that ran the recipe: with ``search.start_from_recipe`` an Optuna stage's
    first trial is the fixed config's value of every searched hyperparameter (a staged method's
    carried values included), enqueued before sampling. Found by those values, so a stage whose
    recipe lay outside its space (not enqueued) has none."""
    settings = record.meta.settings
    if not settings.search.start_from_recipe:
        return {}

    def fixed(name: str) -> Any:
        """The experiment config's own value of a setting (its section's field)."""
        return getattr(getattr(settings, section_of(name)), ALIASES.get(name, name))

    out = {}
    for stage in record.stages:
        if not stage.searcher.startswith("optuna") or not stage.searched:
            continue
        try:
            point = {k: stage.carried[k].value if k in stage.carried else fixed(k) for k in stage.searched}
        except KeyError:  # a searched key this version does not know
            continue
        if "num_hidden_layers" in point and point["num_hidden_layers"] is None:
            # the recipe's depth is the whole encoder's (tuning.methods._stage.recipe_point)
            from tuning.model import encoder_depth

            point["num_hidden_layers"] = encoder_depth(settings.model.name_or_path)
        same = [t.trial_id for t in record.stage_trials(stage.stage) if _same_values(t.params, point)]
        if same:
            out[stage.stage] = min(same)
    return out


def _same_values(params: dict[str, Any], point: dict[str, Any]) -> bool:
    def same(a: Any, b: Any) -> bool:
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        return a == b

    return all(k in params and same(params[k], v) for k, v in point.items())


def control_trial(record: ExperimentRecord) -> tuple[str, str] | None:
    """(stage, trial id) of the search's control: the recipe's trial of the first stage that ran
    one with nothing carried into it (a later stage's "recipe" holds earlier winners' values)."""
    recipes = recipe_trials(record)
    for stage in record.stages:
        if stage.stage in recipes and not stage.carried:
            return stage.stage, recipes[stage.stage]
    return None
