"""Every method through ``run_search.py --smoke-test``: real Ray Tune stages, real reports.

What every method must do is written once and parametrized over the method registry, on one
smoke run per method that the whole module shares. Staged methods must also show each stage and
the winner it carried forward; seed repeats their spread; ``compare`` one table and one chart
over the methods it ran.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from reports import read_experiment
from tests.conftest import run_cli, run_main
from tests.method_runs import MethodRuns
from tuning.methods import METHODS
from tuning.metrics import METRICS
from tuning.serving import ServedModel
from tuning.store import Carried

pytestmark = pytest.mark.e2e
ENDED = ("finished", "stopped")
"""How a trial of a search that ran to its end may have ended: trained every epoch, or stopped
early by the scheduler (never failed, cut off, or out of time budget)."""


def smoke(tmp_path: Path, name: str, *args: str) -> Path:
    proc = run_cli(*args, "--smoke-test", "--storage", str(tmp_path), "--name", name)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp_path / name


@pytest.fixture(scope="module")
def method_run(method_runs: MethodRuns) -> MethodRuns:
    """One smoke search per method, shared with the other modules that read one (tests/method_runs.py)."""
    return method_runs


def section(report: str, heading: str) -> str:
    """The text of a report's ``## heading`` section, up to the next ``## `` heading."""
    start = report.index(f"## {heading}\n")
    end = report.find("\n## ", start + 1)
    return report[start : end if end != -1 else None]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_ranks_every_trial_in_its_report(method_run, method):
    exp = method_run(method)
    trials = read_experiment(exp).trials
    assert trials
    assert {t.status for t in trials} <= set(ENDED), [(t.trial_id, t.status, t.error) for t in trials]
    ranking = section((exp / "report.md").read_text(encoding="utf-8"), "Ranking by validation Pearson")
    rows = [line for line in ranking.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == len(trials)
    for trial in trials:
        assert f" {trial.stage}/{trial.trial_id} |" in ranking


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_scores_its_winner_on_every_test_split(method_run, method):
    exp = method_run(method)
    sizes = json.loads((exp / "experiment.json").read_text())["data_sizes"]
    best = json.loads((exp / "best_model" / "best.json").read_text())
    scores = json.loads((exp / "test_scores.json").read_text())
    (winner,) = [s for s in scores if (s["stage"], s["trial_id"]) == (best["stage"], best["trial_id"])]
    assert winner["role"] == "top"
    assert (
        set(winner["test"])
        == set(sizes) - {"train", "validation"}
        == {"test", "korsts_dev_heldout", "klue_dev"}
    )
    for metrics in winner["test"].values():
        assert set(metrics) == set(METRICS) and all(math.isfinite(v) for v in metrics.values())
    # Every method says how its winner compares with the recipe, or why it cannot.
    control = json.loads((exp / "experiment.json").read_text())["control"]
    assert control["winner"] == f"{best['stage']}/{best['trial_id']}"
    assert control["recipe"] or control["note"], control
    for gap in control["held_out"].values():
        assert gap["low"] <= gap["high"] and gap["pairs"] > 0


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_exports_a_best_model_that_loads_and_scores(method_run, method):
    model = ServedModel.load(method_run(method) / "best_model")
    scores = model.score([("한 남자가 춤을 추고 있다.", "남자가 춤을 춘다.")])
    assert scores.shape == (1,) and math.isfinite(float(scores[0]))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_report_is_rebuilt_identically_from_storage(method_run, method):
    report = method_run(method) / "report.md"
    before = report.read_text(encoding="utf-8")
    report.unlink()
    proc = run_main("report", str(report.parent))
    assert proc.returncode == 0, proc.stderr
    assert report.read_text(encoding="utf-8") == before


def test_grid_runs_stage_by_stage_carrying_each_winner_forward(method_run):
    exp = method_run("grid")
    record = read_experiment(exp)
    assert [s.stage for s in record.stages] == ["learning_rate", "batch_size", "weight_decay"]
    lr, batch, decay = record.stages
    assert lr.winner and batch.winner
    assert batch.carried["learning_rate"] == Carried(
        value=lr.winner.params["learning_rate"], from_stage="learning_rate", trial_id=lr.winner.trial_id
    )
    assert set(decay.carried) == {"learning_rate", "batch_size"}
    # Every trial of a later stage ran with the carried values.
    for trial in (t for t in record.trials if t.stage == "weight_decay"):
        params = json.loads((Path(trial.path) / "params.json").read_text())
        assert params["training"]["batch_size"] == batch.winner.params["batch_size"]
    report = (exp / "report.md").read_text()
    assert "### batch_size" in report
    assert "Carried forward: learning_rate = " in report


def test_full_grid_is_one_stage_over_the_product(tmp_path):
    exp = smoke(tmp_path, "full", "--method", "grid", "--profile", "cpu", "--full-grid")
    record = read_experiment(exp)
    assert [s.stage for s in record.stages] == ["full_grid"]
    combos = {
        (t.params["learning_rate"], t.params["batch_size"], t.params["weight_decay"]) for t in record.trials
    }
    assert len(combos) == len(record.trials) == 2 * 2 * 2


def test_seeds_repeat_the_top_configurations_of_a_finished_search(tmp_path, method_run):
    source = method_run("optuna")
    exp = smoke(tmp_path, "rep", "--method", "seeds", "--profile", "cpu", "--from", str(source))
    record = read_experiment(exp)
    assert [s.stage for s in record.stages] == ["seeds-1", "seeds-2"]
    assert all(s.role == "seeds" and str(source) in (s.repeats or "") for s in record.stages)
    for stage in record.stages:
        seeds = sorted(t.params["seed"] for t in record.stage_trials(stage.stage))
        assert seeds == [42, 43]
    scored = [s for s in record.test_scores if s.stage == "seeds-1"]
    assert len(scored) == 2 and all(set(s.test) == {"test", "korsts_dev_heldout", "klue_dev"} for s in scored)
    assert "## Seed repeats (mean ± std)" in (exp / "report.md").read_text()


def test_compare_runs_each_method_then_its_winner_over_seeds(method_run):
    exp = method_run("compare")
    record = read_experiment(exp)
    assert record.compare is not None
    assert [m.method for m in record.compare.methods] == ["baseline", "grid"]
    baseline, grid = record.compare.methods
    assert baseline.stages == ["baseline-baseline"] and baseline.seeds_stage == "seeds-baseline"
    assert grid.stages == ["grid-learning_rate", "grid-batch_size", "grid-weight_decay"]
    assert grid.winner and grid.winner.trial_id in {
        t.trial_id for t in record.trials if t.stage in grid.stages
    }
    report = (exp / "report.md").read_text()
    assert "## Method comparison" in report and "![Method comparison](compare.png)" in report
    assert (exp / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [line for line in report.splitlines() if line.startswith(("| baseline |", "| grid |"))]
    assert len(rows) == 2


def test_baseline_is_one_fixed_trial_trained_to_the_end(method_run):
    exp = method_run("baseline")
    record = read_experiment(exp)
    assert [s.stage for s in record.stages] == ["baseline"]
    (trial,) = record.trials
    assert trial.status == "finished" and trial.params == {}
