"""The winners of a search: test-split scores of the top configurations and the exported best model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
from datasets import DatasetDict

from tuning import store
from tuning.cost import COST_MODES
from tuning.metrics import MODES, compute_all
from tuning.model import CHECKPOINT_FIX, STSModel, load_saved_tokenizer, predict
from tuning.ranking import METRIC_COLUMNS, ranked
from tuning.store import (
    BEST_MODEL_DIR,
    EPOCH,
    ExperimentRecord,
    Soup,
    TestScore,
    TrialRecord,
    Untuned,
    epoch_number,
)
from tuning.trial_config import TrialSettings

Role = Literal["top", "seeds", "recipe", "front"]


def test_splits(splits: DatasetDict) -> list[str]:
    """Splits scored only for winners: everything but train and validation."""
    return [name for name in splits if name not in ("train", "validation")]


def load_checkpoint(folder: str) -> tuple[STSModel, Any]:
    """Model and tokenizer from a trial checkpoint folder.

    Raises:
        ModelError: a file of the checkpoint is damaged or missing (named, with the cause and the fix).
    """
    return STSModel.from_checkpoint(folder), load_saved_tokenizer(folder, CHECKPOINT_FIX)


def score_trial(
    trial: TrialRecord,
    splits: DatasetDict,
    metric: str,
    role: Role = "top",
    predictions: dict[tuple[str, str], dict[str, np.ndarray]] | None = None,
) -> TestScore | None:
    """A trial's best checkpoint by ``metric`` scored on every test split; ``None`` if it kept
    no checkpoint. ``predictions``, when given, receives the checkpoint's scores of validation
    and of every test split (for ``tuning.control``'s paired comparisons)."""
    checkpoint = trial.checkpoint(metric)
    best = trial.best(metric)
    if checkpoint is None or best is None:
        return None
    settings = TrialSettings.from_dict(trial.config())
    model, tokenizer = load_checkpoint(checkpoint)
    names = test_splits(splits) + (["validation"] if predictions is not None else [])
    predicted = {}
    for name in names:
        split = splits[name]
        pairs = list(zip(split["sentence1"], split["sentence2"]))
        predicted[name] = predict(model, tokenizer, pairs, settings.model.max_length)
    if predictions is not None:
        predictions[(trial.stage, trial.trial_id)] = predicted
    return TestScore(
        trial_id=trial.trial_id,
        stage=trial.stage,
        params=trial.params,
        best_epoch=epoch_number(best[EPOCH]),
        validation={k: best[k] for k in METRIC_COLUMNS if k in best},
        checkpoint=checkpoint,
        test={name: compute_all(predicted[name], splits[name]["label"]) for name in test_splits(splits)},
        role=role,
        cost={k: float(best[k]) for k in COST_MODES if isinstance(best.get(k), (int, float))},
    )


def score_winners(
    record: ExperimentRecord,
    splits: DatasetDict,
    metric: str,
    k: int,
    recipe: tuple[str, str] | None = None,
    predictions: dict[tuple[str, str], dict[str, np.ndarray]] | None = None,
) -> list[TestScore]:
    """Test scores of the best ``k`` trials by validation ``metric`` (role ``top``), of every
    trial of a seed-repeat stage (role ``seeds``) and of the ``recipe``'s trial (role
    ``recipe``, the search's control), each scored once."""
    by_id = {(t.stage, t.trial_id): t for t in record.trials}
    seeds_stages = {s.stage for s in record.stages if s.role == "seeds"}
    out: list[TestScore] = []
    for row in ranked(record.trials, metric):
        if sum(s.role == "top" for s in out) == k:
            break
        scored = score_trial(by_id[(row.stage, row.trial_id)], splits, metric, predictions=predictions)
        if scored:
            out.append(scored)
    done = {(s.stage, s.trial_id) for s in out}
    for trial in record.trials:
        if trial.stage in seeds_stages and (trial.stage, trial.trial_id) not in done:
            scored = score_trial(trial, splits, metric, role="seeds", predictions=predictions)
            if scored:
                out.append(scored)
    if recipe and recipe in by_id and recipe not in {(s.stage, s.trial_id) for s in out}:
        scored = score_trial(by_id[recipe], splits, metric, role="recipe", predictions=predictions)
        if scored:
            out.append(scored)
    return out


def score_front(
    record: ExperimentRecord,
    splits: DatasetDict,
    metric: str,
    cost: str,
    scored: list[TestScore],
    predictions: dict[tuple[str, str], dict[str, np.ndarray]] | None = None,
) -> list[TestScore]:
    """The trials on the validation front of ``metric`` against ``cost``, and the best trial of
    each cost level (on the front or not: what each depth reached), that ``scored`` lacks,
    scored on the test splits (role ``front``), cheapest first."""
    from tuning.cost import front, trial_cost

    done = {(s.stage, s.trial_id) for s in scored}
    rows = []
    for trial in record.trials:
        best = trial.best(metric)
        value = trial_cost(best, cost) if best else None
        if best is not None and value is not None and trial.checkpoint(metric):
            rows.append((trial, (float(best[metric]), value)))
    picked = set(front([p for _, p in rows], MODES[metric], cost))
    sign = 1.0 if MODES[metric] == "max" else -1.0
    level_best: dict[float, int] = {}  # a level's measured cost identifies it
    for i, (_, (value, level)) in enumerate(rows):
        j = level_best.get(level)
        if j is None or sign * value > sign * rows[j][1][0]:
            level_best[level] = i
    picked |= set(level_best.values())
    out = []
    for i in sorted(picked, key=lambda i: rows[i][1][1]):
        trial = rows[i][0]
        if (trial.stage, trial.trial_id) not in done:
            extra = score_trial(trial, splits, metric, role="front", predictions=predictions)
            if extra:
                out.append(extra)
    return out


def export_best(
    winner: TestScore, experiment_dir: str | Path, soup: tuple[STSModel, Soup] | None = None
) -> Path:
    """Save the winner (or the ``soup`` of it and other checkpoints: the model and its record)
    as ``<experiment>/best_model``: model, tokenizer, ``best.json`` and a model card
    (``README.md``).

    The folder loads with ``STSModel.from_pretrained`` (0-5 scores, what ``serve`` uses), with
    ``SentenceTransformer`` (``bi``: the card gives the cosine's map to 0-5) or ``CrossEncoder``
    (``cross``: 0-5), and, for ``cross``, with ``AutoModelForSequenceClassification.from_pretrained``
    too.
    """
    from transformers.utils import logging as hf_logging

    from tuning.model_card import model_card

    hf_logging.disable_progress_bar()  # sentence-transformers reloads the weights: no bar in the log
    out = Path(experiment_dir, BEST_MODEL_DIR)
    if out.exists():
        shutil.rmtree(out)
    if soup is None:
        model, tokenizer = load_checkpoint(winner.checkpoint)
    else:  # the averaged model; the tokenizer is the winner's (every ingredient shares it)
        model, tokenizer = soup[0], load_saved_tokenizer(winner.checkpoint, CHECKPOINT_FIX)
        winner = winner.model_copy(update={"validation": soup[1].validation, "test": soup[1].test})
    settings = store.read_params(Path(winner.checkpoint).parent)
    model.save_pretrained(out, tokenizer, TrialSettings.from_dict(settings).model.max_length)
    # Paths relative to the experiment folder (or ${SHARED}/...): the folder can move or be shared.
    best = store.Best.of(winner, settings, experiment_dir)
    if soup is not None:
        best.soup = list(soup[1].ingredients)
    store.write_best(out, best)
    has_record = Path(experiment_dir, store.EXPERIMENT_FILE).is_file()
    experiment = store.read_experiment(experiment_dir) if has_record else None
    score_map = (float(model.target_scale), float(model.target_shift))
    (out / store.MODEL_CARD_FILE).write_text(model_card(best, experiment, score_map), encoding="utf-8")
    return out


def prune_checkpoints(record: ExperimentRecord, scored: list[TestScore], metric: str = "pearson") -> int:
    """Delete the checkpoints that can no longer matter once a search has ended.

    A trial the scheduler stopped early that is not a winner loses all of them; a finished trial
    (or one the time budget stopped) keeps only its best epoch's (for ``seeds --from`` and later
    scoring), losing the extra ones a
    stage kept while it ran (PBT). Unfinished and failed trials keep everything: ``--resume``
    continues them from their latest checkpoint. Returns the bytes freed.
    """
    keep = {(s.stage, s.trial_id) for s in scored}
    freed = 0
    for trial in record.trials:
        if trial.status == "stopped" and (trial.stage, trial.trial_id) not in keep:
            kept = None
        elif trial.status in ("finished", "budget") and (best := trial.checkpoint(metric)):
            kept = Path(best)
        else:  # unfinished, failed, a winner stopped early, or no epoch to tell which is best
            continue
        for folder in Path(trial.path).glob(f"{store.CHECKPOINT_PREFIX}*"):
            if folder == kept:
                continue
            freed += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            shutil.rmtree(folder)
    return freed


def untuned_start(settings: TrialSettings, splits: DatasetDict) -> Untuned:
    """Metrics of the pretrained model before any fine-tuning (the search's floor) on the
    validation split and every test split, the same splits the winners are scored on.

    For ``bi`` that is the zero-shot cosine of mean-pooled embeddings; for ``cross`` the new
    head is untrained (random), so its score says only that fine-tuning is needed.
    """
    from tuning.model import build_model, load_tokenizer

    validation = splits["validation"]
    tokenizer = load_tokenizer(
        settings.model, list(splits["train"]["sentence1"]) + list(splits["train"]["sentence2"])
    )
    scale = 5.0 if settings.model.architecture == "bi" else 1.0
    model = build_model(settings.model, tokenizer, "regression", scale, 0.0)

    def score(split: Any) -> dict[str, float]:
        pairs = list(zip(split["sentence1"], split["sentence2"]))
        return compute_all(predict(model, tokenizer, pairs, settings.model.max_length), split["label"])

    what = (
        "zero-shot cosine of the pretrained encoder"
        if settings.model.architecture == "bi"
        else "untrained regression head"
    )
    return Untuned(
        what=f"{what}, {settings.model.num_hidden_layers or 'all'} layers",
        validation=score(validation),
        test={name: score(splits[name]) for name in test_splits(splits)},
    )
