"""Hyperparameter importance on hand-written trial records: stored spaces become Optuna
distributions, a deciding hyperparameter ranks first, and every reason not to compute is stated."""

from __future__ import annotations

from typing import Any

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from reports.importance import (
    MIN_TRIALS,
    distribution,
    domain_text,
    experiment_importances,
    stage_importance,
    top_count,
)
from tuning.store import ExperimentMeta, ExperimentRecord, StageRecord, TrialRecord

SPACE = {
    "learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-3},
    "batch_size": {"type": "choice", "values": [8, 16, 32]},
    "weight_decay": {"type": "uniform", "low": 0.0, "high": 0.1},
    "seed": 42,
}
STAGE = StageRecord(
    stage="optuna", status="done", space=SPACE, metric="pearson", mode="max", scheduler="asha"
)
BATCHES = [8, 32, 16, 16, 8, 32, 32, 16, 8, 16, 32, 8]
DECAYS = [0.07, 0.01, 0.09, 0.03, 0.05, 0.02, 0.08, 0.06, 0.04, 0.0, 0.1, 0.035]


def trial(i: int, pearson: float | None, f1: float | None = None, **params: Any) -> TrialRecord:
    epochs = (
        [] if pearson is None else [{"epoch": 1, "pearson": pearson, "f1": f1 if f1 is not None else pearson}]
    )
    return TrialRecord(f"t{i:02d}", "optuna", params, reports=epochs, planned_epochs=1, status="finished")


def lr_decides(n: int = 12) -> list[TrialRecord]:
    """Scores set by the learning rate alone (best near 1e-4); batch size and decay are noise."""
    out = []
    for i in range(n):
        lr = 10 ** (-5 + 2 * i / (n - 1))
        score = 0.9 - abs(i - 2 * n // 3) / n
        out.append(trial(i, score, learning_rate=lr, batch_size=BATCHES[i % 12], weight_decay=DECAYS[i % 12]))
    return out


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"type": "loguniform", "low": 1e-5, "high": 1e-3}, FloatDistribution(1e-5, 1e-3, log=True)),
        ({"type": "loguniform", "low": "1e-5", "high": "1e-3"}, FloatDistribution(1e-5, 1e-3, log=True)),
        ({"type": "uniform", "low": 0, "high": 0.1}, FloatDistribution(0.0, 0.1)),
        ({"type": "randint", "low": 2, "high": 4}, IntDistribution(2, 4)),
        ({"type": "choice", "values": [8, 16]}, CategoricalDistribution([8, 16])),
        ({"type": "grid", "values": ["linear", "step"]}, CategoricalDistribution(["linear", "step"])),
        (42, None),
    ],
    ids=["loguniform", "yaml-string-numbers", "uniform", "randint", "choice", "grid", "fixed"],
)
def test_space_entries_become_optuna_distributions(spec: Any, expected: Any) -> None:
    assert distribution(spec) == expected


def test_the_hyperparameter_that_decides_the_score_is_the_most_important() -> None:
    imp = stage_importance(STAGE, lr_decides())
    assert imp.skipped is None
    assert imp.trials == 12
    assert imp.params[0] == "learning_rate"
    assert set(imp.params) == {"learning_rate", "batch_size", "weight_decay"}  # seed is fixed
    for metric in ("pearson", "f1"):
        values = imp.values[metric]
        assert sum(values.values()) == pytest.approx(1.0)
        assert values["learning_rate"] > 0.5
        assert values["learning_rate"] > 2 * max(values["batch_size"], values["weight_decay"])


def test_importance_is_deterministic() -> None:
    assert stage_importance(STAGE, lr_decides()) == stage_importance(STAGE, lr_decides())


def test_importance_per_metric_follows_that_metric() -> None:
    """F1 decided by the batch size, Pearson by the learning rate."""
    trials = [
        trial(i, t.reports[0]["pearson"], 0.9 if t.params["batch_size"] == 32 else 0.3, **t.params)
        for i, t in enumerate(lr_decides())
    ]
    imp = stage_importance(STAGE, trials)
    assert max(imp.values["pearson"], key=imp.values["pearson"].get) == "learning_rate"
    assert max(imp.values["f1"], key=imp.values["f1"].get) == "batch_size"


def test_fewer_than_four_scored_trials_are_skipped_with_the_reason() -> None:
    trials = [*lr_decides()[:3], trial(99, None, learning_rate=1e-4, batch_size=8, weight_decay=0.0)]
    imp = stage_importance(STAGE, trials)
    assert imp.values == {}
    assert imp.skipped == f"3 trials with a validation score; importance needs at least {MIN_TRIALS}."


def test_fewer_than_two_varied_hyperparameters_are_skipped_with_the_reason() -> None:
    trials = [
        trial(i, 0.1 * i, learning_rate=10 ** (-5 + i / 5), batch_size=16, weight_decay=0.0) for i in range(6)
    ]
    space = {**SPACE, "weight_decay": 0.0}  # fixed in the space; batch size never varied
    imp = stage_importance(STAGE.model_copy(update={"space": space}), trials)
    assert imp.skipped == "1 hyperparameter varied (learning_rate); importance compares at least 2."


def test_a_stage_that_searched_nothing_says_so() -> None:
    imp = stage_importance(StageRecord(stage="seeds", status="done", space={"seed": 42}), [trial(1, 0.5)])
    assert imp.skipped == "0 hyperparameters varied; importance compares at least 2."


def test_pbt_is_skipped_because_values_change_during_a_trial() -> None:
    imp = stage_importance(STAGE.model_copy(update={"scheduler": "PopulationBasedTraining"}), lr_decides())
    assert imp.skipped is not None and imp.skipped.startswith("PBT changes hyperparameters")


def test_equal_scores_are_skipped_with_the_reason() -> None:
    trials = [trial(i, 0.5, **t.params) for i, t in enumerate(lr_decides(6))]
    assert stage_importance(STAGE, trials).skipped == "all 6 trials scored the same pearson."


def test_a_metric_with_equal_scores_is_left_out_with_a_note() -> None:
    trials = [trial(i, t.reports[0]["pearson"], 0.6, **t.params) for i, t in enumerate(lr_decides())]
    imp = stage_importance(STAGE, trials)
    assert set(imp.values) == {"pearson"}
    assert imp.notes == ["f1: all 12 trials scored the same."]


def test_trials_without_a_score_or_outside_the_space_do_not_count() -> None:
    trials = [
        *lr_decides(),
        trial(50, None, learning_rate=1e-4, batch_size=8, weight_decay=0.0),  # failed before epoch 1
        trial(51, 0.99, learning_rate=1e-4, batch_size=64, weight_decay=0.0),  # 64 is not a choice
    ]
    assert stage_importance(STAGE, trials).trials == 12


@pytest.mark.parametrize(
    ("values", "count"),
    [
        ([0.1 * i for i in range(12)], 5),  # about 5 best trials
        ([0.1 * i for i in range(4)], 2),  # at most the better half
        ([0.01 * i for i in range(100)], 10),  # at least the best 10%
        ([0.9] * 4 + [0.3] * 8, 4),  # ties are never split: the 4 trials with 0.9
        ([0.9] * 7 + [0.3] * 5, 7),  # nearest place where the scores differ
        ([0.5] * 6, 0),  # all equal: nothing to compare
    ],
    ids=["five", "half", "tenth", "ties-below", "ties-above", "all-equal"],
)
def test_top_count(values: list[float], count: int) -> None:
    assert top_count(values) == count


def test_experiment_importances_are_per_stage_in_run_order() -> None:
    second = STAGE.model_copy(update={"stage": "later"})
    exp = ExperimentRecord("/x", ExperimentMeta(config={}), [STAGE, second], lr_decides(), [])
    result = experiment_importances(exp)
    assert [i.stage for i in result] == ["optuna", "later"]
    assert result[0].params[0] == "learning_rate"
    assert result[1].skipped == "0 hyperparameters varied; importance compares at least 2."


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ({"type": "loguniform", "low": 1e-5, "high": 0.001}, "loguniform 1e-05..0.001"),
        ({"type": "choice", "values": [8, 16]}, "choice 8, 16"),
        (42, "fixed 42"),
    ],
)
def test_domain_text(spec: Any, text: str) -> None:
    assert domain_text(spec) == text
