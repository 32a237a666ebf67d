"""The ``seeds`` method: repeat configurations over several training seeds and show the spread.

The original project picked "the best seed", which is tuning on noise; this re-runs a config
(the file's fixed one, or the top ``search.top_k`` of a finished experiment given by
``--from``) over ``search.seeds`` seeds so the report can show mean ± std.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuning.methods._stage import run_stage, trial_data
from tuning.settings import ConfigError, ExperimentConfig
from tuning.trial_config import normalize, trial_config


def seed_values(exp: ExperimentConfig) -> list[int]:
    """The training seeds every repeated configuration runs with."""
    return [exp.training.seed + i for i in range(exp.search.seeds)]


def candidates(exp: ExperimentConfig) -> list[tuple[str, dict[str, Any]]]:
    """(label, full trial config) of each configuration to repeat."""
    if not exp.search.from_experiment:
        return [("the file's configuration", trial_config(exp))]
    from tuning.ranking import best_trials
    from tuning.store import read_experiment

    source = read_experiment(exp.search.from_experiment)
    metric = exp.search.metric
    best = best_trials(source, metric, exp.search.top_k)
    if not best:
        raise ConfigError(f"{exp.search.from_experiment} has no trial with a {metric} result to repeat.")
    return [(f"{exp.search.from_experiment}: {t.stage}/{t.trial_id}", t.config()) for t in best]


def repeat_over_seeds(
    exp: ExperimentConfig, splits: Any, config: dict[str, Any], stage: str, extra: dict[str, Any]
) -> Path:
    """One stage: ``config`` trained to the end once per seed."""
    own = trial_config(exp)  # this run's resources and TensorBoard folder, the repeated settings
    base = {**normalize(config), **{k: own[k] for k in ("resources", "tensorboard_dir")}}
    space = {"seed": {"type": "grid", "values": seed_values(exp)}}
    return run_stage(
        exp,
        stage,
        space,
        trial_data(splits),
        base=base,
        num_samples=1,
        scheduler="fifo",
        extra={"role": "seeds", **extra},
    )


def seeds_method(exp: ExperimentConfig, splits: Any, prefix: str = "") -> list[Path]:
    """Each candidate configuration over ``search.seeds`` seeds, one stage per candidate."""
    return [
        repeat_over_seeds(exp, splits, config, f"{prefix}seeds-{i}", {"repeats": label})
        for i, (label, config) in enumerate(candidates(exp), start=1)
    ]
