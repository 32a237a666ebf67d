"""The report module: read an experiment back from storage, rank its trials, render markdown."""

from __future__ import annotations

from pathlib import Path

from reports.figures import compare_chart
from reports.rank import Row, pareto_front, rank, to_rows
from reports.records import ExperimentRecord, TrialRecord, read_experiment
from reports.render import render
from reports.summary import method_rows

REPORT_FILE = "report.md"

__all__ = [
    "ExperimentRecord",
    "Row",
    "TrialRecord",
    "pareto_front",
    "rank",
    "read_experiment",
    "render",
    "to_rows",
    "write_report",
]


def write_report(experiment_dir: str | Path) -> Path:
    """Rebuild ``<experiment>/report.md`` from what storage holds; returns its path."""
    record = read_experiment(experiment_dir)
    figures = {}
    chart = compare_chart(method_rows(record), experiment_dir)
    if chart:
        figures["compare"] = chart
    path = Path(experiment_dir, REPORT_FILE)
    path.write_text(render(record, figures), encoding="utf-8")
    return path
