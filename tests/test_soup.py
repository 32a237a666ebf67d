"""The greedy soup: real tiny checkpoints trained from one initialisation, averaged only where
validation improves, exported as an ordinary model folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from reports import render
from tests.test_control import noisy
from tests.test_reports import TRIALS, experiment_record
from tuning import store
from tuning.control import control
from tuning.model import STSModel, predict
from tuning.settings import ExperimentConfig, ModelConfig, TrainingConfig
from tuning.soup import average, cook
from tuning.store import Control, Gap, Soup, TestScore
from tuning.trial import run_training
from tuning.trial_config import TrialSettings, trial_config
from tuning.winners import export_best, load_checkpoint
from tuning.winners import test_splits as held_out_splits

RATES = {"a": 3e-3, "b": 1e-3, "c": 5e-3}


def train(root: Path, trial_id: str, splits, learning_rate: float, max_length: int = 64) -> TestScore:
    """One tiny trial, as a search leaves it: ``params.json`` and its last checkpoint."""
    exp = ExperimentConfig(
        model=ModelConfig(name_or_path="builtin:tiny", max_length=max_length),
        training=TrainingConfig(num_epochs=2, batch_size=16, learning_rate=learning_rate, logging_steps=1),
    )
    config = trial_config(exp)
    config["tensorboard_dir"] = None
    folder = root / f"optuna_{trial_id}"
    folder.mkdir()
    store.write_json(folder / store.PARAMS_FILE, config)
    last: dict = {}

    def report(metrics: dict, checkpoint: str | None) -> None:
        last.update(metrics)
        if checkpoint:
            shutil.rmtree(folder / "checkpoint_000000", ignore_errors=True)
            shutil.copytree(checkpoint, folder / "checkpoint_000000")

    run_training(TrialSettings.from_dict(config), splits, str(root / f"scratch_{trial_id}"), report)
    return TestScore(
        trial_id=trial_id,
        stage="optuna",
        params={"learning_rate": learning_rate},
        validation={k: last[k] for k in ("pearson", "f1", "spearman", "mse")},
        checkpoint=str(folder / "checkpoint_000000"),
        test={},
    )


def scores_of(score: TestScore, splits) -> dict[str, np.ndarray]:
    model, tokenizer = load_checkpoint(score.checkpoint or "")
    out = {}
    for name in ("validation", *held_out_splits(splits)):
        pairs = list(zip(splits[name]["sentence1"], splits[name]["sentence2"]))
        out[name] = predict(model, tokenizer, pairs, 64)
    return out


@pytest.fixture(scope="module")
def trials(small_splits, tmp_path_factory):
    root = tmp_path_factory.mktemp("soup")
    scored = [train(root, tid, small_splits, lr) for tid, lr in RATES.items()]
    predictions = {(s.stage, s.trial_id): scores_of(s, small_splits) for s in scored}
    return root, scored, predictions


def test_each_ingredient_is_kept_only_if_validation_improves(trials, small_splits) -> None:
    root, scored, predictions = trials
    cooked = cook(scored, small_splits, "pearson", predictions)
    assert cooked is not None
    record = cooked.record
    by_validation = sorted(scored, key=lambda s: -s.validation["pearson"])
    assert record.ingredients[0] == f"optuna/{by_validation[0].trial_id}"
    assert list(record.tried) == [f"optuna/{s.trial_id}" for s in by_validation[1:]]
    value = by_validation[0].validation["pearson"]
    for name, tried in record.tried.items():  # greedy: kept exactly when it beat the soup so far
        assert (name in record.ingredients) == (tried > value)
        value = max(value, tried)
    assert record.validation["pearson"] == pytest.approx(value, abs=1e-6)
    if len(record.ingredients) > 1:  # the soup's weights are the mean of its ingredients'
        states = [load_checkpoint(str(root / f"optuna_{n.split('/')[1]}" / "checkpoint_000000"))[0].state_dict()
                  for n in record.ingredients]  # fmt: skip
        key = next(k for k, v in states[0].items() if torch.is_floating_point(v) and v.dim() == 2)
        expected = torch.stack([s[key] for s in states]).mean(dim=0)
        assert torch.allclose(cooked.model.state_dict()[key], expected, atol=1e-6)
        assert set(record.versus_best) == set(held_out_splits(small_splits))
        for split, gap in record.versus_best.items():
            assert gap.low <= gap.gap <= gap.high and gap.pairs == len(small_splits[split])
    else:
        assert not record.versus_best and not record.test


def test_an_identical_checkpoint_ties_and_is_left_out(trials, small_splits) -> None:
    """Averaging a checkpoint with itself changes nothing: no strict gain, not an ingredient."""
    _, scored, predictions = trials
    best = max(scored, key=lambda s: s.validation["pearson"])
    twin = best.model_copy(update={"trial_id": "twin"})
    predictions = {**predictions, ("optuna", "twin"): predictions[("optuna", best.trial_id)]}
    cooked = cook([best, twin], small_splits, "pearson", predictions)
    assert cooked is not None
    assert cooked.record.ingredients == [f"optuna/{best.trial_id}"]
    assert cooked.record.tried["optuna/twin"] == pytest.approx(best.validation["pearson"], abs=1e-6)


def test_a_checkpoint_of_another_shape_is_skipped_with_the_reason(trials, small_splits, tmp_path) -> None:
    _, scored, predictions = trials
    other = train(tmp_path, "long", small_splits, 3e-3, max_length=96)
    predictions = {**predictions, ("optuna", "long"): predictions[(scored[0].stage, scored[0].trial_id)]}
    # Even when it looks best on validation, it is tried only against a soup it can join.
    other = other.model_copy(update={"validation": {**other.validation, "pearson": 0.0}})
    cooked = cook([scored[0], other], small_splits, "pearson", predictions)
    assert cooked is not None
    assert cooked.record.skipped == {"optuna/long": "another max_length (96 vs 64)"}


def test_average_keeps_integer_buffers_and_means_the_rest() -> None:
    a = {"w": torch.tensor([1.0, 3.0]), "ids": torch.tensor([0, 1])}
    b = {"w": torch.tensor([3.0, 5.0]), "ids": torch.tensor([0, 1])}
    out = average([a, b])
    assert out["w"].tolist() == [2.0, 4.0] and out["ids"].tolist() == [0, 1]


def test_an_exported_soup_is_an_ordinary_model_folder(trials, small_splits, tmp_path) -> None:
    """A soup of two exported: the folder loads and scores as the averaged model does, best.json
    names its ingredients and the model card says what the weights are."""
    _, scored, _ = trials
    first, second = scored[:2]
    model, tokenizer = load_checkpoint(first.checkpoint or "")
    model.load_state_dict(
        average([load_checkpoint(s.checkpoint or "")[0].state_dict() for s in (first, second)])
    )
    record = Soup(metric="pearson", ingredients=["optuna/a", "optuna/b"], validation={"pearson": 0.5})
    out = export_best(first, tmp_path, (model, record))
    best = store.read_best(out)
    assert best is not None and best.soup == ["optuna/a", "optuna/b"] and best.validation == {"pearson": 0.5}
    loaded = STSModel.from_pretrained(out)
    pairs = list(zip(small_splits["validation"]["sentence1"], small_splits["validation"]["sentence2"]))
    assert np.allclose(predict(loaded, tokenizer, pairs, 64), predict(model, tokenizer, pairs, 64), atol=1e-4)
    card = (out / store.MODEL_CARD_FILE).read_text(encoding="utf-8")
    assert "These weights are a greedy soup" in card and "`optuna/b`" in card


# --- what the report says ----------------------------------------------------------------------


def gap(low: float, high: float) -> Gap:
    return Gap(model=0.83, other=0.82, gap=(low + high) / 2, low=low, high=high, pairs=1379)


def soup_report(soup: Soup, control_: Control | None = None) -> str:
    record = experiment_record(TRIALS)
    record.meta.soup, record.meta.control = soup, control_
    return render(record)


def test_the_report_says_what_was_exported_and_its_held_out_gain() -> None:
    text = soup_report(
        Soup(
            metric="pearson",
            ingredients=["optuna/aaaa", "optuna/cccc"],
            tried={"optuna/bbbb": 0.801, "optuna/cccc": 0.812},
            validation={"pearson": 0.812},
            versus_best={"test": gap(0.001, 0.009), "klue_dev": gap(-0.006, 0.004)},
        ),
        Control(
            winner="optuna/aaaa",
            recipe="optuna/dddd",
            resamples=2000,
            exported="greedy soup of optuna/aaaa, optuna/cccc",
            held_out={"test": gap(0.002, 0.014)},
        ),
    )
    line = next(x for x in text.splitlines() if x.startswith("- Exported model: a greedy soup"))
    assert "`optuna/aaaa`, `optuna/cccc`" in line and "validation pearson 0.812" in line
    assert "`optuna/bbbb` left out (pearson 0.801); `optuna/cccc` kept (pearson 0.812)" in line
    assert "test 0.83 vs 0.82 (+0.0050, 95% CI +0.0010 to +0.0090): **better**" in line
    assert "klue_dev 0.83 vs 0.82 (-0.0010, 95% CI -0.0060 to +0.0040): **tied (within noise)**" in line
    assert "- The exported greedy soup of optuna/aaaa, optuna/cccc vs the recipe (`optuna/dddd`" in text


def test_a_soup_of_one_says_the_winner_was_exported_and_why() -> None:
    text = soup_report(
        Soup(
            metric="pearson",
            ingredients=["optuna/aaaa"],
            tried={"optuna/bbbb": 0.79},
            validation={"pearson": 0.8},
        )
    )
    line = next(x for x in text.splitlines() if x.startswith("- Exported model:"))
    assert "`optuna/aaaa`'s checkpoint" in line and "`optuna/bbbb` left out (pearson 0.79)" in line


def test_control_compares_the_exported_soup_with_the_recipe() -> None:
    labels = np.linspace(0, 5, 400)
    splits = {"validation": labels, "test": labels[::-1].copy()}
    predictions = {
        ("optuna", "aaaa"): {"validation": noisy(labels, 0.8, 1), "test": noisy(splits["test"], 1.6, 2)},
        ("optuna", "cccc"): {"validation": noisy(labels, 0.8, 3), "test": noisy(splits["test"], 1.6, 4)},
    }
    scores = [
        TestScore(trial_id="aaaa", stage="optuna", params={}, validation={}, test={}),
        TestScore(trial_id="cccc", stage="optuna", params={}, validation={}, test={}, role="recipe"),
    ]
    soup_scores = {"test": noisy(splits["test"], 0.4, 5)}
    out = control(
        experiment_record(TRIALS),
        scores,
        predictions,
        splits,
        ("optuna", "cccc"),
        exported=("soup", soup_scores),
    )
    assert out is not None and out.exported == "soup" and out.winner == "optuna/aaaa"
    assert out.held_out["test"].verdict == "better"  # the soup's scores, not the winner's (a tie)
    plain = control(experiment_record(TRIALS), scores, predictions, splits, ("optuna", "cccc"))
    assert plain is not None and plain.held_out["test"].verdict == "tied"
