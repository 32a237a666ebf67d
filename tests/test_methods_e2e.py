"""Every method through ``run_search.py --smoke-test``: real Ray Tune stages, real reports.

Staged methods must show each stage and the winner it carried forward; seed repeats their
spread; ``compare`` one table and one chart over the methods it ran.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reports import read_experiment
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.e2e
CPU = REPO / "search_spaces" / "cpu"


def smoke(tmp_path: Path, name: str, *args: str) -> Path:
    proc = run_cli(*args, "--smoke-test", "--storage", str(tmp_path), "--name", name)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp_path / name


def test_grid_runs_stage_by_stage_carrying_each_winner_forward(tmp_path):
    exp = smoke(tmp_path, "grid", "--method", "grid", "--profile", "cpu")
    record = read_experiment(exp)
    assert [s["stage"] for s in record.stages] == ["learning_rate", "batch_size", "weight_decay"]
    lr, batch, decay = record.stages
    assert batch["carried"]["learning_rate"] == {
        "value": lr["winner"]["params"]["learning_rate"],
        "from_stage": "learning_rate",
        "trial_id": lr["winner"]["trial_id"],
    }
    assert set(decay["carried"]) == {"learning_rate", "batch_size"}
    # Every trial of a later stage ran with the carried values.
    for trial in (t for t in record.trials if t.stage == "weight_decay"):
        params = json.loads((Path(trial.path) / "params.json").read_text())
        assert params["batch_size"] == batch["winner"]["params"]["batch_size"]
    report = (exp / "report.md").read_text()
    assert "### batch_size" in report
    assert "Carried forward: learning_rate = " in report


def test_full_grid_is_one_stage_over_the_product(tmp_path):
    exp = smoke(tmp_path, "full", "--method", "grid", "--profile", "cpu", "--full-grid")
    record = read_experiment(exp)
    assert [s["stage"] for s in record.stages] == ["full_grid"]
    combos = {
        (t.params["learning_rate"], t.params["batch_size"], t.params["weight_decay"]) for t in record.trials
    }
    assert len(combos) == len(record.trials) == 2 * 2 * 2


def test_seeds_repeat_the_top_configurations_of_a_finished_search(tmp_path):
    source = smoke(tmp_path, "src", "--method", "optuna", "--profile", "cpu")
    exp = smoke(tmp_path, "rep", "--method", "seeds", "--profile", "cpu", "--from", str(source))
    record = read_experiment(exp)
    assert [s["stage"] for s in record.stages] == ["seeds-1", "seeds-2"]
    assert all(s["role"] == "seeds" and str(source) in s["repeats"] for s in record.stages)
    for stage in record.stages:
        seeds = sorted(t.params["seed"] for t in record.trials if t.stage == stage["stage"])
        assert seeds == [42, 43]
    scored = [s for s in record.test_scores if s["stage"] == "seeds-1"]
    assert len(scored) == 2 and all(set(s["test"]) == {"test", "korsts_dev", "klue_dev"} for s in scored)
    assert "## Seed repeats (mean ± std)" in (exp / "report.md").read_text()


def test_compare_runs_each_method_then_its_winner_over_seeds(tmp_path):
    folder = tmp_path / "spaces"
    folder.mkdir()
    for name in ("baseline.yaml", "grid.yaml"):
        shutil.copy(CPU / name, folder / name)
    (folder / "compare.yaml").write_text("base: baseline.yaml\nname: cmp\nmethods: [baseline, grid]\n")
    exp = smoke(tmp_path, "cmp", "--method", "compare", "--space", str(folder / "compare.yaml"))
    record = read_experiment(exp)
    assert [m["method"] for m in record.compare["methods"]] == ["baseline", "grid"]
    baseline, grid = record.compare["methods"]
    assert baseline["stages"] == ["baseline-baseline"] and baseline["seeds_stage"] == "seeds-baseline"
    assert grid["stages"] == ["grid-learning_rate", "grid-batch_size", "grid-weight_decay"]
    assert grid["winner"]["trial_id"] in {t.trial_id for t in record.trials if t.stage in grid["stages"]}
    report = (exp / "report.md").read_text()
    assert "## Method comparison" in report and "![Method comparison](compare.png)" in report
    assert (exp / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [line for line in report.splitlines() if line.startswith(("| baseline |", "| grid |"))]
    assert len(rows) == 2


def test_baseline_is_one_fixed_trial_trained_to_the_end(tmp_path):
    exp = smoke(tmp_path, "base", "--method", "baseline", "--profile", "cpu")
    record = read_experiment(exp)
    assert [s["stage"] for s in record.stages] == ["baseline"]
    (trial,) = record.trials
    assert trial.status == "finished" and trial.params == {}
