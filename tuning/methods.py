"""Tuning methods: each a function of the experiment that runs one or more Ray Tune stages.

Every stage is one Ray Tune experiment under ``<storage>/<name>/<stage>/``; what a method
learns is written to storage (``stage.json``), never handed on in memory, so a report, a later
stage or a resumed run reads the same files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ray.tune import Callback

from reports.records import STAGE_FILE, TRIALS_FILE
from tuning.config import ExperimentConfig
from tuning.metrics import MODES
from tuning.spaces import grid_size, has_grid, to_tune


def fixed_config(exp: ExperimentConfig) -> dict[str, Any]:
    """The flat trial config every trial starts from (see ``TrialSettings.from_dict``)."""
    return {
        "data": asdict(exp.data),
        "model": asdict(exp.model),
        **asdict(exp.training),
        "cpus_per_trial": exp.search.cpus_per_trial,
        "tensorboard_dir": str(Path(exp.experiment_dir, "tensorboard").resolve()),
    }


def _searcher(exp: ExperimentConfig, param_space: dict[str, Any]) -> Any:
    """Optuna's TPE or random sampler, seeded; ``None`` for grids (Tune enumerates them)."""
    if has_grid(param_space):
        return None
    import optuna
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=exp.search.seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=exp.search.seed),
    }
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = OptunaSearch(sampler=samplers[exp.search.searcher]())
    if exp.search.max_concurrent_trials:
        return ConcurrencyLimiter(searcher, max_concurrent=exp.search.max_concurrent_trials)
    return searcher


class TrialLog(Callback):
    """Prints one line per trial epoch and end, and records how each trial ended in storage.

    Ray's own tables print every trial's full config; this prints the searched values. The
    record, ``<stage>/trials.json``, is what tells a report "stopped early by the scheduler"
    from "interrupted" and counts retries after failures.
    """

    def __init__(self, stage_dir: Path, searched: list[str], num_epochs: int) -> None:
        self.path = stage_dir / TRIALS_FILE
        self.stage, self.searched, self.num_epochs = stage_dir.name, searched, num_epochs
        self.ended: dict[str, dict[str, Any]] = (
            json.loads(self.path.read_text()) if self.path.is_file() else {}
        )

    def _say(self, text: str) -> None:
        print(f"[{self.stage}] {text}", flush=True)

    def _record(self, trial: Any, **fields: Any) -> None:
        entry = self.ended.setdefault(trial.trial_id, {"retries": 0})
        entry.update(fields)
        write_json(self.path, self.ended)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        metrics = " ".join(f"{m} {result[m]:.4f}" for m in ("pearson", "f1") if m in result)
        params = ", ".join(f"{k}={_short(trial.config.get(k))}" for k in self.searched)
        self._say(f"{trial.trial_id} epoch {result.get('epoch')}/{self.num_epochs}: {metrics} ({params})")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epochs = (trial.last_result or {}).get("epoch", 0)
        self._record(trial, status="completed", epochs=epochs)
        how = "finished" if epochs >= self.num_epochs else f"stopped early by the scheduler after {epochs}"
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        self._say(f"{trial.trial_id} {how}/{self.num_epochs} epochs ({done}/{len(trials)} trials ended)")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        entry = self.ended.get(trial.trial_id, {"retries": 0})
        self._record(trial, retries=entry["retries"] + 1)
        self._say(f"{trial.trial_id} failed and is retried from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial, status="error", epochs=(trial.last_result or {}).get("epoch", 0))
        self._say(f"{trial.trial_id} failed; see {trial.path}/error.txt")


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _scheduler(exp: ExperimentConfig, num_epochs: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if exp.search.scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=num_epochs,
        grace_period=min(exp.search.grace_period, num_epochs),
        reduction_factor=exp.search.reduction_factor,
    )


def run_stage(
    exp: ExperimentConfig,
    stage: str,
    space: dict[str, Any],
    data: Any,
    base: dict[str, Any] | None = None,
    num_samples: int | None = None,
) -> Path:
    """Run one Ray Tune experiment and record it in ``<stage>/stage.json``.

    Args:
        exp: the experiment (search settings, storage).
        stage: the stage's folder name.
        space: hyperparameter -> fixed value or domain spec (``tuning.spaces``).
        data: the loaded splits, put once into Ray's object store for every trial.
        base: the fixed trial config; defaults to :func:`fixed_config`.
        num_samples: trials to sample (grids: repeats); defaults to ``search.num_samples``.

    Returns:
        The stage's folder in storage.
    """
    from ray import tune

    from tuning.trial import train_trial

    where = f"{exp.source_file or 'space'}: {stage}: "
    param_space = {**(base or fixed_config(exp)), **to_tune(space, where)}
    num_epochs = (
        int(param_space["num_epochs"])
        if not isinstance(param_space["num_epochs"], dict)
        else max(param_space["num_epochs"].get("grid_search", [exp.training.num_epochs]))
    )
    metric, mode = exp.search.metric, MODES[exp.search.metric]
    samples = num_samples or (1 if has_grid(param_space) else exp.search.num_samples)
    stage_dir = Path(exp.experiment_dir, stage).resolve()
    record = {
        "stage": stage,
        "searched": sorted(k for k in space if isinstance(space[k], dict)),
        "space": space,
        "metric": metric,
        "mode": mode,
        "num_epochs": num_epochs,
        "planned_trials": samples * grid_size(param_space),
        "searcher": "grid" if has_grid(param_space) else exp.search.searcher,
        "scheduler": exp.search.scheduler,
        "status": "running",
    }
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_json(stage_dir / STAGE_FILE, record)

    resources = {"cpu": exp.search.cpus_per_trial, "gpu": exp.search.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(train_trial, data=data), resources)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            search_alg=_searcher(exp, param_space),
            scheduler=_scheduler(exp, num_epochs),
            num_samples=samples,
            max_concurrent_trials=exp.search.max_concurrent_trials,
            trial_name_creator=lambda trial: f"{stage}_{trial.trial_id}",
            trial_dirname_creator=lambda trial: f"{stage}_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=stage,
            storage_path=str(stage_dir.parent),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=metric, checkpoint_score_order=mode
            ),
            failure_config=tune.FailureConfig(max_failures=exp.search.max_failures),
            callbacks=[TrialLog(stage_dir, record["searched"], num_epochs)],
            verbose=0,
        ),
    )
    results = tuner.fit()
    # Tune returns normally when interrupted (Ctrl-C) after saving its state.
    ended = results.num_terminated + results.num_errors
    record["status"] = "done" if ended == len(results) else "interrupted"
    write_json(stage_dir / STAGE_FILE, record)
    return stage_dir


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (a crash mid-write never leaves half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def trial_data(splits: Any) -> Any:
    """Only what trials need (train, validation) travels to them."""
    from datasets import DatasetDict

    return DatasetDict({k: splits[k] for k in ("train", "validation")})


def optuna_method(exp: ExperimentConfig, splits: Any) -> list[Path]:
    """Optuna TPE (or random) sampling with ASHA early stopping, one stage."""
    if not exp.space:
        raise ValueError(f"the optuna method needs a `space:` to search in {exp.source_file}.")
    return [run_stage(exp, "optuna", exp.space, trial_data(splits))]


METHODS: dict[str, Callable[[ExperimentConfig, Any], list[Path]]] = {
    "optuna": optuna_method,
}


def get_method(name: str) -> Callable[[ExperimentConfig, Any], list[Path]]:
    """The method called ``name``; unknown names fail with the list of known ones."""
    if name not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}. Got: {name!r}.")
    return METHODS[name]
