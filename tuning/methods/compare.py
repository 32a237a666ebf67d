"""The ``compare`` method: baseline, A, B, Optuna and PBT head to head under one name.

Each method runs with the budget its own file (``<method>.yaml`` beside the compare file) gives,
its stages prefixed with the method's name; then each method's winner is re-run over
``search.seeds`` seeds (stage ``seeds-<method>``) and scored on the test split(s) by the runner.
``compare.json`` records which stages belong to which method and each method's winner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reports.records import COMPARE_FILE
from tuning.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    load_experiment,
    make_smoke,
    validate,
)
from tuning.methods._stage import read_stage, write_json
from tuning.methods.seeds import repeat_over_seeds

NOT_COMPARABLE = ("compare", "seeds")


def method_experiment(exp: ExperimentConfig, method: str) -> ExperimentConfig:
    """The sub-experiment of one compared method: its file, the same flags, the same folder."""
    sub = load_experiment(Path(exp.source_file or ".").parent / f"{method}.yaml")
    sub.method = method
    apply_overrides(sub, exp.overrides)
    if exp.smoke_test:
        make_smoke(sub)
    sub.name, sub.storage = exp.name, exp.storage
    validate(sub)
    return sub


def compare_method(exp: ExperimentConfig, splits: Any, prefix: str = "") -> list[Path]:
    """Run every method of ``exp.methods``, then each one's winner over seeds."""
    from tuning.methods import METHODS

    bad = [m for m in exp.methods if m not in METHODS or m in NOT_COMPARABLE]
    if not exp.methods or bad:
        comparable = sorted(set(METHODS) - set(NOT_COMPARABLE))
        raise ConfigError(
            f"compare needs `methods:` from {comparable} in {exp.source_file}; got {exp.methods!r}."
        )
    subs = {m: method_experiment(exp, m) for m in exp.methods}  # every file checked before anything runs
    summary: dict[str, Any] = {"methods": []}
    done: list[Path] = []
    for method, sub in subs.items():
        print(f"[compare] method {method}", flush=True)
        stages = METHODS[method](sub, splits, prefix=f"{prefix}{method}-")
        done += stages
        winners = [read_stage(sub, d.name).get("winner") for d in stages]
        winners = [w for w in winners if w]
        sign = -1 if sub.search.metric == "mse" else 1
        winner = max(winners, key=lambda w: sign * w["value"]) if winners else None
        entry = {"method": method, "stages": [d.name for d in stages], "winner": winner, "seeds_stage": None}
        if winner:
            config = json.loads(Path(winner["config_file"]).read_text(encoding="utf-8"))
            seeds_stage = f"{prefix}seeds-{method}"
            done.append(
                repeat_over_seeds(
                    exp, splits, config, seeds_stage, {"repeats": f"{method} winner", "method": method}
                )
            )
            entry["seeds_stage"] = seeds_stage
        summary["methods"].append(entry)
        write_json(Path(exp.experiment_dir, COMPARE_FILE), summary)
    return done
