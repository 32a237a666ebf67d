"""Benchmarks: the pure parts (tables, timings, targets, generated search spaces) and the command line.

Nothing here trains a model or starts Ray; the benchmarks themselves are run by hand or `make bench`.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from benchmarks import (
    BENCHMARKS,
    REPO,
    grid_experiment,
    header,
    markdown_table,
    objectives,
    overhead,
    run_search,
    scaling,
    search_efficiency,
    spread,
    throughput,
)
from tuning.settings import SHARED_ENV, parse_experiment, validate
from tuning.spaces import check_experiment
from tuning.store import StageRecord, read_experiment


def test_help_lists_every_benchmark():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    for name in [*BENCHMARKS, "all"]:
        assert f"\n  {name} " in out.stdout


def test_unknown_benchmark_is_refused_with_the_list():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "nope"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "invalid choice: 'nope'" in out.stderr and "'throughput'" in out.stderr


def test_all_runs_each_benchmark_in_its_own_process_with_its_quick_flags(monkeypatch, capsys):
    import benchmarks.__main__ as cli

    commands = []
    monkeypatch.setattr(
        cli.subprocess,
        "run",
        lambda command, **kw: commands.append(command) or subprocess.CompletedProcess(command, 0),
    )
    assert cli.main(["all", "--quick"]) == 0
    assert [c[3] for c in commands] == list(BENCHMARKS)
    assert all(c[:3] == [sys.executable, "-m", "benchmarks"] for c in commands)
    assert commands[0][4:] == ["--quick"] and commands[list(BENCHMARKS).index("serve_load")][4:] == []
    assert cli.main(["all", "--foo"]) == 2


def test_every_registered_benchmark_has_a_module_with_main():
    import importlib

    for name in BENCHMARKS:
        assert callable(importlib.import_module(f"benchmarks.{name}").main)


def test_markdown_table_aligns_numbers_right():
    assert markdown_table(["a", "b"], [["x", "1"]]) == "| a | b |\n| --- | ---: |\n| x | 1 |"
    assert markdown_table(["a", "b"], [["x", "y"]], align="ll").splitlines()[1] == "| --- | --- |"


def test_header_names_date_machine_and_command():
    line = header("Title", "throughput", ["--quick"])
    assert line.startswith("**Title** — ") and "CPUs, load average" in line
    assert line.endswith("`python -m benchmarks throughput --quick`")


def test_spread_is_log_even_and_keeps_its_ends():
    assert spread(1e-5, 1e-3, 3) == [1e-5, 1e-4, 1e-3]
    assert spread(2e-5, 1e-4, 1) == [2e-5]


# --- throughput ---


def result(name: str, pad_to: int | None, grouped: bool, train_s: float, pearson: float):
    variant = throughput.Variant(pad_to, grouped)
    return throughput.Result(name, variant, train_s, 1.0, pearson, pairs=640)


def test_throughput_table_speedups_and_result_checks():
    rows = throughput.table(
        [
            result("pad to 512", 512, False, 100.0, 0.5),
            result("per batch", None, False, 10.0, 0.50002),
            result("grouped", None, True, 5.0, 0.49),
        ]
    ).splitlines()[2:]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert [c[3] for c in cells] == ["1.0x", "10.0x", "20.0x"]  # speed-up vs fixed
    assert [c[2] for c in cells] == ["6.4", "64.0", "128.0"]  # pairs/s
    assert cells[0][7] == "baseline"
    assert cells[1][7] == "matches (float noise)"
    assert cells[2][7].startswith("other batch order")


def test_throughput_flags_a_per_batch_result_that_differs():
    table = throughput.table(
        [result("pad to 512", 512, False, 100.0, 0.5), result("per batch", None, False, 10.0, 0.51)]
    )
    assert "DIFFERS (> 0.001)" in table


def test_throughput_with_dropout_expects_no_match():
    results = [result("pad to 512", 512, False, 100.0, 0.5), result("per batch", None, False, 10.0, 0.51)]
    assert "dropout on: differs like another seed" in throughput.table(results, dropout=True)


def test_throughput_quick_and_default_sizes():
    assert (throughput.parse_args([]).train_size, throughput.parse_args([]).validation_size) == (640, 320)
    quick = throughput.parse_args(["--quick"])
    assert (quick.train_size, quick.validation_size, quick.pad_to) == (64, 64, 512)


# --- overhead ---


def test_overhead_ray_timing_parts_add_up_to_the_wall_time():
    stage = StageRecord(stage="s", status="done", started=100.0, ended=130.0)
    first = overhead.RayTrial(  # run_training 105-110
        first_eval=107.0,
        rows=[
            {"elapsed_s": 2.0, "time_total_s": 2.5, "pid": 7},
            {"elapsed_s": 5.0, "time_total_s": 5.5, "pid": 7},
        ],
    )
    second = overhead.RayTrial(first_eval=118.0, rows=[{"elapsed_s": 6.0, "time_total_s": 6.25, "pid": 7}])
    timing = overhead.ray_timing("ray", stage, [second, first])  # any order
    assert timing.wall_s == 30.0 and timing.trials == 2 and timing.processes == 1
    assert timing.training_s == 11.0
    assert timing.first_s == 5.0  # stage start -> first run_training start
    assert timing.between_s == 2.0  # 110 -> 112
    assert timing.last_s == 12.0  # 118 -> 130
    assert timing.in_trial_s == 0.75
    assert timing.first_s + timing.training_s + timing.between_s + timing.last_s == timing.wall_s


def test_overhead_table_compares_with_the_plain_process():
    plain = overhead.Timing("plain", trials=2, wall_s=10.0, training_s=9.0, between_s=1.0)
    ray = overhead.Timing("ray", 2, 30.0, 11.0, 2.0, in_trial_s=0.75, first_s=5.0, last_s=12.0, processes=1)
    rows = overhead.table([plain, ray]).splitlines()[2:]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert cells[0][4:6] == ["1.00x", "—"]
    assert cells[1][2:] == ["1", "30.0", "3.00x", "+10.00", "5.50", "5.00", "2.00", "12.00", "0.38"]


def test_overhead_needs_two_trials():
    with pytest.raises(SystemExit):
        overhead.parse_args(["--trials", "1"])


# --- scaling ---


def test_scaling_speedup_and_efficiency():
    rows = scaling.table(
        [scaling.Run(1, 100.0, 90.0, [25.0] * 4), scaling.Run(2, 62.5, 50.0, [30.0] * 4)]
    ).splitlines()[2:]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert cells[0][5:] == ["1.00x", "1.00x", "100%", "1.00x"]
    assert cells[1] == ["2", "4", "62.5", "50.0", "30.0", "1.20x", "1.60x", "80%", "1.80x"]


def test_scaling_refuses_more_trials_at_once_than_cpus():
    with pytest.raises(SystemExit):
        scaling.parse_args(["--concurrency", "1", "999"])


def test_scaling_gpu_flag_needs_a_gpu(capsys):
    from tuning.settings import gpu_names

    if gpu_names():
        assert scaling.parse_args(["--gpu"]).gpu
        return
    with pytest.raises(SystemExit):
        scaling.parse_args(["--gpu"])
    assert "this machine has none: drop --gpu" in capsys.readouterr().err


# --- search efficiency ---


def test_to_target_counts_trial_epochs_in_time_order():
    results = [(3.0, 0.80), (1.0, 0.50), (2.0, math.nan), (4.0, 0.70)]
    assert search_efficiency.to_target(results, 0.79) == 3  # 0.50, NaN, then 0.80
    assert search_efficiency.to_target(results, 0.40) == 1
    assert search_efficiency.to_target(results, 0.90) is None
    assert search_efficiency.to_target([(1.0, 0.6), (1.0, 0.9)], 0.8) == 2  # ties keep their order


def outcome(method: str, values: list[float], trials: int = 4, seed: int | None = 42):
    return search_efficiency.Outcome(method, seed, trials, [(float(t), v) for t, v in enumerate(values)])


def test_search_efficiency_table_shares_of_the_grid_and_the_goal():
    grid = outcome("grid", [0.70, 0.80, 0.75, 0.81] * 5, trials=10, seed=None)  # 20 trial-epochs
    quick = outcome("tpe_asha", [0.60, 0.807, 0.50])  # within 0.005 of 0.81 at the 2nd
    slow = outcome("random", [0.1] * 5 + [0.806])
    never = outcome("tpe", [0.5, 0.6])
    rows = search_efficiency.table([grid, quick, slow, never], tolerance=0.005).splitlines()[2:]
    cells = {c[0]: c for c in ([x.strip() for x in row.strip("|").split("|")] for row in rows)}
    assert cells["full grid"][3:7] == ["20", "0.8100", "20", "100%"]
    assert "first within target: result 4" in cells["full grid"][7]  # 0.80 < 0.805
    assert cells["TPE + ASHA"][5:] == ["2", "10%", "goal <= 25%: met"]
    assert cells["random search"][5:7] == ["6", "30%"]
    assert cells["TPE"][5:] == ["—", "—", "not reached in 2 trial-epochs"]


def test_search_efficiency_goal_not_met_when_over_a_quarter():
    grid = outcome("grid", [0.8] * 8, seed=None)
    late = outcome("tpe_asha", [0.1, 0.1, 0.8])  # 3 of 8 = 38%
    assert "goal <= 25%: not met" in search_efficiency.table([grid, late], tolerance=0.005)


@pytest.mark.parametrize("quick", [False, True])
@pytest.mark.parametrize("method", list(search_efficiency.METHODS))
def test_search_efficiency_writes_valid_search_spaces(method, quick):
    args = search_efficiency.parse_args(["--quick"] if quick else [])
    exp = parse_experiment(search_efficiency.experiment(method, args, seed=7), f"{method}.yaml")
    exp.method = search_efficiency.METHODS[method].cli
    validate(exp)
    check_experiment(exp.space, exp.stages, f"{method}.yaml")
    assert exp.training.num_epochs == args.epochs and exp.data.train_size == args.train_size
    assert exp.search.seed == 7 and exp.search.max_concurrent_trials == 2
    if method == "grid":
        assert [s["name"] for s in exp.stages] == ["learning_rate", "batch_size", "warmup_ratio"]
    else:
        assert exp.space["learning_rate"]["low"] == min(args.learning_rates)


def test_search_efficiency_runs_the_grid_first():
    assert search_efficiency.parse_args(["--methods", "tpe_asha", "grid"]).methods == ["grid", "tpe_asha"]


def test_grid_experiment_is_a_valid_search_space():
    exp = parse_experiment(grid_experiment("x", "tiny", [1e-4, 1e-3], 2, 64, 32, 1), "x.yaml")
    exp.method = "grid"
    validate(exp)
    check_experiment(exp.space, exp.stages, "x.yaml")
    assert exp.stages[0]["space"]["learning_rate"]["values"] == [1e-4, 1e-3]
    assert exp.data.source == "files" and exp.data.test is None
    with pytest.raises(ValueError, match="model must be one of"):
        grid_experiment("x", "nope", [1e-4], 1, 64, 32, 1)


# --- runs of run_search.py ---


def test_a_finished_run_is_read_not_rerun(tmp_path):
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "report.md").write_text("# finished\n", encoding="utf-8")
    run = run_search({"name": "x"}, "optuna", tmp_path, "done", reuse=True)
    assert run.path == tmp_path / "done" and math.isnan(run.wall_s)
    assert not (tmp_path / "done.log").exists()  # no process was started


def test_an_unfinished_run_is_resumed_and_its_log_kept(tmp_path):
    """A variant a kill or a timeout left without a report continues with --resume (the driver
    here prints the arguments it was given instead of searching)."""
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "experiment.json").write_text("{}", encoding="utf-8")
    (tmp_path / "half.log").write_text("first part\n", encoding="utf-8")
    driver = (sys.executable, "-c", "import sys; print(sys.argv[1:])")
    run = run_search({"name": "x"}, "optuna", tmp_path, "half", driver=driver, reuse=True)
    assert run.path == tmp_path / "half" and math.isnan(run.wall_s)
    log = (tmp_path / "half.log").read_text(encoding="utf-8")
    assert log == f"first part\n['--resume', '{tmp_path / 'half'}']\n"
    assert not (tmp_path / "half.yaml").exists()


def test_a_failed_run_is_one_clear_message(tmp_path):
    env = {**os.environ, SHARED_ENV: str(tmp_path / "nowhere")}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "objectives", "--quick", "--storage", str(tmp_path / "runs")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "error: objectives: run_search.py (v0) exited 2" in out.stderr
    assert "Traceback" not in out.stderr.split("error: objectives:")[0]


# --- objectives ---


def test_objectives_epochs_to_target_and_table():
    epochs = [{"epoch": 1, "pearson": 0.6}, {"epoch": 2, "pearson": 0.71}, {"epoch": 3, "pearson": 0.72}]
    assert objectives.epochs_to(epochs, 0.70) == 2
    assert objectives.epochs_to(epochs, 0.80) is None
    row = {
        "spread": {
            "validation": {"pearson": (0.71, 0.002, 3), "f1": (0.7, 0.01, 3)},
            "test": {"test": {"pearson": (0.65, 0.001, 3), "f1": (0.74, 0.003, 3)}},
        },
        "epoch1": (0.69, 0.002, 3),
        "epochs_to_target": (0.0, 0.0, 0),
        "reached": "0/3",
    }
    lines = objectives.table({"mse": row}, 0.7).splitlines()
    assert lines[0].startswith(
        "| variant | val pearson | val f1 | test pearson | test f1 | val pearson after epoch 1"
    )
    assert lines[2] == (
        "| mse | 0.7100 ± 0.0020 | 0.7000 ± 0.0100 | 0.6500 ± 0.0010 | 0.7400 ± 0.0030 | 0.6900 ± 0.0020 | - | 0/3 |"
    )


# --- cpu_levers ---


@pytest.mark.e2e
def test_cpu_levers_quick_prints_one_row_per_lever(capsys):
    from benchmarks import cpu_levers

    assert cpu_levers.main(["--quick"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0].removeprefix("| ") for r in rows] == list(cpu_levers.LEVERS)
    assert rows[0].split(" | ")[2] == "1.00x"
    assert all(float(r.split(" | ")[1]) > 0 and float(r.split(" | ")[3]) > 0 for r in rows)


@pytest.mark.e2e
def test_soup_prints_every_prefix_of_the_scored_checkpoints(method_runs):
    """On the shared smoke search: one row per prefix of the scored checkpoints, best first, each
    with validation and every held-out split; the search's own choice named below."""
    exp = method_runs("optuna")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "soup", str(exp)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    table = [line for line in out.stdout.splitlines() if line.startswith("| `")]
    scored = [s for s in read_experiment(exp).test_scores if s.role in ("top", "recipe")]
    assert len(table) == len(scored) and table[-1].count(" + ") == len(scored) - 1
    assert all(len(row.split(" | ")) == 5 for row in table)  # validation, test, korsts_dev_heldout, klue_dev
    assert "Exported by the search: optuna/" in out.stdout


@pytest.mark.e2e
def test_rungs_ranks_every_report_point_against_the_final_one(method_runs, capsys):
    """On the shared smoke grid (every trial trains to the end): a row per report point, the
    last one's rank correlation with itself +1.00 and its best the final best."""
    from benchmarks import rungs

    exp = method_runs("grid")
    by_trial, end, _ = rungs.curves(read_experiment(exp), "pearson")
    assert len(by_trial) >= 4 and all(end in curve for curve in by_trial.values())
    assert rungs.main([str(exp)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    points = set.intersection(*(set(curve) for curve in by_trial.values()))
    assert len(rows) == len(points)
    assert rows[-1].split(" | ")[2].startswith("+1.00") and rows[-1].split(" | ")[3] == "yes"
    assert f"{len(by_trial)} configurations trained to {end:,} pairs" in out
