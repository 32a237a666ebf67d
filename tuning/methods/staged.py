"""Staged methods: method A (``ablation``) and method B (``grid``).

A staged method searches one group of hyperparameters per stage and fixes each stage's winner
for the stages after it — the original project's manual procedure, run in parallel on Ray Tune:

- A: LR schedule (linear / step / cosine / constant with warm-up), then batch size with the
  best schedule, then weight decay with the winners so far.
- B: a learning-rate grid, then batch size, then weight decay; ``--full-grid`` runs the
  Cartesian product of every stage's values as one stage instead.

The winner a stage carries forward is read from the finished stage's ``stage.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuning.methods._stage import require_done, run_stage, trial_data
from tuning.settings import ConfigError, ExperimentConfig


def _need_stages(exp: ExperimentConfig) -> None:
    if not exp.stages:
        raise ConfigError(
            f"the {exp.method} method needs `stages:` (a list of {{name, space}}) in {exp.source_file}; "
            "see search_spaces/ablation.yaml."
        )


def run_stages(exp: ExperimentConfig, splits: Any, prefix: str = "") -> list[Path]:
    """Run ``exp.stages`` in order, each with the earlier stages' winners fixed.

    Args:
        exp: the experiment; its ``stages`` give each stage's name, space and optional
            ``scheduler``/``num_samples``.
        splits: the loaded data.
        prefix: put before every stage name (``compare`` runs several methods in one folder).
    """
    _need_stages(exp)
    data = trial_data(splits)
    carried: dict[str, dict[str, Any]] = {}
    done = []
    for stage in exp.stages:
        name = prefix + stage["name"]
        fixed = {k: v["value"] for k, v in carried.items() if k not in stage["space"]}
        done.append(
            run_stage(
                exp,
                name,
                {**fixed, **stage["space"]},
                data,
                num_samples=stage.get("num_samples"),
                scheduler=stage.get("scheduler"),
                extra={"carried": dict(carried)},
            )
        )
        winner = require_done(exp, name).winner
        assert winner is not None  # require_done refuses a stage without one
        for key, value in winner.params.items():
            carried[key] = {"value": value, "from_stage": name, "trial_id": winner.trial_id}
        shown = ", ".join(f"{k}={v}" for k, v in winner.params.items())
        print(
            f"[{name}] winner {winner.trial_id} ({winner.metric} {winner.value:.4f}): {shown}",
            flush=True,
        )
    return done


def full_grid(exp: ExperimentConfig, splits: Any, prefix: str = "") -> list[Path]:
    """Every stage's values at once: one stage over the Cartesian product."""
    _need_stages(exp)
    space: dict[str, Any] = {}
    for stage in exp.stages:
        space.update(stage["space"])
    scheduler = exp.stages[0].get("scheduler")
    return [run_stage(exp, prefix + "full_grid", space, trial_data(splits), scheduler=scheduler)]


def ablation_method(exp: ExperimentConfig, splits: Any, prefix: str = "") -> list[Path]:
    """Method A: the staged LR-schedule / batch-size / weight-decay ablation."""
    return run_stages(exp, splits, prefix)


def grid_method(exp: ExperimentConfig, splits: Any, prefix: str = "") -> list[Path]:
    """Method B: staged grids (or one full grid with ``search.full_grid``)."""
    if exp.search.full_grid:
        return full_grid(exp, splits, prefix)
    return run_stages(exp, splits, prefix)
