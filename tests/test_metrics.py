"""Tests of tuning.metrics: known correlations, a hand-worked F1, degenerate and invalid inputs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from tuning.metrics import (
    METRICS,
    MODES,
    THRESHOLD,
    Metric,
    compute_all,
    f1,
    mse,
    pearson,
    spearman,
)


def test_pearson_of_perfectly_correlated_scores_is_one() -> None:
    assert pearson([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0]) == 1.0


def test_pearson_of_perfectly_anticorrelated_scores_is_minus_one() -> None:
    assert pearson([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]) == -1.0


def test_pearson_hand_worked() -> None:
    # Centered: [-1, 0, 1] and [-1, 1, 0]; r = 1 / sqrt(2 * 2).
    assert pearson([1.0, 2.0, 3.0], [1.0, 3.0, 2.0]) == pytest.approx(0.5, abs=1e-15)


def test_pearson_and_spearman_match_scipy() -> None:
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 5, size=50)
    predictions = labels + rng.normal(0, 1, size=50)
    assert pearson(predictions, labels) == pytest.approx(stats.pearsonr(predictions, labels)[0])
    assert spearman(predictions, labels) == pytest.approx(stats.spearmanr(predictions, labels)[0])


def test_spearman_of_monotone_nonlinear_scores_is_one() -> None:
    predictions = [1.0, 10.0, 100.0, 1000.0]
    labels = [1.0, 2.0, 3.0, 4.0]
    assert spearman(predictions, labels) == 1.0
    assert pearson(predictions, labels) < 1.0


def test_spearman_gives_ties_their_average_rank() -> None:
    # Ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4]: r = 4.5 / sqrt(4.5 * 5) = sqrt(0.9).
    assert spearman([1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(0.9))


def test_f1_hand_worked() -> None:
    # Positive (>= 3.0) predictions: T F T F T; positive labels: T T F F T.
    # TP = 2 (items 0, 4), FP = 1 (item 2), FN = 1 (item 1): F1 = 4 / 6.
    predictions = [3.0, 2.9, 4.0, 1.0, 3.5]
    labels = [3.5, 3.0, 2.0, 1.0, 4.0]
    assert f1(predictions, labels) == 2 / 3


def test_f1_threshold_is_inclusive_on_both_sides() -> None:
    assert THRESHOLD == 3.0
    assert f1([3.0], [3.0]) == 1.0
    assert f1([np.nextafter(3.0, 0.0)], [3.0]) == 0.0
    assert f1([3.0], [np.nextafter(3.0, 0.0)]) == 0.0


def test_f1_takes_another_threshold() -> None:
    # At 2.0 the positives are T T T F T (predictions) and T T T F T (labels).
    assert f1([3.0, 2.9, 4.0, 1.0, 3.5], [3.5, 3.0, 2.0, 1.0, 4.0], threshold=2.0) == 1.0


def test_f1_without_any_positive_is_zero() -> None:
    assert f1([0.0, 1.0, 2.9], [1.0, 2.0, 0.5]) == 0.0


def test_f1_with_positive_predictions_but_no_positive_labels_is_zero() -> None:
    assert f1([4.0, 5.0], [1.0, 2.0]) == 0.0


def test_mse_hand_worked() -> None:
    assert mse([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]) == 5 / 3


@pytest.mark.parametrize("metric", [pearson, spearman])
@pytest.mark.parametrize(
    ("predictions", "labels"),
    [
        ([2.5, 2.5, 2.5], [1.0, 3.0, 5.0]),  # constant predictions (a collapsed model)
        ([2.7] * 7, [1.0, 3.0, 5.0, 0.0, 2.0, 4.0, 4.5]),  # constant, mean(x) != 2.7 in floats
        ([1.0, 3.0, 5.0], [4.0, 4.0, 4.0]),  # constant labels
        ([2.0], [3.0]),  # a single pair
    ],
)
def test_undefined_correlation_is_zero_without_warnings(
    metric: Metric, predictions: list[float], labels: list[float]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metric(predictions, labels) == 0.0


def test_compute_all_on_a_collapsed_model_is_finite() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = compute_all([2.5, 2.5, 2.5, 2.5], [0.0, 1.0, 4.0, 5.0])
    assert values == {"pearson": 0.0, "f1": 0.0, "spearman": 0.0, "mse": (6.25 * 2 + 2.25 * 2) / 4}


def test_compute_all_returns_every_metric_as_python_float() -> None:
    values = compute_all(np.array([1.0, 2.0, 3.5, 4.0]), np.array([1.5, 2.0, 3.0, 5.0]))
    assert list(values) == list(METRICS)
    assert all(type(value) is float for value in values.values())
    assert values["f1"] == 1.0


def test_every_metric_has_a_mode() -> None:
    assert set(MODES) == set(METRICS) == {"pearson", "f1", "spearman", "mse"}
    assert MODES == {"pearson": "max", "f1": "max", "spearman": "max", "mse": "min"}


def test_one_output_head_shape_is_accepted() -> None:
    assert pearson(np.array([[1.0], [2.0], [3.0]]), [1.0, 2.0, 3.0]) == 1.0


@pytest.mark.parametrize("name", list(METRICS))
def test_length_mismatch_names_both_lengths(name: str) -> None:
    with pytest.raises(ValueError, match=r"len\(predictions\)=3, len\(labels\)=2"):
        METRICS[name]([1.0, 2.0, 3.0], [1.0, 2.0])


@pytest.mark.parametrize("name", list(METRICS))
def test_empty_input_is_an_error(name: str) -> None:
    with pytest.raises(ValueError, match=r"len\(predictions\)=0, len\(labels\)=0"):
        METRICS[name]([], [])


def test_non_finite_predictions_are_an_error() -> None:
    with pytest.raises(ValueError, match="predictions must be finite, but 1 of 3"):
        compute_all([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0])


def test_multi_column_predictions_are_an_error() -> None:
    with pytest.raises(ValueError, match=r"shape \[N\] or \[N, 1\], but got shape \(2, 2\)"):
        pearson(np.zeros((2, 2)), [1.0, 2.0])
