"""Evaluation metrics for sentence-pair similarity scores on KLUE-STS's 0-5 scale.

KLUE-STS (KLUE paper, section 3.2; ``klue-baseline``) reports two metrics: Pearson's r between
predicted and gold scores, and binary F1 after thresholding both at 3.0 (a pair scoring 3.0 or more
is "similar"). KLUE prints Pearson r x 100; here every metric keeps its raw scale (r in [-1, 1],
F1 in [0, 1]). Spearman's rho and the mean squared error are added for diagnosis.

Every metric takes two array-likes of the same length ``N >= 1`` (predictions, gold labels) and
returns a plain Python ``float``. Degenerate inputs never crash and never yield NaN:

- A correlation is undefined when either side is constant (zero variance, which includes
  ``N == 1``). It is reported as ``0.0``, so a collapsed model that predicts one value for every
  pair ranks last on a correlation rather than breaking the search.
- F1 is undefined when there are no positive predictions and no positive labels; it is reported as
  ``0.0`` (sklearn's ``zero_division`` default).

Inputs that are empty, of different lengths, not one-dimensional, or that hold NaN/inf raise
``ValueError``: those are bugs upstream (or a diverged model) and must not be ranked silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

THRESHOLD = 3.0
"""KLUE-STS's similarity threshold on the 0-5 scale: a score ``>= 3.0`` is the positive class."""

Mode = Literal["max", "min"]
Metric = Callable[[ArrayLike, ArrayLike], float]


def _as_pair(predictions: ArrayLike, labels: ArrayLike) -> tuple[NDArray, NDArray]:
    """Validate two score arrays and return them as float64 vectors.

    Args:
        predictions: Predicted scores, shape ``[N]`` (or ``[N, 1]``, as a one-output head yields).
        labels: Gold scores, shape ``[N]`` (or ``[N, 1]``).

    Returns:
        ``(predictions, labels)`` as one-dimensional float64 arrays of equal length ``N >= 1``.

    Raises:
        ValueError: If the shapes are not ``[N]``/``[N, 1]``, the lengths differ, ``N == 0``, or a
            value is NaN or infinite.
    """
    arrays = []
    for name, values in (("predictions", predictions), ("labels", labels)):
        array = np.asarray(values, dtype=np.float64)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise ValueError(f"{name} must have shape [N] or [N, 1], but got shape {array.shape}.")
        arrays.append(array)
    preds, golds = arrays
    if len(preds) != len(golds):
        raise ValueError(
            "predictions and labels must have the same length, but got "
            f"len(predictions)={len(preds)}, len(labels)={len(golds)}."
        )
    if len(preds) == 0:
        raise ValueError("metrics need at least one pair, but got len(predictions)=0, len(labels)=0.")
    for name, array in (("predictions", preds), ("labels", golds)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise ValueError(
                f"{name} must be finite, but {bad} of {len(array)} values are NaN or infinite "
                "(a diverged model? check the training loss and learning rate)."
            )
    return preds, golds


def _correlation(x: NDArray, y: NDArray) -> float:
    """Pearson's r of two validated vectors; ``0.0`` when either is constant."""
    # Test constancy on the values, not on the centered sum of squares: the mean of n copies of
    # 2.7 is not exactly 2.7, which leaves a ~1e-30 residue and a meaningless r.
    if np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0
    dx = x - x.mean()
    dy = y - y.mean()
    r = float(dx @ dy) / np.sqrt(float(dx @ dx) * float(dy @ dy))
    # Rounding can carry |r| a hair past 1 for perfectly (anti-)correlated inputs.
    return float(np.clip(r, -1.0, 1.0))


def pearson(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Pearson's correlation coefficient between predicted and gold scores (KLUE-STS's main metric).

    Args:
        predictions: Predicted scores, shape ``[N]``, any real scale.
        labels: Gold scores, shape ``[N]`` (0-5 for KLUE-STS/KorSTS).

    Returns:
        r in ``[-1, 1]``; ``0.0`` when either side is constant (correlation undefined; reported as
        0 so a collapsed model ranks last).
    """
    return _correlation(*_as_pair(predictions, labels))


def spearman(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Spearman's rank correlation: Pearson's r of the ranks (ties get their average rank).

    Args:
        predictions: Predicted scores, shape ``[N]``, any real scale.
        labels: Gold scores, shape ``[N]``.

    Returns:
        rho in ``[-1, 1]``; ``0.0`` when either side is constant (same rule as :func:`pearson`).
    """
    preds, golds = _as_pair(predictions, labels)
    return _correlation(rankdata(preds), rankdata(golds))


def f1(predictions: ArrayLike, labels: ArrayLike, threshold: float = THRESHOLD) -> float:
    """KLUE-STS's binary F1: threshold both sides at ``>= threshold``, positive class 1.

    Equals ``sklearn.metrics.f1_score(labels >= threshold, predictions >= threshold)`` with
    ``average="binary"``.

    Args:
        predictions: Predicted scores, shape ``[N]``, on the labels' scale (0-5).
        labels: Gold scores, shape ``[N]`` (0-5).
        threshold: A score ``>= threshold`` is positive; KLUE uses 3.0.

    Returns:
        ``2 TP / (2 TP + FP + FN)`` in ``[0, 1]``; ``0.0`` when there are no positive predictions
        and no positive labels (F1 undefined).
    """
    preds, golds = _as_pair(predictions, labels)
    predicted = preds >= threshold
    actual = golds >= threshold
    true_pos = int(np.count_nonzero(predicted & actual))
    false_pos = int(np.count_nonzero(predicted & ~actual))
    false_neg = int(np.count_nonzero(~predicted & actual))
    denominator = 2 * true_pos + false_pos + false_neg
    return 2 * true_pos / denominator if denominator else 0.0


def mse(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Mean squared error between predicted and gold scores.

    Args:
        predictions: Predicted scores, shape ``[N]``, on the labels' scale.
        labels: Gold scores, shape ``[N]``.

    Returns:
        The mean of ``(prediction - label) ** 2``, in squared label units (>= 0).
    """
    preds, golds = _as_pair(predictions, labels)
    return float(np.mean((preds - golds) ** 2))


METRICS: dict[str, Metric] = {
    "pearson": pearson,
    "f1": f1,
    "spearman": spearman,
    "mse": mse,
}
"""Every metric by name; the names are the keys trials report and schedulers stop on."""

MODES: dict[str, Mode] = {
    "pearson": "max",
    "f1": "max",
    "spearman": "max",
    "mse": "min",
}
"""Whether a larger (``"max"``) or smaller (``"min"``) value of each metric is better."""


def compute_all(predictions: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """Every metric in :data:`METRICS` on one set of predictions.

    Args:
        predictions: Predicted scores, shape ``[N]``, on the labels' scale (0-5).
        labels: Gold scores, shape ``[N]`` (0-5).

    Returns:
        Metric name -> value, as plain Python floats (ready for ``ray.tune.report``/JSON).
    """
    preds, golds = _as_pair(predictions, labels)
    return {name: float(metric(preds, golds)) for name, metric in METRICS.items()}
