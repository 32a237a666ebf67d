"""One peer of ``benchmarks.peers``, run in its own process: ``python -m benchmarks._peer_runs SPEC.json``.

``SPEC.json`` holds ``peer`` (a name in :data:`RUNS`), ``experiment`` (the search, as the
sections of a search-space file), ``work`` (the folder the peer may write to) and ``result``
(where this process writes what it measured). Each run does the job as the peer's docs show it,
up to the winner's weights on disk, then scores that folder the same way for every peer
(:func:`score_model`; not timed). Times are seconds since this process started (imports
included), ``curve`` holds ``[elapsed, validation Pearson]`` per evaluation.
"""

from __future__ import annotations

import time

T0 = time.time()  # before the heavy imports: a peer's job starts with its imports

import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks._peer_trainers import (  # noqa: E402
    BI_OBJECTIVE,
    CROSS_OBJECTIVE,
    meter,
    optuna_params,
    ray_space,
    retrain,
    trainer,
    training_args,
)
from tuning.data import load_splits  # noqa: E402
from tuning.metrics import compute_all  # noqa: E402
from tuning.settings import ExperimentConfig, parse_experiment  # noqa: E402

SCORED = {"validation": "validation", "korsts_test": "test", "klue_dev": "klue_dev"}
"""Row name -> split of ``load_splits``: what every winner is scored on."""


def run_ours(exp: ExperimentConfig, raw: dict[str, Any], work: Path, gpu: bool) -> dict[str, Any]:
    """run_search.py --method optuna on the experiment; its best_model is the usable model."""
    from benchmarks import run_search
    from tuning.store import read_experiment

    flags = ("--gpus-per-trial", "0.5") if gpu else ()
    done = run_search(raw, "optuna", work, "search", flags, timeout=24 * 3600)
    record = read_experiment(done.path)
    rows = [row for trial in record.trials for row in trial.reports]
    curve = sorted([float(r["timestamp"]) - T0, float(r["pearson"])] for r in rows if "pearson" in r)
    epochs = sum(max((float(r["epoch"]) for r in t.reports), default=0.0) for t in record.trials)
    return {
        "trials": len(record.trials),
        "trial_epochs": epochs,
        "curve": curve,
        "model_dir": str(done.path / "best_model"),
    }


def run_st_optuna(exp: ExperimentConfig, raw: dict[str, Any], work: Path, gpu: bool) -> dict[str, Any]:
    """SentenceTransformerTrainer.hyperparameter_search(backend="optuna") as sbert.net's HPO page:
    model_init, a loss init, an evaluator, eval/save strategy "no"; then the winner retrained."""
    import optuna

    splits = load_splits(exp.data)
    track = meter(BI_OBJECTIVE, T0)
    hp = trainer(exp, splits, training_args(exp, work / "checkpoints", False), [track], search=True)
    best = hp.hyperparameter_search(
        hp_space=lambda trial: optuna_params(trial, exp.space),
        compute_objective=lambda metrics: metrics[BI_OBJECTIVE],
        n_trials=exp.search.num_samples,
        direction="maximize",
        backend="optuna",
        sampler=optuna.samplers.TPESampler(seed=exp.search.seed),
    )
    model_dir, retrain_s = retrain(exp, splits, best.hyperparameters, work)
    return {"trials": exp.search.num_samples, "trial_epochs": sum(track.epochs), "curve": track.curve,
            "model_dir": str(model_dir), "retrain_s": retrain_s, "retrain_epochs": exp.training.num_epochs}  # fmt: skip


def run_optuna_plain(exp: ExperimentConfig, raw: dict[str, Any], work: Path, gpu: bool) -> dict[str, Any]:
    """A plain Optuna study (TPE, MedianPruner) whose objective trains with a Trainer, reports
    each epoch's validation Pearson and prunes; then the best parameters retrained and saved."""
    import optuna
    from transformers import TrainerCallback

    splits = load_splits(exp.data)
    key = BI_OBJECTIVE if exp.model.architecture == "bi" else CROSS_OBJECTIVE
    track = meter(key, T0)

    class Prune(TrainerCallback):
        def __init__(self, trial: optuna.Trial) -> None:
            self.trial = trial

        def on_evaluate(
            self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any
        ) -> None:
            self.trial.report(metrics[key], step=round(state.epoch))
            if self.trial.should_prune():
                raise optuna.TrialPruned()

    def objective(trial: optuna.Trial) -> float:
        args = training_args(exp, work / f"trial-{trial.number}", True, **optuna_params(trial, exp.space))
        trainer(exp, splits, args, [track, Prune(trial)]).train()
        return track.curve[-1][1]

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=exp.search.seed),
        pruner=optuna.pruners.MedianPruner(),
    )
    study.optimize(objective, n_trials=exp.search.num_samples)
    model_dir, retrain_s = retrain(exp, splits, study.best_params, work)
    return {"trials": len(study.trials), "trial_epochs": sum(track.epochs), "curve": track.curve,
            "model_dir": str(model_dir), "retrain_s": retrain_s, "retrain_epochs": exp.training.num_epochs}  # fmt: skip


def run_hf_ray(exp: ExperimentConfig, raw: dict[str, Any], work: Path, gpu: bool) -> dict[str, Any]:
    """Trainer.hyperparameter_search(backend="ray") with an ASHAScheduler, as the transformers docs
    show it; Ray keeps a checkpoint per evaluation, so the best one is the usable model."""
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    splits = load_splits(exp.data)
    hp = trainer(exp, splits, training_args(exp, work / "trainer", True, save=True), [], search=True)
    best = hp.hyperparameter_search(
        hp_space=lambda trial: ray_space(exp.space),
        compute_objective=lambda metrics: metrics[CROSS_OBJECTIVE],
        n_trials=exp.search.num_samples,
        direction="maximize",
        backend="ray",
        scheduler=ASHAScheduler(metric="objective", mode="max"),
        search_alg=BasicVariantGenerator(random_state=exp.search.seed),
        storage_path=str(work / "ray_results"),
    )
    analysis = best.run_summary
    trial = analysis.get_best_trial(metric="objective", mode="max", scope="all")
    checkpoint = analysis.get_best_checkpoint(trial, metric="objective", mode="max")
    model_dir = next(Path(checkpoint.path).glob("checkpoint-*"))
    frames = analysis.trial_dataframes.values()
    curve = sorted([float(t) - T0, float(v)] for f in frames for t, v in zip(f["timestamp"], f["objective"]))
    epochs = sum(float(f["training_iteration"].max()) for f in frames)  # one evaluation per epoch
    return {
        "trials": len(analysis.trials),
        "trial_epochs": epochs,
        "curve": curve,
        "model_dir": str(model_dir),
    }


RUNS: dict[str, Callable[[ExperimentConfig, dict[str, Any], Path, bool], dict[str, Any]]] = {
    "ours": run_ours,
    "st-optuna": run_st_optuna,
    "optuna-plain": run_optuna_plain,
    "ours-cross": run_ours,
    "hf-ray": run_hf_ray,
}
"""Peer name -> its run; each returns trials, trial_epochs, curve and model_dir (and any retraining)."""


def score_model(folder: str, exp: ExperimentConfig, splits: Any) -> dict[str, dict[str, float]]:
    """The winner's metrics on every :data:`SCORED` split: bi = the cosine of SentenceTransformer
    embeddings on 0-5 (5 x cosine, or the line in ``sts_model.json`` that this tool fits for a
    scale-free loss), cross = the sequence classifier's output (0-5)."""
    import torch

    if exp.model.architecture == "bi":
        from sentence_transformers import SentenceTransformer

        from tuning.model import META_FILE

        model = SentenceTransformer(folder, device="cpu")
        model.max_seq_length = exp.model.max_length
        meta = Path(folder, META_FILE)
        fitted = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
        scale, shift = fitted.get("target_scale", 5.0), fitted.get("target_shift", 0.0)

        def predict(split: Any) -> np.ndarray:
            a = model.encode(list(split["sentence1"]), convert_to_tensor=True)
            b = model.encode(list(split["sentence2"]), convert_to_tensor=True)
            return (scale * model.similarity_pairwise(a, b) + shift).float().cpu().numpy()
    else:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        classifier = AutoModelForSequenceClassification.from_pretrained(folder).eval()

        @torch.no_grad()
        def predict(split: Any) -> np.ndarray:
            chunks = []
            for i in range(0, len(split), 64):
                part = split[i : i + 64]
                enc = tokenizer(part["sentence1"], part["sentence2"], truncation=True,
                                max_length=exp.model.max_length, padding=True, return_tensors="pt")  # fmt: skip
                chunks.append(classifier(**enc).logits[:, 0].float().numpy())
            return np.concatenate(chunks)

    return {
        row: compute_all(predict(splits[name]), list(splits[name]["label"]))
        for row, name in SCORED.items()
        if name in splits
    }


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    raw, work = spec["experiment"], Path(spec["work"])
    work.mkdir(parents=True, exist_ok=True)
    exp = parse_experiment(raw, argv[0])
    measured = RUNS[spec["peer"]](exp, raw, work, spec.get("gpu", False))
    measured["job_s"] = time.time() - T0  # the winner's weights are on disk now
    measured["scores"] = score_model(measured["model_dir"], exp, load_splits(exp.data))
    Path(spec["result"]).write_text(json.dumps(measured, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
