"""Rankings on hand-written trial records: each trial's best report, the order by a metric in its
direction (``tuning.metrics.MODES``), the Pareto front, and an experiment's best trials."""

from __future__ import annotations

from typing import Any

import pytest

from tuning.metrics import MODES
from tuning.ranking import METRIC_COLUMNS, Row, best_trials, pareto_front, rank, ranked, to_rows
from tuning.store import ExperimentMeta, ExperimentRecord, StageRecord, TrialRecord


def epoch(n: int, pearson: float | None, f1: float | None, **more: Any) -> dict[str, Any]:
    return {"epoch": n, "pearson": pearson, "f1": f1, **more}


def row(trial_id: str, stage: str = "s", **metrics: float) -> Row:
    return Row(
        trial_id=trial_id,
        stage=stage,
        params={},
        best_epoch=1 if metrics else None,
        metrics=metrics,
        epochs_run=1,
        planned_epochs=1,
        status="finished",
    )


def ids(rows: list[Row]) -> list[str]:
    return [r.trial_id for r in rows]


# --- to_rows ---------------------------------------------------------------------------------


def test_to_rows_takes_each_trials_best_epoch_by_the_metric() -> None:
    trials = [
        TrialRecord(
            "a",
            "optuna",
            {"learning_rate": 1e-5},
            reports=[
                epoch(1, 0.5, 0.6, spearman=0.4, mse=2.0, loss=0.3),
                epoch(2, 0.7, 0.5, spearman=0.6, mse=1.5, loss=0.2),
            ],
            planned_epochs=3,
            status="stopped",
        ),
        TrialRecord(
            "b", "optuna", {"learning_rate": 3e-5}, planned_epochs=3, status="failed", error="boom", retries=2
        ),
    ]
    assert to_rows(trials, "pearson") == [
        Row(
            trial_id="a",
            stage="optuna",
            params={"learning_rate": 1e-5},
            best_epoch=2,
            metrics={"pearson": 0.7, "f1": 0.5, "spearman": 0.6, "mse": 1.5},
            epochs_run=2,
            planned_epochs=3,
            status="stopped",
        ),
        Row(
            trial_id="b",
            stage="optuna",
            params={"learning_rate": 3e-5},
            best_epoch=None,
            metrics={},
            epochs_run=0,
            planned_epochs=3,
            status="failed",
            error="boom",
            retries=2,
        ),
    ]


def test_to_rows_by_mse_takes_the_lowest_and_skips_a_missing_metric() -> None:
    t = TrialRecord("a", "s", {}, reports=[epoch(1, 0.5, None, mse=2.0), epoch(2, 0.4, None, mse=1.0)])
    (r,) = to_rows([t], "mse")
    assert r.best_epoch == 2
    assert r.metrics == {"pearson": 0.4, "mse": 1.0}


# --- rank ------------------------------------------------------------------------------------

ROWS = [
    row("d"),
    row("c", pearson=0.8, f1=0.7, mse=1.2),
    row("a", pearson=0.9, f1=0.6, mse=1.0),
    row("b", pearson=0.8, f1=0.8, mse=1.2),
    row("e", pearson=0.7),
]


def test_rank_by_f1() -> None:
    assert ids(rank(ROWS, "f1")) == ["b", "c", "a", "d", "e"]


def test_rank_by_pearson_breaks_ties_by_trial_id() -> None:
    assert ids(rank(ROWS, "pearson")) == ["a", "b", "c", "e", "d"]


def test_rank_by_mse_puts_the_lowest_first() -> None:
    assert ids(rank(ROWS, "mse")) == ["a", "b", "c", "d", "e"]


def test_rank_puts_the_highest_pearson_and_the_lowest_mse_first() -> None:
    # The better trial by pearson is the worse one by mse: each metric keeps its own direction.
    rows = [row("low_err", pearson=0.5, mse=1.0), row("high_corr", pearson=0.9, mse=3.0)]
    assert ids(rank(rows, "pearson")) == ["high_corr", "low_err"]
    assert ids(rank(rows, "mse")) == ["low_err", "high_corr"]


@pytest.mark.parametrize("metric", METRIC_COLUMNS)
def test_rank_follows_each_metrics_direction(metric: str) -> None:
    rows = [row("small", **{metric: 0.2}), row("large", **{metric: 0.8})]
    assert ids(rank(rows, metric))[0] == ("large" if MODES[metric] == "max" else "small")


def test_rank_puts_rows_without_the_metric_last_by_id() -> None:
    rows = [row("z"), row("y", pearson=0.1, mse=0.1), row("x")]
    assert ids(rank(rows, "pearson")) == ["y", "x", "z"]
    assert ids(rank(rows, "mse")) == ["y", "x", "z"]


def test_rank_breaks_ties_by_stage_before_trial_id() -> None:
    rows = [row("a", stage="s2", f1=0.5), row("b", stage="s1", f1=0.5)]
    assert ids(rank(rows, "f1")) == ["b", "a"]


def test_rank_of_nothing_is_nothing() -> None:
    assert rank([], "pearson") == []


# --- ranked and best_trials ------------------------------------------------------------------


def scored(trial_id: str, stage: str, pearson: float | None, mse: float | None = None) -> TrialRecord:
    epochs = [] if pearson is None else [{"epoch": 1, "pearson": pearson, "mse": mse}]
    return TrialRecord(trial_id, stage, {}, reports=epochs, planned_epochs=1, status="finished")


def experiment(trials: list[TrialRecord]) -> ExperimentRecord:
    meta = ExperimentMeta(config={"name": "demo", "search": {"metric": "pearson"}})
    stages = [StageRecord(stage="first", status="done"), StageRecord(stage="second", status="done")]
    return ExperimentRecord("/runs/demo", meta, stages, trials, [])


TWO_STAGES = [
    scored("a", "first", 0.6, mse=1.0),
    scored("b", "first", None),  # failed before its first report
    scored("a", "second", 0.8, mse=2.0),  # same trial id as first/a: told apart by stage
    scored("c", "second", 0.7, mse=0.5),
]


def test_ranked_leaves_out_trials_without_the_metric() -> None:
    assert [(r.stage, r.trial_id) for r in ranked(TWO_STAGES, "pearson")] == [
        ("second", "a"),
        ("second", "c"),
        ("first", "a"),
    ]


def test_best_trials_are_the_k_best_trial_records_by_the_metric() -> None:
    record = experiment(TWO_STAGES)
    best = best_trials(record, "pearson", 2)
    assert best == [TWO_STAGES[2], TWO_STAGES[3]]
    assert all(b is t for b, t in zip(best, (TWO_STAGES[2], TWO_STAGES[3])))  # the records themselves


def test_best_trials_by_mse_are_the_lowest_first() -> None:
    best = best_trials(experiment(TWO_STAGES), "mse", 2)
    assert [(t.stage, t.trial_id) for t in best] == [("second", "c"), ("first", "a")]


def test_best_trials_without_k_are_every_scored_trial() -> None:
    best = best_trials(experiment(TWO_STAGES), "pearson")
    assert [(t.stage, t.trial_id) for t in best] == [("second", "a"), ("second", "c"), ("first", "a")]


def test_best_trials_of_an_experiment_without_scores_are_none() -> None:
    assert best_trials(experiment([scored("b", "first", None)]), "pearson", 3) == []


# --- pareto_front ----------------------------------------------------------------------------


def test_pareto_front_hand_computed() -> None:
    rows = [
        row("a", pearson=0.9, f1=0.5),
        row("b", pearson=0.8, f1=0.7),
        row("c", pearson=0.7, f1=0.7),  # b is better on pearson, equal on f1
        row("d", pearson=0.6, f1=0.9),
        row("e", pearson=0.85, f1=0.5),  # a is better on pearson, equal on f1
        row("f", pearson=0.9, f1=0.5),  # equal to a: neither beats the other
        row("g", pearson=0.5, f1=0.4),  # beaten by everything
        row("h", f1=0.95),  # no pearson: not comparable
    ]
    assert ids(pareto_front(rows)) == ["a", "f", "b", "d"]


def test_pareto_front_on_other_metrics() -> None:
    rows = [row("a", pearson=0.9, spearman=0.5), row("b", pearson=0.8, spearman=0.4)]
    assert ids(pareto_front(rows, ("pearson", "spearman"))) == ["a"]


def test_pareto_front_takes_mse_lower_as_better() -> None:
    rows = [
        row("a", pearson=0.9, mse=2.0),
        row("b", pearson=0.8, mse=1.0),
        row("c", pearson=0.7, mse=1.5),  # b has higher pearson and lower mse
    ]
    assert ids(pareto_front(rows, ("pearson", "mse"))) == ["a", "b"]
