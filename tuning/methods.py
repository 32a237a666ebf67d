"""Tuning methods: each a function of the experiment that runs one or more Ray Tune stages.

Every stage is one Ray Tune experiment under ``<storage>/<name>/<stage>/``; what a method
learns is written to storage (``stage.json``), never handed on in memory, so a report, a later
stage or a resumed run reads the same files.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tuning.config import ExperimentConfig, TrainingConfig, field_names
from tuning.metrics import MODES
from tuning.spaces import grid_size, has_grid, to_tune

STAGE_FILE = "stage.json"


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
            verbose=1,
        ),
    )
    tuner.fit()
    record["status"] = "done"
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


def training_keys() -> list[str]:
    """Training fields (a stage's winner fixes these for later stages)."""
    return field_names(TrainingConfig)


def command_line() -> str:
    """The command that started this process, for the report."""
    return " ".join([Path(sys.executable).name, *sys.argv])
