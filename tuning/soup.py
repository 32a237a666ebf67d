"""A greedy soup of the search's best checkpoints: the exported model, when it beats the best one.

The trials of a search are fine-tuned from the same pretrained model with different
hyperparameters, so their weights lie in one basin and an average of them is often better than
any of them (Wortsman et al. 2022, "Model soups", the greedy recipe; AutoGluon averages its top
checkpoints by default). What the search already paid for is used, nothing is retrained:

1. The candidates are the scored checkpoints (the top ``k`` and the recipe's trial), best first
   by validation.
2. Start from the best; add the next candidate only if the uniform average of the soup and it
   scores strictly better on validation; repeat down the list.
3. A candidate that cannot be averaged with the soup (another architecture, depth, length or
   score map) is skipped, with the reason.

Validation picks the ingredients, so the soup's gain is judged on the held-out splits only: its
Pearson against the best single trial's on the same pairs, with a paired bootstrap interval
(``tuning.control.paired_gap``). A soup of one is the winner itself.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import DatasetDict

from tuning.control import paired_gap
from tuning.metrics import MODES, compute_all
from tuning.model import STSModel, predict
from tuning.store import Soup, TestScore, read_params
from tuning.trial_config import TrialSettings
from tuning.winners import load_checkpoint, test_splits

# What must be equal for two checkpoints to be averaged: the same network, read the same way.
SAME = ("name_or_path", "architecture", "num_hidden_layers", "max_length")


@dataclass
class Cooked:
    """A soup with its model (to export) and its scores of validation and the held-out splits."""

    record: Soup
    model: STSModel
    tokenizer: object
    predictions: dict[str, np.ndarray]


def label(score: TestScore) -> str:
    return f"{score.stage}/{score.trial_id}"


def average(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform average of state dicts with the same keys and shapes (integer buffers, e.g.
    position ids, are taken from the first)."""
    out = {}
    for key, first in states[0].items():
        if torch.is_floating_point(first):
            out[key] = torch.stack([s[key].float() for s in states]).mean(dim=0).to(first.dtype)
        else:
            out[key] = first.clone()
    return out


def mismatch(a: STSModel, b: STSModel, sa: TrialSettings, sb: TrialSettings) -> str | None:
    """Why ``b`` cannot be averaged into ``a``, or None."""
    for name in SAME:
        if getattr(sa.model, name) != getattr(sb.model, name):
            return f"another {name} ({getattr(sb.model, name)} vs {getattr(sa.model, name)})"
    if a.head != b.head:
        return f"another head ({b.head} vs {a.head})"
    if not (
        torch.allclose(a.target_scale, b.target_scale) and torch.allclose(a.target_shift, b.target_shift)
    ):
        return "another map from raw output to 0-5 (a fitted line)"
    sa_state, sb_state = a.state_dict(), b.state_dict()
    if sa_state.keys() != sb_state.keys() or any(sa_state[k].shape != sb_state[k].shape for k in sa_state):
        return "other weight shapes"
    return None


def cook(
    candidates: Sequence[TestScore],
    splits: DatasetDict,
    metric: str,
    predictions: Mapping[tuple[str, str], Mapping[str, np.ndarray]],
    seed: int = 0,
) -> Cooked | None:
    """The greedy soup of ``candidates`` (scored checkpoints with their ``predictions`` of
    validation and the held-out splits); None without any candidate.

    Args:
        candidates: in any order; they are tried best first by the validation ``metric`` their
            trials reported (the search's ranking: the first is the winner).
        splits: validation and the held-out splits, with their labels.
        metric: the search's validation metric (its direction from ``tuning.metrics.MODES``).
        predictions: (stage, trial id) -> split -> that checkpoint's scores (``validation``
            included: the winner's sets the bar each mixture must beat).
        seed: the bootstrap's seed.
    """
    sign = 1.0 if MODES[metric] == "max" else -1.0
    ordered = sorted(
        (c for c in candidates if metric in c.validation and c.checkpoint),
        key=lambda c: -sign * c.validation[metric],
    )
    if not ordered:
        return None
    best = ordered[0]
    labels = np.asarray(splits["validation"]["label"])
    base_model, tokenizer = load_checkpoint(best.checkpoint or "")
    base_settings = TrialSettings.from_dict(best_config(best))
    pairs = list(zip(splits["validation"]["sentence1"], splits["validation"]["sentence2"]))
    max_length = base_settings.model.max_length
    states = [base_model.state_dict()]
    # The bar is the best checkpoint scored as every mixture is (``predict`` after the search),
    # not the value its trial reported while training (which may have run in bf16 autocast).
    kept = predictions[(best.stage, best.trial_id)]["validation"]
    value = compute_all(kept, labels)[metric]
    record = Soup(ingredients=[label(best)], validation={metric: value}, metric=metric)
    model = base_model
    for cand in ordered[1:]:
        other = STSModel.from_checkpoint(cand.checkpoint or "")
        why = mismatch(base_model, other, base_settings, TrialSettings.from_dict(best_config(cand)))
        if why:
            record.skipped[label(cand)] = why
            continue
        trial_states = [*states, other.state_dict()]
        mixed = copy.deepcopy(base_model)
        mixed.load_state_dict(average(trial_states))
        scores = predict(mixed, tokenizer, pairs, max_length)
        scored = compute_all(scores, labels)[metric]
        record.tried[label(cand)] = scored
        if sign * scored > sign * value:
            states, value, model, kept = trial_states, scored, mixed, scores
            record.ingredients.append(label(cand))
    record.validation = {metric: value}
    if len(record.ingredients) == 1:
        return Cooked(record, base_model, tokenizer, dict(predictions[(best.stage, best.trial_id)]))
    out = {"validation": kept}
    record.validation = compute_all(kept, labels)
    winner = predictions[(best.stage, best.trial_id)]
    for name in test_splits(splits):
        split = splits[name]
        out[name] = predict(model, tokenizer, list(zip(split["sentence1"], split["sentence2"])), max_length)
        record.test[name] = compute_all(out[name], split["label"])
        record.versus_best[name] = paired_gap(np.asarray(split["label"]), out[name], winner[name], seed)
    return Cooked(record, model, tokenizer, out)


def best_config(score: TestScore) -> dict[str, Any]:
    """The trial config (``params.json``) beside a scored checkpoint."""
    return read_params(Path(score.checkpoint or ".").parent)
