"""Aggregates over trials: compute spent per stage, seed spread, the method comparison. Pure."""

from __future__ import annotations

import statistics
from typing import Any

from tuning.store import TIME_TOTAL_S, ExperimentRecord, StageRecord, TrialRecord

SCORES = ("pearson", "f1")


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation, n); std is 0 for a single value."""
    if not values:
        return float("nan"), float("nan"), 0
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std, len(values)


def stage_cost(stage: StageRecord, trials: list[TrialRecord]) -> dict[str, float]:
    """Compute a stage spent: trial-epochs, CPU- and GPU-seconds reserved, wall seconds."""
    seconds = [t.reports[-1].get(TIME_TOTAL_S, 0.0) for t in trials if t.reports]
    busy = sum(seconds)
    return {
        "trials": len(trials),
        "trial_epochs": sum(len(t.reports) for t in trials),
        "cpu_s": busy * stage.cpus_per_trial,
        "gpu_s": busy * stage.gpus_per_trial,
        "wall_s": (stage.ended or stage.started) - stage.started,
    }


def seed_spread(stage: str, record: ExperimentRecord) -> dict[str, Any]:
    """Mean, std and n of validation and test Pearson/F1 over the trials of a seed-repeat stage."""
    scored = [s for s in record.test_scores if s.stage == stage]
    out: dict[str, Any] = {"validation": {}, "test": {}}
    for metric in SCORES:
        out["validation"][metric] = mean_std([s.validation[metric] for s in scored if metric in s.validation])
    splits = list(scored[0].test) if scored else []
    for split in splits:
        out["test"][split] = {m: mean_std([s.test[split][m] for s in scored]) for m in SCORES}
    return out


def method_rows(record: ExperimentRecord) -> list[dict[str, Any]]:
    """One row per compared method: the search's cost and winner, and the winner's seed spread."""
    if not record.compare:
        return []
    stages = {s.stage: s for s in record.stages}
    rows = []
    for entry in record.compare.methods:
        cost = {"trials": 0, "trial_epochs": 0, "cpu_s": 0.0, "gpu_s": 0.0, "wall_s": 0.0}
        for name in entry.stages:
            part = stage_cost(stages[name], record.stage_trials(name)) if name in stages else {}
            for key in cost:
                cost[key] += part.get(key, 0)
        seeds = seed_spread(entry.seeds_stage, record) if entry.seeds_stage else None
        rows.append({"method": entry.method, "winner": entry.winner, "cost": cost, "seeds": seeds})
    return rows
