"""Tuning methods: the registry of name -> function(experiment, splits, prefix) -> stage folders.

Every method is a sequence of Ray Tune stages (``_stage.run_stage``) whose results, winners
and provenance are written to storage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuning.methods._progress import quiet_ray
from tuning.methods._stage import (
    STOP_REQUESTED,
    StageInterrupted,
    default_startup_trials,
    run_stage,
    rung_cutoff,
    trial_data,
)
from tuning.methods.baseline import baseline_method
from tuning.methods.compare import compare_method
from tuning.methods.optuna import optuna_method
from tuning.methods.pbt import pbt_method
from tuning.methods.seeds import seeds_method
from tuning.methods.staged import ablation_method, grid_method
from tuning.settings import ConfigError, ExperimentConfig

Method = Callable[..., list[Path]]

METHODS: dict[str, Method] = {
    "optuna": optuna_method,
    "ablation": ablation_method,
    "grid": grid_method,
    "baseline": baseline_method,
    "seeds": seeds_method,
    "pbt": pbt_method,
    "compare": compare_method,
}

__all__ = [
    "METHODS",
    "StageInterrupted",
    "default_startup_trials",
    "get_method",
    "quiet_ray",
    "request_stop",
    "run_stage",
    "rung_cutoff",
    "stop_requested",
    "trial_data",
]


def request_stop() -> None:
    """Ask the running search to stop: the stage that runs saves its state and ends (as Tune
    does on Ctrl-C) and no later stage starts; the experiment stays resumable. Safe to call
    from a signal handler or another thread."""
    STOP_REQUESTED.set()


def stop_requested() -> bool:
    """Whether :func:`request_stop` was called in this process."""
    return STOP_REQUESTED.is_set()


def get_method(name: str) -> Method:
    """The method called ``name``; unknown names fail with the list of known ones."""
    if name not in METHODS:
        raise ConfigError(f"method must be one of {sorted(METHODS)}. Got: {name!r}.")
    return METHODS[name]


def run_method(exp: ExperimentConfig, splits: Any) -> list[Path]:
    """Run the experiment's method; returns the stage folders it wrote.

    Machine-dependent settings still ``auto`` (an experiment built without ``run_search.py``'s
    driver, e.g. by a benchmark) are resolved from this machine first.
    """
    resolve_auto(exp)
    return get_method(exp.method)(exp, splits)


def resolve_auto(exp: ExperimentConfig, like: ExperimentConfig | None = None) -> None:
    """Replace ``auto`` resources (and precision) of ``exp`` by ``like``'s resolved values where
    given (a ``compare`` method's sub-experiment takes its parent's), else resources from this
    machine."""
    from tuning import hardware

    if like is not None:
        for section, name in (
            ("search", "cpus_per_trial"),
            ("search", "gpus_per_trial"),
            ("training", "precision"),
        ):
            if getattr(getattr(exp, section), name) == hardware.AUTO:
                setattr(getattr(exp, section), name, getattr(getattr(like, section), name))
    hardware.apply_resources(exp.search)  # what is still `auto`, from this machine
    # A precision left `auto` is resolved by each trial on the machine it trains on.
