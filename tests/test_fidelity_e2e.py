"""Sub-epoch rungs and the time budget through ``run_search.py``: real Ray Tune, a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from reports import read_experiment
from tests.conftest import run_cli
from tuning.store import AshaBudget

pytestmark = pytest.mark.e2e

TINY = {
    "data": {"source": "korsts", "train_size": 64, "validation_size": 32},
    "model": {"name_or_path": "builtin:tiny", "architecture": "bi", "max_length": 64},
    "training": {"batch_size": 16, "logging_steps": 2},
    "search": {"cpus_per_trial": 1, "top_k": 1, "searcher": "random"},
}


def space_file(tmp_path: Path, name: str, **sections: dict) -> Path:
    raw = {"name": name, **{k: {**TINY.get(k, {}), **sections.get(k, {})} for k in (*TINY, *sections)}}
    raw["space"] = sections.get("space", {"learning_rate": {"type": "loguniform", "low": 1e-5, "high": 3e-2}})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_asha_counts_pairs_and_stops_trials_between_epochs(tmp_path, shared):
    space = space_file(
        tmp_path,
        "rungs",
        training={"num_epochs": 2, "eval_every_pairs": 16},
        search={"num_samples": 8, "scheduler": "asha", "grace_period": 0.25, "reduction_factor": 2},
    )
    proc = run_cli("--space", str(space), "--storage", str(tmp_path / "runs"), "--name", "rungs")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = read_experiment(tmp_path / "runs" / "rungs")
    stage = record.stages[0]
    # Grace 0.25 epoch of 64 pairs, then x2 up to the largest budget of 2 epochs (128 pairs).
    budget = AshaBudget(unit="training pairs", grace_period=16, max_t=128, rungs=[16, 32, 64], min_trials=2)
    assert stage.asha == budget
    for trial in record.trials:
        assert [e["pairs"] for e in trial.reports] == [16 * (i + 1) for i in range(len(trial.reports))]
    stopped = [t for t in record.trials if t.status == "stopped"]
    assert any(not float(t.reports[-1]["epoch"]).is_integer() for t in stopped), [
        (t.trial_id, t.status, t.reports[-1]["epoch"]) for t in record.trials
    ]
    report = (tmp_path / "runs" / "rungs" / "report.md").read_text(encoding="utf-8")
    assert "ASHA counts training pairs seen: grace period 16 pairs, rungs at 16 (0.25 epochs)" in report
    assert "a rung stops no trial before 2 have reached it" in report  # fair rungs (FairASHA)


def test_time_budget_ends_the_search_and_the_report_says_so(tmp_path, shared):
    space = space_file(
        tmp_path,
        "budget",
        training={"num_epochs": 500, "eval_every_pairs": 32},
        search={"num_samples": 4, "scheduler": "fifo", "time_budget": "45s"},
    )
    proc = run_cli("--space", str(space), "--storage", str(tmp_path / "runs"), "--name", "budget")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp_dir = tmp_path / "runs" / "budget"
    record = read_experiment(exp_dir)
    assert record.stages[0].ended_by == "time_budget"
    reported = [t for t in record.trials if t.reports]
    assert reported and all(t.status == "budget" and t.reports[-1]["epoch"] < 500 for t in reported)
    meta = json.loads((exp_dir / "experiment.json").read_text())
    assert meta["finished"] is True
    assert (exp_dir / "best_model").is_dir()
    report = (exp_dir / "report.md").read_text(encoding="utf-8")
    assert "time budget 0.8 min; it ended the search" in report
    assert "stopped by the time budget" in report
    assert "stopped by the time budget after" in proc.stdout
