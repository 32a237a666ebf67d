"""The ``optuna`` method: Optuna TPE (or random) sampling with ASHA early stopping, one stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuning.methods._stage import run_stage, trial_data
from tuning.settings import ConfigError, ExperimentConfig


def optuna_method(exp: ExperimentConfig, splits: Any, prefix: str = "") -> list[Path]:
    """Sample ``search.num_samples`` configurations from ``space`` with Optuna, stopped by ASHA."""
    if not exp.space:
        raise ConfigError(f"the optuna method needs a `space:` to search in {exp.source_file}.")
    return [run_stage(exp, prefix + "optuna", exp.space, trial_data(splits))]
