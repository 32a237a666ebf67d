"""Is the winner worth the search? Paired bootstrap comparisons on the same pairs.

Two models scored on one split share its pairs: the easy and hard pairs lift or sink both. So the
gap between them is judged by resampling the pairs together (a paired bootstrap, as in Koehn
2004 for MT and Dror et al. 2018 for NLP significance): each resample draws ``n`` pairs with
replacement, both models' Pearson are computed on it, and the 2.5th and 97.5th percentiles of
their difference bound a 95% interval. An interval that excludes 0 is a gap beyond the noise of
which pairs were drawn; one that holds 0 is a tie.

The winner is compared with (a) the profile's recipe, trained inside the search to the largest
budget as its control (``tuning.methods._stage.ControlASHA``), on every held-out split, and
(b) the other scored top trials on validation (can the search tell its top trials apart?).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tuning.store import PAIRS, Control, ExperimentRecord, Gap, TestScore

RESAMPLES = 2000
"""Bootstrap resamples: the interval's ends move by about 0.001 Pearson between seeds at 2000."""
CHUNK = 250
"""Resamples computed at once (memory: ``CHUNK`` x pairs floats per array)."""


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``x`` with the same row of ``y``."""
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    denom = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (x * y).sum(axis=1) / denom, 0.0)


def paired_gap(
    labels: np.ndarray, model: np.ndarray, other: np.ndarray, seed: int = 0, resamples: int = RESAMPLES
) -> Gap:
    """Pearson of ``model`` minus that of ``other`` against ``labels`` (the same pairs), with the
    paired bootstrap 95% percentile interval over ``resamples`` resamples of the pairs."""
    labels, model, other = (np.asarray(a, dtype=np.float64) for a in (labels, model, other))
    if not len(labels) == len(model) == len(other):
        raise ValueError(f"scores of {len(model)} and {len(other)} pairs for {len(labels)} labels")
    rng = np.random.default_rng(seed)
    n, gaps = len(labels), []
    for start in range(0, resamples, CHUNK):
        idx = rng.integers(0, n, size=(min(CHUNK, resamples - start), n))
        y = labels[idx]
        gaps.append(pearson_rows(model[idx], y) - pearson_rows(other[idx], y))
    spread = np.concatenate(gaps)
    full = pearson_rows(np.stack([model, other]), np.stack([labels, labels]))
    low, high = np.percentile(spread, [2.5, 97.5])
    return Gap(
        model=float(full[0]),
        other=float(full[1]),
        gap=float(full[0] - full[1]),
        low=float(low),
        high=float(high),
        pairs=n,
    )


Predictions = Mapping[tuple[str, str], Mapping[str, np.ndarray]]
"""(stage, trial id) -> split name -> that trial's scores of the split's pairs, in order."""


def control(
    record: ExperimentRecord,
    scores: list[TestScore],
    predictions: Predictions,
    labels: Mapping[str, np.ndarray],
    recipe: tuple[str, str] | None,
    seed: int = 0,
    exported: tuple[str, Mapping[str, np.ndarray]] | None = None,
) -> Control | None:
    """The exported winner (``scores``' first ``top``) against the recipe's trial on every
    held-out split and against the other top trials on validation; ``None`` without a winner.

    Args:
        record: the experiment (for the trials' budgets).
        scores: what ``tuning.winners.score_winners`` scored, the recipe's trial included.
        predictions: every scored trial's scores of validation and the held-out splits.
        labels: split -> the gold scores, in the same order.
        recipe: (stage, trial id) of the recipe's trial, or ``None`` when the search ran none.
        seed: the bootstrap's seed (the experiment's).
        exported: when the exported model is not the winner's checkpoint (a soup): what it is,
            and its scores of the held-out splits; those are compared with the recipe's.
    """
    top = [s for s in scores if s.role == "top"]
    if not top:
        return None
    winner = top[0]
    key = (winner.stage, winner.trial_id)
    out = Control(winner=f"{winner.stage}/{winner.trial_id}", resamples=RESAMPLES)
    out.winner_pairs = _pairs(record, winner)
    for other in top[1:]:
        theirs = predictions[(other.stage, other.trial_id)]
        out.runners_up[f"{other.stage}/{other.trial_id}"] = paired_gap(
            labels["validation"], predictions[key]["validation"], theirs["validation"], seed
        )
    if recipe is None:
        out.note = (
            "this search ran no recipe trial (the method enqueues none, `search.start_from_recipe` is "
            "off, or the recipe's values lie outside the searched ranges)"
        )
        return out
    scored = next((s for s in scores if (s.stage, s.trial_id) == recipe), None)
    if scored is None:
        out.note = f"the recipe's trial {recipe[0]}/{recipe[1]} kept no checkpoint to score"
        return out
    out.recipe, out.recipe_params = f"{recipe[0]}/{recipe[1]}", scored.params
    out.recipe_pairs = _pairs(record, scored)
    ours = predictions[key]
    if exported is not None:
        out.exported, ours = exported
    for split in (s for s in labels if s != "validation"):
        out.held_out[split] = paired_gap(labels[split], ours[split], predictions[recipe][split], seed)
    return out


def _pairs(record: ExperimentRecord, score: TestScore) -> int | None:
    """Training pairs seen at the scored checkpoint of ``score``'s trial."""
    trial = next((t for t in record.trials if (t.stage, t.trial_id) == (score.stage, score.trial_id)), None)
    best = trial.best(record.metric) if trial else None
    return int(best[PAIRS]) if best and best.get(PAIRS) is not None else None
