"""The exported ``best_model``: a sentence-transformers model (bi) or CrossEncoder (cross) that
gives the report's test scores, still served by this project, with a model card."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from datasets import DatasetDict
from sentence_transformers import CrossEncoder, SentenceTransformer
from transformers import AutoTokenizer

from tuning.metrics import compute_all
from tuning.model import TINY, STSModel, predict
from tuning.model_card import base_license, model_card
from tuning.serving.scorer import ServedModel
from tuning.settings import DataConfig, ModelConfig, TrainingConfig, shared_dir
from tuning.store import (
    Best,
    ExperimentMeta,
    ExperimentRecord,
    MachinePlan,
    TestScore,
    TrialRecord,
    read_experiment,
)
from tuning.trial import TrialSettings, run_training
from tuning.winners import export_best, load_checkpoint, score_trial

E5 = str(shared_dir() / "models" / "e5-small-ko")
MAX_LENGTH = 16
"""Short enough that most test inputs are cut: a loader that ignored it would score differently."""

CASES = {  # model, head, learning rate, loss
    "tiny-bi": (ModelConfig(TINY, "bi", max_length=MAX_LENGTH), "regression", 1e-3, "mse"),
    "tiny-cross-multitask": (ModelConfig(TINY, "cross", max_length=MAX_LENGTH), "multitask", 1e-3, "mse"),
    "e5-bi": (ModelConfig(E5, "bi", num_hidden_layers=2, max_length=MAX_LENGTH), "regression", 5e-5, "mse"),
    "e5-bi-cosent": (
        ModelConfig(E5, "bi", num_hidden_layers=2, max_length=MAX_LENGTH),
        "regression",
        5e-5,
        "cosent",
    ),
    "e5-cross": (
        ModelConfig(E5, "cross", num_hidden_layers=2, max_length=MAX_LENGTH),
        "regression",
        5e-5,
        "mse",
    ),
}


@pytest.fixture(scope="module")
def splits(small_splits) -> DatasetDict:
    """64 train, 32 validation pairs; the first 256 KorSTS test and 128 KLUE-STS dev pairs."""
    return DatasetDict(
        train=small_splits["train"],
        validation=small_splits["validation"],
        test=small_splits["test"].select(range(256)),
        klue_dev=small_splits["klue_dev"].select(range(128)),
    )


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, splits, tmp_path_factory) -> tuple[TestScore, Path]:
    """A one-trial experiment trained for real (one epoch), scored and exported: (winner, folder)."""
    model, head, learning_rate, loss = CASES[request.param]
    exp = tmp_path_factory.mktemp(request.param) / "exp"
    trial_dir = exp / "optuna" / "optuna_a1"
    trial_dir.mkdir(parents=True)
    training = TrainingConfig(num_epochs=1, batch_size=16, learning_rate=learning_rate, head=head, loss=loss)
    config = {
        "data": asdict(DataConfig(train_size=64, validation_size=32)),
        "model": asdict(model),
        "training": asdict(training),
    }
    (trial_dir / "params.json").write_text(json.dumps(config))
    rows = []

    def report(metrics: dict, checkpoint: str | None) -> None:
        rows.append({**metrics, "trial_id": "a1", "checkpoint_dir_name": Path(checkpoint).name})

    run_training(TrialSettings.from_dict(config), splits, str(trial_dir), report)
    (trial_dir / "result.json").write_text("".join(json.dumps(r, default=float) + "\n" for r in rows))
    stage = {"stage": "optuna", "searched": ["learning_rate"], "searcher": "optuna-tpe", "scheduler": "asha"}
    (exp / "optuna" / "stage.json").write_text(json.dumps({**stage, "num_epochs": 1, "status": "done"}))
    meta = {
        "config": {"name": "exp", "method": "optuna", "storage": "runs", "search": {"metric": "pearson"}},
        "data_sizes": {name: len(split) for name, split in splits.items()},
    }
    (exp / "experiment.json").write_text(json.dumps(meta))
    winner = score_trial(read_experiment(exp).trials[0], splits, "pearson")
    assert winner is not None, "the trial kept no checkpoint"
    return winner, export_best(winner, exp)


def pairs_and_labels(splits: DatasetDict, name: str) -> tuple[list[tuple[str, str]], list[float]]:
    split = splits[name]
    return list(zip(split["sentence1"], split["sentence2"])), list(split["label"])


def library_scores(folder: Path, architecture: str, pairs: list[tuple[str, str]]) -> np.ndarray:
    """0-5 scores as a sentence-transformers user gets them, from the folder alone: for ``bi`` the
    model card's own line of code (5 x cosine, or the line fitted for a scale-free loss)."""
    if architecture == "bi":
        card = (folder / "README.md").read_text(encoding="utf-8")
        usage = re.search(
            r"scores = ([\d.e+-]+) \* model\.similarity_pairwise\(a, b\)(?: ([+-]) ([\d.e+-]+))?", card
        )
        assert usage, "the card shows no scoring line"
        scale = float(usage[1])
        shift = float(usage[3]) * (-1 if usage[2] == "-" else 1) if usage[2] else 0.0
        model = SentenceTransformer(str(folder), device="cpu")
        a = model.encode([p[0] for p in pairs], convert_to_tensor=True)
        b = model.encode([p[1] for p in pairs], convert_to_tensor=True)
        return (scale * model.similarity_pairwise(a, b) + shift).numpy()
    scores = CrossEncoder(str(folder), device="cpu").predict(pairs)
    return scores[:, 0] if scores.ndim == 2 else scores  # multitask: [score, binary logit]


def test_sentence_transformers_reproduce_the_reported_test_scores(exported, splits):
    winner, folder = exported
    architecture = json.loads((folder / "sts_model.json").read_text())["architecture"]
    own, tokenizer = STSModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    trial, trial_tokenizer = load_checkpoint(winner.checkpoint)  # what the report scored
    for name in ("test", "klue_dev"):
        pairs, labels = pairs_and_labels(splits, name)
        scores = library_scores(folder, architecture, pairs)
        pearson = compute_all(scores, labels)["pearson"]
        assert pearson == pytest.approx(
            compute_all(predict(own, tokenizer, pairs, MAX_LENGTH), labels)["pearson"], abs=1e-6
        )
        np.testing.assert_allclose(scores, predict(trial, trial_tokenizer, pairs, MAX_LENGTH), atol=1e-5)
        # cross export folds the target scale into the classifier, moving each score by float
        # rounding (~2e-7); next to the scores' tiny spread here (std ~1e-4 after a few steps)
        # that shows in Pearson, so for cross the scores themselves are compared (above).
        if architecture == "bi":
            assert pearson == pytest.approx(winner.test[name]["pearson"], abs=1e-6)


def test_the_folder_holds_its_own_sentence_transformers_configuration(exported):
    _, folder = exported
    architecture = json.loads((folder / "sts_model.json").read_text())["architecture"]
    modules = json.loads((folder / "modules.json").read_text())
    st_config = json.loads((folder / "config_sentence_transformers.json").read_text())
    if architecture == "bi":
        assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling"]
        assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode"] == "mean"
        assert st_config["similarity_fn_name"] == "cosine"
        model = SentenceTransformer(str(folder), device="cpu")
        assert model.max_seq_length == MAX_LENGTH
    else:
        assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer"]
        assert st_config["activation_fn"] == "torch.nn.modules.linear.Identity"
        model = CrossEncoder(str(folder), device="cpu")
        assert isinstance(model.activation_fn, torch.nn.Identity)
        assert model.tokenizer.model_max_length == MAX_LENGTH


def test_the_exported_folder_is_still_served(exported, splits):
    _, folder = exported
    pairs, _ = pairs_and_labels(splits, "test")
    served = ServedModel.load(folder)
    own = STSModel.from_pretrained(folder)
    assert served.max_length == MAX_LENGTH
    np.testing.assert_allclose(
        served.score(pairs[:32]),
        predict(own, AutoTokenizer.from_pretrained(folder), pairs[:32], MAX_LENGTH),
        atol=1e-5,
    )


def test_the_model_card_describes_the_winner(exported):
    winner, folder = exported
    text = (folder / "README.md").read_text(encoding="utf-8")
    _, front, body = text.split("---\n", 2)
    card = yaml.safe_load(front)
    architecture = json.loads((folder / "sts_model.json").read_text())["architecture"]
    assert card["library_name"] == "sentence-transformers"
    assert card["language"] == ["ko"]
    assert card["pipeline_tag"] == ("sentence-similarity" if architecture == "bi" else "text-classification")
    assert card["datasets"] == ["klue/klue", "kor_nlu"]
    assert "base_model" not in card  # a local folder or builtin:tiny is no Hub id
    results = {r["dataset"]["name"]: r for r in card["model-index"][0]["results"]}
    assert set(results) == {"KorSTS test", "KLUE-STS dev"}
    pearson = next(m for m in results["KorSTS test"]["metrics"] if m["type"] == "pearsonr")
    assert pearson["value"] == round(winner.test["test"]["pearson"], 4)
    assert "| optuna | optuna-tpe | asha | 1 | learning_rate |" in body
    assert "trial `optuna/a1`" in body
    assert f"| learning_rate (searched) | {winner.params['learning_rate']:.4g} |" in body
    assert f"| test | {winner.test['test']['pearson']:.4f} |" in body
    assert "| train | KorSTS train | 64 |" in body
    # The folder by its name, never where this machine keeps it.
    assert "python run_search.py serve best_model" in body
    loader = "SentenceTransformer" if architecture == "bi" else "CrossEncoder"
    assert f'model = {loader}("best_model")' in body
    assert str(folder.parent) not in text and str(shared_dir()) not in text
    tiny = winner_config(folder)["model"]["name_or_path"] == TINY
    assert card["license"] == ("unknown" if tiny else "mit")  # e5-small: multilingual-e5-small's MIT
    # builtin:tiny is a test-size model: the card says so before anything else.
    assert body.lstrip().startswith("> **Warning: a test-size model, not for use.**") is tiny
    for heading in ("Intended use and limitations", "Hardware", "Training time", "Framework versions"):
        assert f"\n## {heading}\n" in body
    row = next(
        r
        for r in read_experiment(folder.parent).trials[0].reports
        if r["pearson"] == winner.validation["pearson"]
    )
    assert f"- The winner trained on `{row['device']}`." in body


def winner_config(folder: Path) -> dict:
    return json.loads((folder / "best.json").read_text())["config"]


def test_the_model_card_loads_as_a_hugging_face_card(exported):
    """``huggingface_hub`` reads the card's metadata without errors: licence, language, library,
    base model, and the test scores as eval results (what the Hub's model-index widget shows)."""
    from huggingface_hub import ModelCard

    winner, folder = exported
    card = ModelCard.load(folder / "README.md", ignore_metadata_errors=False)
    data = card.data
    assert data.license in ("mit", "unknown") and data.language == ["ko"]
    assert data.library_name == "sentence-transformers" and data.base_model is None
    assert "korean" in data.tags and data.model_name == "exp-best_model"
    scores = {(r.dataset_name, r.metric_type): r.metric_value for r in data.eval_results}
    assert scores[("KorSTS test", "pearsonr")] == round(winner.test["test"]["pearson"], 4)
    assert scores[("KLUE-STS dev", "f1")] == round(winner.test["klue_dev"]["f1"], 4)
    assert card.text.lstrip().startswith(("> **Warning", "# Korean STS"))


def test_a_hub_model_is_named_as_the_base_model():
    best = Best(
        config={"model": {"name_or_path": "klue/roberta-base", "architecture": "cross"}},
        test={"test": {"pearson": 0.9, "f1": 0.8}},
    )
    card = yaml.safe_load(model_card(best).split("---\n")[1])
    assert card["base_model"] == "klue/roberta-base"
    assert card["license"] == "cc-by-sa-4.0"  # KLUE's models
    assert card["pipeline_tag"] == "text-classification"
    assert card["model-index"][0]["results"][0]["metrics"] == [
        {"type": "pearsonr", "value": 0.9, "name": "Pearson"},
        {"type": "f1", "value": 0.8, "name": "F1"},
    ]


def test_a_fitted_cosine_map_is_what_the_card_tells_users_to_apply():
    """A ranking loss's bi-encoder scores cosine x scale + shift; the card's code must say so."""
    best = Best(config={"model": {"name_or_path": "builtin:tiny", "architecture": "bi"}}, test={})
    assert "5 * model.similarity_pairwise(a, b)  # 0-5" in model_card(best)
    card = model_card(best, None, (3.25, -1.5))
    assert "KLUE-STS's 0-5 scale as 3.25 x the cosine - 1.5 of their" in card
    assert "scores = 3.25 * model.similarity_pairwise(a, b) - 1.5  # 0-5, one per pair" in card


def test_a_scale_free_loss_exports_its_fitted_line(exported):
    """The cosent case's card and sts_model.json carry the fitted map, not 5 x cosine."""
    _, folder = exported
    best = json.loads((folder / "best.json").read_text())
    meta = json.loads((folder / "sts_model.json").read_text())
    card = (folder / "README.md").read_text(encoding="utf-8")
    if best["config"]["training"]["loss"] != "cosent":
        assert "scores = 5 * model" in card or meta["architecture"] == "cross"
        return
    assert meta["target_scale"] != 5.0
    assert f"scores = {meta['target_scale']:.8g} * model.similarity_pairwise(a, b)" in card


@pytest.mark.parametrize(
    ("name_or_path", "licence"),
    [
        ("klue/roberta-large", "cc-by-sa-4.0"),
        ("intfloat/multilingual-e5-small", "mit"),
        ("${SHARED}/models/e5-small-ko", "mit"),  # as best.json names the shared folder
        ("bert-base-uncased", "unknown"),
        ("builtin:tiny", "unknown"),
    ],
)
def test_the_licence_is_the_base_models(name_or_path, licence):
    assert base_license(name_or_path) == licence


def test_a_local_base_model_with_its_own_card_gives_its_licence(tmp_path):
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\nlanguage: ko\n---\n# A model\n")
    assert base_license(str(tmp_path)) == "apache-2.0"
    (tmp_path / "README.md").write_text("# A model without metadata\n")
    assert base_license(str(tmp_path)) == "unknown"


def smoke_record(tmp_path: Path) -> ExperimentRecord:
    """What a smoke test's experiment.json and winner trial hold (hand-written)."""
    meta = ExperimentMeta(
        config={"name": "smoke", "method": "optuna", "storage": str(tmp_path), "smoke_test": True},
        machine="x86_64, 2 CPUs, no GPU",
        hardware=MachinePlan(
            precision="fp32",
            precision_reason="a smoke test trains in fp32",
            resources="half the cores, 1-4 each",
            cpus_per_trial=1.0,
            gpus_per_trial=0.0,
            train_pairs_s=812.4,
        ),
        versions={"python": "3.11.9", "torch": "2.13.0", "ray": "2.60.0"},
        search_wall_time_s=75.2,
        wall_time_s=3725.0,
    )
    rows = [
        {"epoch": 1.0, "pairs": 64, "pearson": 0.31, "elapsed_s": 4.4, "device": "cpu"},
        {"epoch": 2.0, "pairs": 128, "pearson": 0.29, "elapsed_s": 8.0, "device": "cpu"},
    ]
    trial = TrialRecord("a1", "optuna", {"learning_rate": 1e-3}, rows, planned_epochs=2, status="finished")
    return ExperimentRecord(str(tmp_path / "smoke"), meta, [], [trial], [])


def test_a_smoke_test_card_warns_first_and_states_hardware_time_and_versions(tmp_path):
    from huggingface_hub import ModelCard

    best = Best(
        stage="optuna",
        trial_id="a1",
        config={"model": {"name_or_path": "${SHARED}/models/e5-small-ko", "architecture": "bi"}},
        validation={"pearson": 0.31},
        test={"test": {"pearson": 0.2, "f1": 0.4}},
    )
    text = model_card(best, smoke_record(tmp_path))
    card = ModelCard(text, ignore_metadata_errors=False)
    assert card.data.license == "mit" and "smoke-test" in card.data.tags
    assert card.text.lstrip().startswith(
        "> **Warning: a test-size model, not for use.** It comes from a smoke test (`--smoke-test`)"
    )
    assert "Tests of this tool only" in text
    assert "- Machine: x86_64, 2 CPUs, no GPU." in text
    assert "- Precision: fp32 (a smoke test trains in fp32)." in text
    assert "- Each trial: 1 CPU, 0 GPU; chosen: half the cores, 1-4 each." in text
    assert "- Measured speed of one trial: 812 training pairs/s." in text
    # The winner's kept report is its best by Pearson: the first epoch's.
    assert "- The winner: 0m04s of training to its kept epoch (64 training pairs seen)." in text
    assert "- The whole search, 1 trial: 1m15s wall time." in text
    assert "- The whole experiment (search, test scoring, export): 1h02m." in text
    assert "| torch | 2.13.0 |" in text and "| ray | 2.60.0 |" in text
    assert str(tmp_path) not in text


def test_a_card_without_the_experiment_record_still_loads():
    from huggingface_hub import ModelCard

    best = Best(config={"model": {"name_or_path": "klue/roberta-base", "architecture": "bi"}}, test={})
    card = ModelCard(model_card(best), ignore_metadata_errors=False)
    assert (card.data.license, card.data.base_model, card.data.eval_results) == (
        "cc-by-sa-4.0",
        "klue/roberta-base",
        None,
    )
    assert "## Hardware" not in card.text and "## Intended use and limitations" in card.text
    assert not card.text.lstrip().startswith("> **Warning")
