"""Rankings: pure functions from trial records to ranked rows.

A metric's direction (is larger better?) comes from its one definition, ``tuning.metrics.MODES``.
The search picks stage winners and the winners to score with these functions, and the report
shows the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuning.metrics import MODES
from tuning.store import ExperimentRecord, TrialRecord, TrialStatus, epoch_number

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
                best_epoch=epoch_number(best["epoch"]) if best else None,
                metrics={k: float(best[k]) for k in METRIC_COLUMNS if best and best.get(k) is not None},
                epochs_run=epoch_number(t.epochs[-1]["epoch"]) if t.epochs else 0,
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
