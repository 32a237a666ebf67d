"""The ``compare`` method: baseline, A, B, Optuna and PBT head to head under one name.

Each method runs with the budget its own file (``<method>.yaml`` beside the compare file) gives,
its stages prefixed with the method's name; then each method's winner is re-run over
``search.seeds`` seeds (stage ``seeds-<method>``) and scored on the test split(s) by the runner.
``compare.json`` records which stages belong to which method and each method's winner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuning import store
from tuning.methods._stage import read_stage
from tuning.methods.seeds import repeat_over_seeds
from tuning.metrics import MODES
from tuning.settings import ConfigError, ExperimentConfig
from tuning.store import CompareEntry, CompareRecord

NOT_COMPARABLE = ("compare", "seeds")


def method_experiment(exp: ExperimentConfig, method: str) -> ExperimentConfig:
    """The sub-experiment of one compared method: its file, the same flags, the same folder;
    checked as the command line checks the experiment it builds (``tuning.experiment.resolve``)."""
    from tuning.experiment import resolve
    from tuning.methods import resolve_auto

    sub = resolve(
        Path(exp.source_file or ".").parent / f"{method}.yaml", method, exp.overrides, exp.smoke_test
    )
    sub.name, sub.storage = exp.name, exp.storage
    resolve_auto(sub, like=exp)  # the machine's resources and precision, as the driver resolved them
    return sub


def compare_method(exp: ExperimentConfig, splits: Any, prefix: str = "") -> list[Path]:
    """The file's ``methods`` (e.g. baseline, A, B, Optuna, PBT) head to head, then each one's winner over seeds."""
    from tuning.methods import METHODS

    bad = [m for m in exp.methods if m not in METHODS or m in NOT_COMPARABLE]
    if not exp.methods or bad:
        comparable = sorted(set(METHODS) - set(NOT_COMPARABLE))
        raise ConfigError(
            f"compare needs `methods:` from {comparable} in {exp.source_file}; got {exp.methods!r}."
        )
    subs = {m: method_experiment(exp, m) for m in exp.methods}  # every file checked before anything runs
    summary = CompareRecord()
    done: list[Path] = []
    for method, sub in subs.items():
        print(f"[compare] method {method}", flush=True)
        stages = METHODS[method](sub, splits, prefix=f"{prefix}{method}-")
        done += stages
        # The best stage winner, ties broken as tuning.ranking.rank breaks them (stage, trial id).
        winners = [(d.name, w) for d in stages if (w := read_stage(sub, d.name).winner)]
        sign = 1 if MODES[sub.search.metric] == "min" else -1
        ordered = sorted(winners, key=lambda sw: (sign * sw[1].value, sw[0], sw[1].trial_id))
        winner = ordered[0][1] if ordered else None
        entry = CompareEntry(method=method, stages=[d.name for d in stages], winner=winner)
        if winner:
            config = store.read_params(Path(winner.config_file).parent)
            entry.seeds_stage = f"{prefix}seeds-{method}"
            done.append(
                repeat_over_seeds(
                    exp, splits, config, entry.seeds_stage, {"repeats": f"{method} winner", "method": method}
                )
            )
        summary.methods.append(entry)
        store.write_compare(Path(exp.experiment_dir), summary)
    return done
