"""The winners of a search: test-split scores of the top configurations and the exported best model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from datasets import DatasetDict
from transformers import AutoTokenizer

from reports.rank import Row
from reports.records import TEST_SCORES_FILE, TrialRecord
from tuning.metrics import compute_all
from tuning.model import STSModel, predict
from tuning.trial import TrialSettings

BEST_MODEL_DIR = "best_model"


def test_splits(splits: DatasetDict) -> list[str]:
    """Splits scored only for winners: everything but train and validation."""
    return [name for name in splits if name not in ("train", "validation")]


def load_checkpoint(folder: str) -> tuple[STSModel, Any]:
    """Model and tokenizer from a trial checkpoint folder."""
    return STSModel.from_checkpoint(folder), AutoTokenizer.from_pretrained(folder)


def score_top(
    ranked: list[Row],
    trials: list[TrialRecord],
    splits: DatasetDict,
    metric: str,
    mode: str,
    k: int,
) -> list[dict[str, Any]]:
    """Score the best ``k`` ranked trials (that kept a checkpoint) on every test split.

    Returns:
        One record per scored trial: id, stage, params, validation metrics, checkpoint, and
        ``test``: split name -> metrics.
    """
    by_id = {(t.stage, t.trial_id): t for t in trials}
    scored = []
    for row in ranked:
        if len(scored) == k:
            break
        trial = by_id[(row.stage, row.trial_id)]
        checkpoint = trial.checkpoint(metric, mode)
        if checkpoint is None:
            continue
        settings = TrialSettings.from_dict(json.loads(Path(trial.path, "params.json").read_text()))
        model, tokenizer = load_checkpoint(checkpoint)
        test = {}
        for name in test_splits(splits):
            split = splits[name]
            pairs = list(zip(split["sentence1"], split["sentence2"]))
            scores = predict(model, tokenizer, pairs, settings.model.max_length)
            test[name] = compute_all(scores, split["label"])
        scored.append(
            {
                "trial_id": row.trial_id,
                "stage": row.stage,
                "params": row.params,
                "best_epoch": row.best_epoch,
                "validation": row.metrics,
                "checkpoint": checkpoint,
                "test": test,
            }
        )
    return scored


def export_best(winner: dict[str, Any], experiment_dir: str | Path) -> Path:
    """Save the winner as ``<experiment>/best_model`` (model + tokenizer + ``best.json``).

    The folder loads with ``STSModel.from_pretrained`` (0-5 scores) and, for ``cross``, with
    ``AutoModelForSequenceClassification.from_pretrained`` too.
    """
    out = Path(experiment_dir, BEST_MODEL_DIR)
    if out.exists():
        shutil.rmtree(out)
    model, tokenizer = load_checkpoint(winner["checkpoint"])
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    settings = json.loads(Path(winner["checkpoint"]).parent.joinpath("params.json").read_text())
    info = {**winner, "config": settings}
    (out / "best.json").write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    return out


def write_scores(scores: list[dict[str, Any]], experiment_dir: str | Path) -> None:
    """Store the winners' test scores for the report."""
    Path(experiment_dir, TEST_SCORES_FILE).write_text(json.dumps(scores, indent=2), encoding="utf-8")
