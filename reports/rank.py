"""Rankings: pure functions from trial records to table rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reports.records import TrialRecord, epoch_number

METRIC_COLUMNS = ("pearson", "f1", "spearman", "mse")


@dataclass
class Row:
    """One trial as ranked: its best epoch by the search metric (the checkpoint it keeps)."""

    trial_id: str
    stage: str
    params: dict[str, Any]
    best_epoch: int | float | None
    metrics: dict[str, float]
    epochs_run: int | float
    planned_epochs: int
    status: str
    error: str | None = None
    retries: int = 0


def to_rows(trials: list[TrialRecord], metric: str = "pearson", mode: str = "max") -> list[Row]:
    """Each trial's best epoch by ``metric``; trials without a reported epoch get empty metrics."""
    rows = []
    for t in trials:
        best = t.best(metric, mode)
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


def rank(rows: list[Row], by: str, mode: str = "max") -> list[Row]:
    """Sort rows best first by metric ``by``; rows without it go last; ties by trial id."""
    sign = -1 if mode == "max" else 1

    def key(row: Row) -> tuple:
        value = row.metrics.get(by)
        return (value is None, sign * value if value is not None else 0.0, row.stage, row.trial_id)

    return sorted(rows, key=key)


def pareto_front(rows: list[Row], metrics: tuple[str, str] = ("pearson", "f1")) -> list[Row]:
    """Rows no other row beats on both metrics (higher is better), best first by the first."""
    a, b = metrics
    scored = [r for r in rows if a in r.metrics and b in r.metrics]
    front = [
        r
        for r in scored
        if not any(
            o.metrics[a] >= r.metrics[a]
            and o.metrics[b] >= r.metrics[b]
            and (o.metrics[a] > r.metrics[a] or o.metrics[b] > r.metrics[b])
            for o in scored
        )
    ]
    return rank(front, a)
