"""Markdown building blocks of the report: number formatting, tables, trial status. Pure."""

from __future__ import annotations

import math
from typing import Any

from tuning.ranking import METRIC_COLUMNS, Row, rank
from tuning.store import TrialStatus

STATUS_TEXT: dict[TrialStatus, str] = {
    "finished": "finished",
    "stopped": "stopped early (ASHA)",
    "budget": "stopped by the time budget",
    "failed": "failed",
    "incomplete": "incomplete (interrupted or still running)",
    "unreadable": "unreadable (a file of the trial could not be read)",
}


def fmt(value: Any) -> str:
    """A cell: floats with 4 significant decimals (small ones in 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-2 and value != 0 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def human(size: int) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 KiB``, ``12.3 MiB``, ``4.00 GiB``."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}"
    return f"{size} B"  # unreachable


def mean_std(stat: tuple[float, float, int]) -> str:
    """``mean ± std`` of a (mean, std, n) triple; ``-`` when n is 0."""
    mean, std, n = stat
    return "-" if not n else f"{mean:.4f} ± {std:.4f}"


def status(row: Row) -> str:
    """How a trial ended, in words: early stops, retries and the error included."""
    text = STATUS_TEXT.get(row.status, row.status)
    if row.status == "stopped":
        text = f"stopped by ASHA after {row.epochs_run}/{row.planned_epochs} epochs"
    if row.status == "budget":
        text = f"stopped by the time budget after {row.epochs_run}/{row.planned_epochs} epochs"
    if row.retries:
        text += f", retried {row.retries}x from checkpoint"
    if row.status == "unreadable":
        read = f"last report read: epoch {row.epochs_run}" if row.epochs_run else "no report could be read"
        text = f"unreadable: a file of the trial could not be read ({read}; see the report's top)"
    if row.error and row.status == "failed":
        text += f": {row.error[:120]}"
    return text


def pearson_interval(r: float, n: int | None) -> str:
    """The 95% interval of a Pearson ``r`` measured on ``n`` pairs (Fisher's z), as ``lo–hi``;
    ``-`` when ``n`` is unknown or too small."""
    if n is None or n <= 3 or not -1 < r < 1:
        return "-"
    z, half = math.atanh(r), 1.96 / math.sqrt(n - 3)
    return f"{math.tanh(z - half):.3f}–{math.tanh(z + half):.3f}"


def ranking_table(rows: list[Row], by: str, params: list[str], validation_pairs: int | None = None) -> str:
    """Rows best first by ``by``, one column per searched hyperparameter and metric, with each
    trial's budget (training pairs its kept checkpoint had seen) and its Pearson's 95% interval
    on the ``validation_pairs`` pairs it was measured on."""
    header = ["rank", "trial", *params, "best epoch", "pairs", *METRIC_COLUMNS, "pearson 95% CI", "status"]
    body = [
        [
            i,
            f"{r.stage}/{r.trial_id}",
            *[r.params.get(p, "") for p in params],
            r.best_epoch if r.best_epoch is not None else "-",
            f"{r.pairs:,}" if r.pairs is not None else "-",
            *[r.metrics.get(m, "-") for m in METRIC_COLUMNS],
            pearson_interval(r.metrics["pearson"], validation_pairs) if "pearson" in r.metrics else "-",
            status(r),
        ]
        for i, r in enumerate(rank(rows, by), start=1)
    ]
    return table(header, body)
