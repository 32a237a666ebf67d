"""The same search in each peer library's terms: its space, models, TrainingArguments, data, a
Trainer, and a callback that records every evaluation (for ``benchmarks._peer_runs``).

Importable (not ``__main__``), so Ray pickles these functions by reference into its workers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from tuning.metrics import compute_all
from tuning.settings import ExperimentConfig

BI_OBJECTIVE = "eval_sts-dev_pearson_cosine"  # EmbeddingSimilarityEvaluator(name="sts-dev")
CROSS_OBJECTIVE = "eval_pearson"  # compute_metrics below
ARGUMENT_NAMES = {
    "learning_rate": "learning_rate",
    "batch_size": "per_device_train_batch_size",
    "weight_decay": "weight_decay",
    "warmup_ratio": "warmup_steps",  # transformers 5: a float < 1 is a ratio of all steps
}
"""This project's searched keys -> the TrainingArguments field each peer searches instead."""


def optuna_params(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """``space`` (this project's YAML domains) as Optuna suggestions, named as TrainingArguments."""
    out = {}
    for key, spec in space.items():
        name = ARGUMENT_NAMES.get(key)
        kind = spec.get("type") if isinstance(spec, dict) else None
        if name is None or kind not in ("loguniform", "uniform", "choice"):
            raise ValueError(
                f"peers search {sorted(ARGUMENT_NAMES)} as loguniform/uniform/choice; got {key}: {spec}"
            )
        if kind == "choice":
            out[name] = trial.suggest_categorical(name, list(spec["values"]))
        else:
            out[name] = trial.suggest_float(name, spec["low"], spec["high"], log=kind == "loguniform")
    return out


def ray_space(space: dict[str, Any]) -> dict[str, Any]:
    """``space`` as Ray Tune domains, named as TrainingArguments."""
    from ray import tune

    make = {
        "loguniform": lambda s: tune.loguniform(s["low"], s["high"]),
        "uniform": lambda s: tune.uniform(s["low"], s["high"]),
        "choice": lambda s: tune.choice(list(s["values"])),
    }
    return {ARGUMENT_NAMES[k]: make[s["type"]](s) for k, s in space.items()}


def bi_model(exp: ExperimentConfig) -> Any:
    """A SentenceTransformer on the encoder: mean pooling (its default for a plain HF folder)."""
    from sentence_transformers import SentenceTransformer

    layers = exp.model.num_hidden_layers
    model = SentenceTransformer(
        exp.model.name_or_path, config_kwargs={"num_hidden_layers": layers} if layers else None
    )
    model.max_seq_length = exp.model.max_length
    return model


def cross_model(exp: ExperimentConfig) -> Any:
    from transformers import AutoModelForSequenceClassification

    layers = exp.model.num_hidden_layers
    extra = {"num_hidden_layers": layers} if layers else {}
    return AutoModelForSequenceClassification.from_pretrained(exp.model.name_or_path, num_labels=1, **extra)


def training_args(exp: ExperimentConfig, out: Path, evaluate: bool, save: bool = False, **params: Any) -> Any:
    """The peers' TrainingArguments: their defaults plus what every peer shares (epochs, seed).

    Args:
        evaluate: evaluate once per epoch (else not during training).
        save: checkpoint at every evaluation (Ray keeps them; else none).
        params: searched values, as TrainingArguments fields.

    ``warmup_steps=0.0``: the default ``0`` is an int, and hyperparameter_search casts searched
    values to the default's type (a warm-up ratio of 0.13 would become 0).
    """
    from sentence_transformers import SentenceTransformerTrainingArguments
    from transformers import TrainingArguments

    cls = SentenceTransformerTrainingArguments if exp.model.architecture == "bi" else TrainingArguments
    fields = {
        "output_dir": str(out),
        "num_train_epochs": exp.training.num_epochs,
        "seed": exp.training.seed,
        "eval_strategy": "epoch" if evaluate else "no",
        "do_eval": evaluate,
        "save_strategy": "epoch" if save else "no",
        "warmup_steps": 0.0,
        "disable_tqdm": True,  # progress bars would fill the log; nothing else changes
    }
    return cls(**(fields | params))


def st_pairs(split: Any) -> tuple[Any, Any]:
    """Pairs as sentence-transformers trains and evaluates CosineSimilarityLoss: score = label / 5."""
    from datasets import Dataset
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    a, b = list(split["sentence1"]), list(split["sentence2"])
    scores = [label / 5 for label in split["label"]]
    dataset = Dataset.from_dict({"sentence1": a, "sentence2": b, "score": scores})
    return dataset, EmbeddingSimilarityEvaluator(a, b, scores, name="sts-dev")


def cross_data(split: Any, tokenizer: Any, max_length: int) -> Any:
    def tokenize(batch: dict[str, list]) -> Any:
        return tokenizer(batch["sentence1"], batch["sentence2"], truncation=True, max_length=max_length)

    return split.map(tokenize, batched=True, remove_columns=["sentence1", "sentence2", "binary_label"])


def cross_metrics(prediction: Any) -> dict[str, float]:
    return compute_all(np.asarray(prediction.predictions).reshape(-1), np.asarray(prediction.label_ids))


def meter(key: str, started: float) -> Any:
    """A TrainerCallback recording (seconds since ``started``, ``key``) at every evaluation, and
    the epochs each training run reached."""
    from transformers import TrainerCallback

    class Meter(TrainerCallback):
        def __init__(self) -> None:
            self.curve: list[list[float]] = []
            self.epochs: list[float] = []  # one entry per training run, epochs it reached

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.epochs.append(0.0)

        def _seen(self, state: Any) -> None:
            if self.epochs:
                self.epochs[-1] = max(self.epochs[-1], float(state.epoch or 0))

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._seen(state)

        def on_evaluate(
            self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any
        ) -> None:
            self._seen(state)
            if metrics and key in metrics:
                self.curve.append([time.time() - started, float(metrics[key])])

    return Meter()


def trainer(exp: ExperimentConfig, splits: Any, args: Any, callbacks: list, search: bool = False) -> Any:
    """A Trainer of the experiment's architecture: SentenceTransformerTrainer (bi) or Trainer (cross).

    ``search``: with a ``model_init``, as ``hyperparameter_search`` needs (the Trainer seeds before
    each model); else with a model built here after seeding, as a plain script passes one.
    """
    from transformers import set_seed

    init = bi_model if exp.model.architecture == "bi" else cross_model

    def model_init(trial: Any = None) -> Any:
        return init(exp)

    if search:
        given = {"model_init": model_init}
    else:
        set_seed(args.seed)
        given = {"model": init(exp)}
    if exp.model.architecture == "bi":
        from sentence_transformers import SentenceTransformerTrainer
        from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

        return SentenceTransformerTrainer(
            args=args,
            train_dataset=st_pairs(splits["train"])[0],
            evaluator=st_pairs(splits["validation"])[1],
            loss=CosineSimilarityLoss,  # a loss "init" of the model, as the HPO docs pass it
            callbacks=callbacks,
            **given,
        )
    from transformers import AutoTokenizer, Trainer

    tokenizer = AutoTokenizer.from_pretrained(exp.model.name_or_path)
    return Trainer(
        args=args,
        train_dataset=cross_data(splits["train"], tokenizer, exp.model.max_length),
        eval_dataset=cross_data(splits["validation"], tokenizer, exp.model.max_length),
        processing_class=tokenizer,
        compute_metrics=cross_metrics,
        callbacks=callbacks,
        **given,
    )


def retrain(exp: ExperimentConfig, splits: Any, params: dict[str, Any], work: Path) -> tuple[Path, float]:
    """Train the winner's hyperparameters once more and save it (the peer kept no model)."""
    started = time.time()
    final = trainer(exp, splits, training_args(exp, work / "final-run", False, **params), [])
    final.train()
    final.save_model(str(work / "final"))
    return work / "final", time.time() - started
