"""Serving cost (issue 26): the cost levels a space reaches, the latency probe, the front, the
selection rule; and, end to end, a two-objective search, ``--select`` and ``--warm-start``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from ray import tune

from tests.conftest import run_cli, run_main
from tuning.cost import (
    LATENCY_MS,
    PAIRS_PER_S,
    CostSpaceError,
    cost_levels,
    front,
    level_key,
    measure,
    select,
)
from tuning.settings.rules import parse_select
from tuning.store import read_experiment

MODEL = {"name_or_path": "builtin:tiny", "architecture": "bi", "max_length": 64, "num_hidden_layers": None}


def test_the_levels_are_every_combination_of_the_listed_cost_settings():
    searched = {
        "num_hidden_layers": tune.choice([2, 4]),
        "max_length": {"grid_search": [32, 64]},
        "learning_rate": tune.loguniform(1e-5, 1e-4),  # not a cost setting
    }
    levels = cost_levels(MODEL, searched)
    assert [(lv["num_hidden_layers"], lv["max_length"]) for lv in levels] == [
        (2, 32),
        (2, 64),
        (4, 32),
        (4, 64),
    ]
    assert level_key(levels[0]) == "bi layers=2 max_length=32"
    assert cost_levels(MODEL, {}) == [MODEL]  # nothing searched: the fixed model's one level
    assert level_key(MODEL) == "bi layers=all max_length=64"
    assert [
        lv["num_hidden_layers"] for lv in cost_levels(MODEL, {"num_hidden_layers": tune.randint(1, 4)})
    ] == [1, 2, 3]


def test_a_cost_setting_over_a_range_or_too_many_levels_is_refused_with_the_fix():
    with pytest.raises(CostSpaceError, match=r"num_hidden_layers is a cost setting.*choice, grid or randint"):
        cost_levels(MODEL, {"num_hidden_layers": tune.uniform(1, 12)})
    with pytest.raises(CostSpaceError, match="30 cost levels; at most 24"):
        cost_levels(MODEL, {"num_hidden_layers": tune.randint(1, 31)})


def test_the_recipe_is_tried_at_every_cost_level():
    from tuning.methods._stage import recipe_at_levels

    start = {"model/num_hidden_layers": 12, "training/learning_rate": 5e-5}
    levels = [{**MODEL, "num_hidden_layers": d} for d in (4, 12, 6)]
    assert recipe_at_levels(start, levels) == [
        {"model/num_hidden_layers": 4, "training/learning_rate": 5e-5},
        {"model/num_hidden_layers": 6, "training/learning_rate": 5e-5},
    ]
    assert recipe_at_levels(None, levels) == []


def test_the_latency_probe_returns_finite_figures_for_a_tiny_model():
    pairs = [("한 남자가 기타를 친다.", "남자가 기타를 연주한다."), ("고양이가 잔다.", "비행기가 난다.")] * 20
    cost = measure(MODEL, pairs, repeats=5)
    assert math.isfinite(cost.latency_ms) and cost.latency_ms > 0
    assert math.isfinite(cost.pairs_per_s) and cost.pairs_per_s > 0
    assert cost.threads >= 1


def test_the_front_keeps_what_nothing_beats_on_both_and_orders_it_cheapest_first():
    # (pearson, latency ms): b is beaten by a (better and cheaper); d by c
    points = [(0.85, 40.0), (0.84, 45.0), (0.83, 15.0), (0.80, 16.0), (0.70, 10.0)]
    assert front(points, "max", LATENCY_MS) == [4, 2, 0]
    # pairs/s is better when larger: the same models, cost as throughput
    assert front([(0.85, 75.0), (0.84, 60.0), (0.83, 195.0), (0.80, 190.0)], "max", PAIRS_PER_S) == [2, 0]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("best", 0), ("fastest within 0.005", 0), ("fastest within 0.02", 2), ("fastest within 0.2", 4)],
)
def test_select_picks_the_cheapest_within_the_gap_of_the_best(rule, expected):
    points = [(0.85, 40.0), (0.84, 45.0), (0.83, 15.0), (0.80, 16.0), (0.70, 10.0)]
    gap = parse_select(rule)
    assert gap is not None
    assert select(points, gap, "max", LATENCY_MS) == expected


@pytest.mark.parametrize("rule", ["fastest", "fastest within", "cheapest within 0.01", "best 0.1"])
def test_a_select_rule_that_is_not_one_is_refused_naming_the_accepted_forms(rule):
    proc = run_main("--method", "optuna", "--profile", "cpu", "--smoke-test", "--select", rule)
    assert proc.returncode == 2
    assert "search.select" in proc.stderr and "fastest within <gap>" in proc.stderr, proc.stderr


# --- end to end: a two-objective search, then warm starts from it ----------------------------


@pytest.fixture(scope="module")
def cost_run(tmp_path_factory) -> Path:
    """A smoke two-objective search: depth 1 or 2 of the test-size model, validation Pearson
    against the latency of one pair; the cheapest model within 1.0 of the best is exported."""
    storage = tmp_path_factory.mktemp("cost")
    proc = run_cli(
        "--method", "optuna", "--space", "search_spaces/cpu/cost.yaml", "--smoke-test", "--num-samples", "5",
        "--select", "fastest within 1.0", "--storage", str(storage), "--name", "front",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return storage / "front"


@pytest.mark.e2e
def test_a_two_objective_search_measures_each_level_and_ends_with_a_front(cost_run: Path):
    costs = json.loads((cost_run / "serving_cost.json").read_text())
    # both searched depths; the untuned model (all 2 layers of the test-size model) is depth 2's level
    assert set(costs) == {f"bi layers={d} max_length=64" for d in (1, 2)}
    assert all(math.isfinite(c[LATENCY_MS]) and c[PAIRS_PER_S] > 0 for c in costs.values())
    stage = json.loads((cost_run / "optuna" / "stage.json").read_text())
    assert stage["cost"] == LATENCY_MS
    # Optuna's study has two objectives; each completed trial holds (pearson, latency of its level)
    study = _study(cost_run)
    assert len(study.directions) == 2
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done
    for t in done:
        depth = t.params["model/num_hidden_layers"]
        assert t.values[1] == pytest.approx(costs[f"bi layers={depth} max_length=64"][LATENCY_MS])
    # the recipe first at the whole depth (the control), then at the other level
    first = [t.params for t in sorted(study.trials, key=lambda t: t.number)[:2]]
    assert [p["model/num_hidden_layers"] for p in first] == [2, 1]
    assert first[0]["training/learning_rate"] == first[1]["training/learning_rate"] == 5e-5
    # every scored model carries its level's cost; the report draws and tabulates the front
    scores = json.loads((cost_run / "test_scores.json").read_text())
    assert all(LATENCY_MS in s["cost"] for s in scores)
    report = (cost_run / "report.md").read_text()
    assert "## Accuracy against serving cost" in report and "cost_front.png" in report
    assert (cost_run / "cost_front.png").is_file()
    assert "on the validation front" in report and "| untuned |" in report


@pytest.mark.e2e
def test_select_exports_the_cheapest_scored_model_within_the_gap_and_serve_loads_it(cost_run: Path):
    from tuning.serving.scorer import ServedModel

    meta = json.loads((cost_run / "experiment.json").read_text())
    scores = json.loads((cost_run / "test_scores.json").read_text())
    pool = [s for s in scores if s["role"] in ("top", "front", "recipe")]
    cheapest = min(pool, key=lambda s: (s["cost"][LATENCY_MS], -s["validation"]["pearson"]))
    assert meta["selection"]["chosen"] == f"{cheapest['stage']}/{cheapest['trial_id']}"
    best = json.loads((cost_run / "best_model" / "best.json").read_text())
    assert best["trial_id"] == cheapest["trial_id"]
    served = ServedModel.load(cost_run / "best_model")
    assert served.describe()["num_hidden_layers"] == cheapest["params"]["num_hidden_layers"]
    assert all(0 <= s <= 5 for s in served.score([("고양이가 잔다.", "고양이가 자고 있다.")]))


def _study(folder: Path) -> optuna.Study:
    from tuning.methods._study import journal

    return optuna.load_study(study_name="optuna", storage=journal(folder / "optuna.journal"))


@pytest.mark.e2e
def test_a_warm_start_on_the_same_problem_gives_the_searcher_its_trials_without_training_them(
    cost_run: Path, tmp_path: Path
):
    proc = run_cli(
        "--method", "optuna", "--space", "search_spaces/cpu/cost.yaml", "--smoke-test", "--num-samples", "2",
        "--warm-start", str(cost_run), "--storage", str(tmp_path), "--name", "warm",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    earlier = [t for t in _study(cost_run).trials if t.state == optuna.trial.TrialState.COMPLETE]
    stage = json.loads((tmp_path / "warm" / "optuna" / "stage.json").read_text())
    assert stage["warm_start"]["same_problem"] and stage["warm_start"]["evaluated"] == len(earlier)
    study = _study(tmp_path / "warm")
    told = [t for t in study.trials if "tune_trial_id" not in t.user_attrs]  # added, never run
    # their Pearson as it was; their cost as measured here (this search's own levels)
    assert sorted(t.values[0] for t in told) == sorted(t.values[0] for t in earlier)
    costs = json.loads((tmp_path / "warm" / "serving_cost.json").read_text())
    for t in told:
        level = costs[f"bi layers={t.params['model/num_hidden_layers']} max_length=64"]
        assert t.values[1] == pytest.approx(level[LATENCY_MS])
    # what ran here: its own trials only (the recipe again, as this search's control, and new ones)
    ran = [t for t in study.trials if "tune_trial_id" in t.user_attrs]
    assert len(ran) == 2
    trial_folders = list((tmp_path / "warm" / "optuna").glob("optuna_*"))
    assert len(trial_folders) == 2
    assert "given to the searcher as evaluated" in proc.stdout
    assert "Warm start" in (tmp_path / "warm" / "report.md").read_text()


@pytest.mark.e2e
def test_the_warm_start_benchmark_reads_two_finished_searches(cost_run: Path, tmp_path: Path, capsys):
    """``python -m benchmarks warm_start COLD WARM``: each search's best and when it reached the cold best."""
    from benchmarks import warm_start

    proc = run_cli(
        "--method", "optuna", "--space", "search_spaces/cpu/cost.yaml", "--smoke-test", "--num-samples", "2",
        "--warm-start", str(cost_run), "--training.num_epochs", "1", "--storage", str(tmp_path), "--name", "w",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert warm_start.main([str(cost_run), str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| cold") or line.startswith("| warm")]
    assert len(rows) == 2
    assert "| 1.00 |" in rows[0]  # the cold search reaches its own best at its own time
    assert "enqueued" in rows[1]  # another problem (1 epoch, not 2): its top configurations first
    points = warm_start.timeline(read_experiment(cost_run), "pearson")
    assert points == sorted(points) and all(t >= 0 for t, _, _ in points)


@pytest.mark.e2e
def test_a_warm_start_from_another_problem_tries_its_top_configurations_first(cost_run: Path, tmp_path: Path):
    proc = run_cli(
        "--method", "optuna", "--space", "search_spaces/cpu/cost.yaml", "--smoke-test", "--num-samples", "3",
        "--training.num_epochs", "3", "--top-k", "2",
        "--warm-start", str(cost_run), "--storage", str(tmp_path), "--name", "other",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stage = json.loads((tmp_path / "other" / "optuna" / "stage.json").read_text())
    carried = stage["warm_start"]
    assert not carried["same_problem"] and carried["differences"] == ["training.num_epochs: 2 -> 3"]
    earlier = sorted((t for t in _study(cost_run).trials if t.values), key=lambda t: -t.values[0])
    study = _study(tmp_path / "other")
    first = [t.params for t in study.trials[: carried["enqueued"]]]
    top = [t.params for t in earlier[: carried["enqueued"]]]
    assert all(p in top for p in first)
    assert "tried first" in proc.stdout


def test_a_warm_start_from_a_folder_that_is_no_experiment_is_refused(tmp_path: Path):
    proc = run_main(
        "--method", "optuna", "--space", "search_spaces/cpu/cost.yaml", "--smoke-test",
        "--warm-start", str(tmp_path), "--storage", str(tmp_path), "--name", "x",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"--warm-start {tmp_path}" in proc.stderr and "Pass runs/<name>" in proc.stderr
