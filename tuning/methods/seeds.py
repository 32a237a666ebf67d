"""The ``seeds`` method: repeat configurations over several training seeds and show the spread.

The original project picked "the best seed", which is tuning on noise; this re-runs a config
(the file's fixed one, or the top ``search.top_k`` of a finished experiment given by
``--from``) over ``search.seeds`` seeds so the report can show mean ± std.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuning.config import ConfigError, ExperimentConfig
from tuning.methods._stage import fixed_config, run_stage, trial_data


def seed_values(exp: ExperimentConfig) -> list[int]:
    """The training seeds every repeated configuration runs with."""
    return [exp.training.seed + i for i in range(exp.search.seeds)]


def candidates(exp: ExperimentConfig) -> list[tuple[str, dict[str, Any]]]:
    """(label, full trial config) of each configuration to repeat."""
    if not exp.search.from_experiment:
        return [("the file's configuration", fixed_config(exp))]
    from reports import rank, read_experiment, to_rows
    from tuning.metrics import MODES

    source = read_experiment(exp.search.from_experiment)
    metric, mode = exp.search.metric, MODES[exp.search.metric]
    by_id = {(t.stage, t.trial_id): t for t in source.trials}
    ranked = [r for r in rank(to_rows(source.trials, metric, mode), metric, mode) if r.metrics]
    if not ranked:
        raise ConfigError(f"{exp.search.from_experiment} has no trial with a {metric} result to repeat.")
    out = []
    for row in ranked[: exp.search.top_k]:
        trial = by_id[(row.stage, row.trial_id)]
        config = json.loads(Path(trial.path, "params.json").read_text(encoding="utf-8"))
        out.append((f"{exp.search.from_experiment}: {row.stage}/{row.trial_id}", config))
    return out


def repeat_over_seeds(
    exp: ExperimentConfig, splits: Any, config: dict[str, Any], stage: str, extra: dict[str, Any]
) -> Path:
    """One stage: ``config`` trained to the end once per seed."""
    own = fixed_config(exp)
    base = {**config, **{k: own[k] for k in ("cpus_per_trial", "gpus_per_trial", "tensorboard_dir")}}
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
