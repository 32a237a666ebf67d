"""The report module: read an experiment back from storage, render markdown and figures.

Everything it reads comes from ``tuning.store`` (the stored records) and ``tuning.ranking``
(the order the search itself used); this package only presents them.
"""

from __future__ import annotations

from pathlib import Path

from reports.cost import cost_chart
from reports.figures import (
    FIGURE_FILES,
    compare_chart,
    importance_chart,
    learning_curves,
    pareto_scatter,
)
from reports.importance import experiment_importances
from reports.render import render
from reports.summary import method_rows
from tuning.ranking import pareto_front, recipe_trials, to_rows
from tuning.store import BEST_MODEL_DIR, REPORT_FILE, ExperimentRecord, measure, read_experiment

__all__ = ["read_experiment", "render", "report_with_problems", "write_report"]


def damaged_model(record: ExperimentRecord) -> list[str]:
    """The exported ``best_model``'s weights file, when it cannot be loaded (with the cause)."""
    from tuning.model import ModelError, check_weights

    folder = Path(record.path, BEST_MODEL_DIR)
    if not folder.is_dir():
        return []
    try:
        check_weights(folder)
    except ModelError as err:
        return [str(err).split(";")[0]]
    return []


def write_figures(record: ExperimentRecord) -> dict[str, str]:
    """Draw every figure the record has data for beside ``report.md``; name -> file name."""
    folder = record.path
    rows = to_rows(record.trials, record.metric)
    drawn = {
        "compare": compare_chart(method_rows(record), folder),
        "cost": cost_chart(record, folder),
        "pareto": pareto_scatter(rows, pareto_front(rows), folder),
        "importance": importance_chart(experiment_importances(record), folder),
        "curves": learning_curves(
            record.trials,
            [s.stage for s in record.stages],
            folder,
            winners={s.stage: s.winner.trial_id for s in record.stages if s.winner},
            recipes=recipe_trials(record),
        ),
    }
    return {name: file for name, file in drawn.items() if file}


def write_report(experiment_dir: str | Path) -> Path:
    """Rebuild ``<experiment>/report.md`` and its figures from what storage holds; returns its path.

    A file that cannot be read is named at the report's top (``record.unreadable``): a trial's
    torn ``result.json`` or foreign ``params.json``, the exported model's damaged weights.
    """
    return report_with_problems(experiment_dir)[0]


def report_with_problems(experiment_dir: str | Path) -> tuple[Path, list[str]]:
    """:func:`write_report`, and the files it could not read (each with the cause)."""
    record = read_experiment(experiment_dir)
    record.unreadable += damaged_model(record)
    # Measured before anything is written, without the report's own files: a rebuilt report
    # states the same size.
    record.disk = measure(experiment_dir, skip=(REPORT_FILE, *FIGURE_FILES))
    figures = write_figures(record)
    path = Path(experiment_dir, REPORT_FILE)
    path.write_text(render(record, figures), encoding="utf-8")
    return path, record.unreadable
