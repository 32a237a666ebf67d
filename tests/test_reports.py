"""Tests of reports: rows, rankings and the Pareto front on hand-written records, the markdown
report, and reading an experiment back from a storage folder written by hand in Ray's layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reports import (
    ExperimentRecord,
    Row,
    TrialRecord,
    pareto_front,
    rank,
    read_experiment,
    render,
    to_rows,
    write_report,
)


def epoch(n: int, pearson: float | None, f1: float | None, **more: Any) -> dict[str, Any]:
    return {"epoch": n, "pearson": pearson, "f1": f1, **more}


def row(trial_id: str, stage: str = "s", **metrics: float) -> Row:
    return Row(
        trial_id=trial_id,
        stage=stage,
        params={},
        best_epoch=1 if metrics else None,
        metrics=metrics,
        epochs_run=1,
        planned_epochs=1,
        status="finished",
    )


def ids(rows: list[Row]) -> list[str]:
    return [r.trial_id for r in rows]


# --- TrialRecord.best ------------------------------------------------------------------------


def test_best_is_the_epoch_with_the_highest_metric() -> None:
    t = TrialRecord("a", "s", {}, epochs=[epoch(1, 0.5, 0.9), epoch(2, 0.7, 0.6), epoch(3, 0.6, 0.7)])
    assert t.best("pearson", "max")["epoch"] == 2
    assert t.best("f1", "max")["epoch"] == 1


def test_best_with_mode_min_is_the_lowest() -> None:
    t = TrialRecord(
        "a", "s", {}, epochs=[{"epoch": 1, "mse": 2.0}, {"epoch": 2, "mse": 1.5}, {"epoch": 3, "mse": 1.8}]
    )
    assert t.best("mse", "min")["epoch"] == 2


@pytest.mark.parametrize("mode", ["max", "min"])
def test_best_takes_the_earliest_epoch_on_ties(mode: str) -> None:
    t = TrialRecord(
        "a", "s", {}, epochs=[epoch(1, 0.5, 0.1), epoch(2, 0.8, 0.1), epoch(3, 0.8, 0.1), epoch(4, 0.5, 0.1)]
    )
    assert t.best("pearson", mode)["epoch"] == (2 if mode == "max" else 1)


def test_best_skips_epochs_without_the_metric() -> None:
    t = TrialRecord("a", "s", {}, epochs=[epoch(1, None, 0.9), epoch(2, 0.1, 0.2)])
    assert t.best("pearson", "max")["epoch"] == 2


@pytest.mark.parametrize("epochs", [[], [epoch(1, None, 0.5)]], ids=["no-epochs", "metric-never-reported"])
def test_best_is_none_without_a_scored_epoch(epochs: list[dict[str, Any]]) -> None:
    assert TrialRecord("a", "s", {}, epochs=epochs).best("pearson", "max") is None


def test_checkpoint_is_the_best_epochs_folder_if_storage_holds_it(tmp_path: Path) -> None:
    (tmp_path / "checkpoint_000001").mkdir()
    epochs = [
        epoch(1, 0.5, 0.5, checkpoint_dir_name="checkpoint_000000"),
        epoch(2, 0.7, 0.4, checkpoint_dir_name="checkpoint_000001"),
    ]
    t = TrialRecord("a", "s", {}, epochs=epochs, path=str(tmp_path))
    assert t.checkpoint("pearson", "max") == str(tmp_path / "checkpoint_000001")
    # Ray kept only the best checkpoint by pearson; the best by f1 is gone.
    assert t.checkpoint("f1", "max") is None


# --- to_rows ---------------------------------------------------------------------------------


def test_to_rows_takes_each_trials_best_epoch_by_the_metric() -> None:
    trials = [
        TrialRecord(
            "a",
            "optuna",
            {"learning_rate": 1e-5},
            epochs=[
                epoch(1, 0.5, 0.6, spearman=0.4, mse=2.0, loss=0.3),
                epoch(2, 0.7, 0.5, spearman=0.6, mse=1.5, loss=0.2),
            ],
            planned_epochs=3,
            status="stopped",
        ),
        TrialRecord(
            "b", "optuna", {"learning_rate": 3e-5}, planned_epochs=3, status="failed", error="boom", retries=2
        ),
    ]
    assert to_rows(trials, "pearson", "max") == [
        Row(
            trial_id="a",
            stage="optuna",
            params={"learning_rate": 1e-5},
            best_epoch=2,
            metrics={"pearson": 0.7, "f1": 0.5, "spearman": 0.6, "mse": 1.5},
            epochs_run=2,
            planned_epochs=3,
            status="stopped",
        ),
        Row(
            trial_id="b",
            stage="optuna",
            params={"learning_rate": 3e-5},
            best_epoch=None,
            metrics={},
            epochs_run=0,
            planned_epochs=3,
            status="failed",
            error="boom",
            retries=2,
        ),
    ]


def test_to_rows_with_mode_min_and_a_missing_metric() -> None:
    t = TrialRecord("a", "s", {}, epochs=[epoch(1, 0.5, None, mse=2.0), epoch(2, 0.4, None, mse=1.0)])
    (r,) = to_rows([t], "mse", "min")
    assert r.best_epoch == 2
    assert r.metrics == {"pearson": 0.4, "mse": 1.0}


# --- rank ------------------------------------------------------------------------------------

ROWS = [
    row("d"),
    row("c", pearson=0.8, f1=0.7, mse=1.2),
    row("a", pearson=0.9, f1=0.6, mse=1.0),
    row("b", pearson=0.8, f1=0.8, mse=1.2),
    row("e", pearson=0.7),
]


def test_rank_by_f1() -> None:
    assert ids(rank(ROWS, "f1")) == ["b", "c", "a", "d", "e"]


def test_rank_by_pearson_breaks_ties_by_trial_id() -> None:
    assert ids(rank(ROWS, "pearson")) == ["a", "b", "c", "e", "d"]


def test_rank_with_mode_min_puts_the_lowest_first() -> None:
    assert ids(rank(ROWS, "mse", "min")) == ["a", "b", "c", "d", "e"]


def test_rank_puts_rows_without_the_metric_last_by_id() -> None:
    rows = [row("z"), row("y", pearson=0.1), row("x")]
    assert ids(rank(rows, "pearson")) == ["y", "x", "z"]
    assert ids(rank(rows, "pearson", "min")) == ["y", "x", "z"]


def test_rank_breaks_ties_by_stage_before_trial_id() -> None:
    rows = [row("a", stage="s2", f1=0.5), row("b", stage="s1", f1=0.5)]
    assert ids(rank(rows, "f1")) == ["b", "a"]


def test_rank_of_nothing_is_nothing() -> None:
    assert rank([], "pearson") == []


# --- pareto_front ----------------------------------------------------------------------------


def test_pareto_front_hand_computed() -> None:
    rows = [
        row("a", pearson=0.9, f1=0.5),
        row("b", pearson=0.8, f1=0.7),
        row("c", pearson=0.7, f1=0.7),  # b is better on pearson, equal on f1
        row("d", pearson=0.6, f1=0.9),
        row("e", pearson=0.85, f1=0.5),  # a is better on pearson, equal on f1
        row("f", pearson=0.9, f1=0.5),  # equal to a: neither beats the other
        row("g", pearson=0.5, f1=0.4),  # beaten by everything
        row("h", f1=0.95),  # no pearson: not comparable
    ]
    assert ids(pareto_front(rows)) == ["a", "f", "b", "d"]


def test_pareto_front_on_other_metrics() -> None:
    rows = [row("a", pearson=0.9, spearman=0.5), row("b", pearson=0.8, spearman=0.4)]
    assert ids(pareto_front(rows, ("pearson", "spearman"))) == ["a"]


# --- render ----------------------------------------------------------------------------------


def table_after(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the markdown table that follows ``heading``, header first."""
    lines = markdown.splitlines()
    start = lines.index(heading) + 2
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[start:end] if "---" not in line]


def experiment_record(trials: list[TrialRecord]) -> ExperimentRecord:
    meta = {
        "config": {
            "name": "demo",
            "method": "optuna",
            "model": {"name_or_path": "builtin:tiny", "architecture": "bi"},
            "data": {"source": "korsts"},
            "search": {"metric": "pearson"},
        },
        "tensorboard_dir": "/runs/demo/tensorboard",
        "command": "python run_search.py --method optuna",
        "wall_time_s": 120.0,
    }
    return ExperimentRecord(
        "/runs/demo", meta, [{"stage": "optuna", "searched": ["learning_rate"]}], trials, []
    )


TRIALS = [
    TrialRecord(
        "aaaa",
        "optuna",
        {"learning_rate": 1e-5},
        epochs=[epoch(1, 0.7, 0.6), epoch(2, 0.8, 0.65), epoch(3, 0.78, 0.7)],
        planned_epochs=3,
        status="finished",
    ),
    TrialRecord(
        "bbbb",
        "optuna",
        {"learning_rate": 2e-4},
        epochs=[epoch(1, 0.6, 0.75)],
        planned_epochs=3,
        status="stopped",
    ),
    TrialRecord(
        "cccc",
        "optuna",
        {"learning_rate": 5e-5},
        planned_epochs=3,
        status="failed",
        error="RuntimeError: CUDA out of memory.",
        retries=2,
    ),
]


def test_render_has_both_rankings_with_status_and_error() -> None:
    md = render(experiment_record(TRIALS))
    assert md.startswith("# Tuning report: demo\n")
    header = ["rank", "trial", "learning_rate", "best epoch", "pearson", "f1", "spearman", "mse", "status"]
    by_f1 = table_after(md, "## Ranking by validation F1")
    by_pearson = table_after(md, "## Ranking by validation Pearson")
    assert by_f1[0] == by_pearson[0] == header
    assert [r[1] for r in by_f1[1:]] == ["optuna/bbbb", "optuna/aaaa", "optuna/cccc"]
    assert [r[1] for r in by_pearson[1:]] == ["optuna/aaaa", "optuna/bbbb", "optuna/cccc"]
    # Each trial shows its best epoch by the search metric (pearson): aaaa's is epoch 2.
    assert by_pearson[1] == ["1", "optuna/aaaa", "1e-05", "2", "0.8", "0.65", "-", "-", "finished"]
    assert by_pearson[2][-1] == "stopped by ASHA after 1/3 epochs"
    assert by_pearson[3][3:8] == ["-", "-", "-", "-", "-"]
    assert by_pearson[3][-1] == "failed, retried 2x from checkpoint: RuntimeError: CUDA out of memory."


def test_render_has_the_pareto_front_and_the_tensorboard_command() -> None:
    md = render(experiment_record(TRIALS))
    assert (
        "Trials no other trial beats on both metrics: `optuna/aaaa` (0.8, 0.65), `optuna/bbbb` (0.6, 0.75)"
        in md
    )
    assert "    tensorboard --logdir /runs/demo/tensorboard\n" in md
    assert "- Command: `python run_search.py --method optuna`" in md


def test_render_of_an_experiment_without_trials() -> None:
    md = render(experiment_record([]))
    assert table_after(md, "## Ranking by validation F1")[1:] == []
    assert table_after(md, "## Ranking by validation Pearson")[1:] == []
    assert "## Pareto front" not in md


# --- read_experiment -------------------------------------------------------------------------


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload), encoding="utf-8")


def result_line(trial_id: str, n: int, pearson: float, f1: float) -> str:
    """One line of Ray's result.json, as a trial's ``tune.report`` leaves it."""
    return json.dumps(
        {
            "pearson": pearson,
            "f1": f1,
            "spearman": pearson - 0.01,
            "mse": 2.0 - pearson,
            "loss": 0.3,
            "epoch": n,
            "checkpoint_dir_name": f"checkpoint_{n - 1:06d}",
            "done": False,
            "training_iteration": n,
            "trial_id": trial_id,
            "config": {"num_epochs": 3},
        }
    )


def write_trial(
    stage_dir: Path,
    trial_id: str,
    lines: list[str],
    error: str | None = None,
    learning_rate: float = 1e-5,
) -> None:
    trial_dir = stage_dir / f"{stage_dir.name}_{trial_id}"
    params = {"learning_rate": learning_rate, "batch_size": 8, "num_epochs": 3, "seed": 42, "data": {}}
    write_json(trial_dir / "params.json", params)
    if lines:
        (trial_dir / "result.json").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if error is not None:
        (trial_dir / "error.txt").write_text(error, encoding="utf-8")


def failure(n: int, message: str) -> str:
    """One entry of Ray's error.txt (it appends one per failure)."""
    return (
        f"Failure # {n} (occurred at 2026-01-01_00-00-0{n})\n"
        "ray::ImplicitFunc.train() (pid=1, ip=127.0.0.1, repr=train_trial)\n"
        '  File "tuning/trial.py", line 300, in train_trial\n'
        f"{message}\n"
    )


TEST_SCORES = [
    {
        "trial_id": "aaaa",
        "stage": "optuna",
        "params": {"batch_size": 8, "learning_rate": 1e-5},
        "best_epoch": 3,
        "validation": {"pearson": 0.8, "f1": 0.6},
        "test": {"test": {"pearson": 0.75, "f1": 0.55}, "klue_dev": {"pearson": 0.5, "f1": 0.45}},
    }
]


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    """A two-stage experiment folder in the layout Ray Tune and run_search.py write."""
    root = tmp_path / "demo"
    meta = {
        "config": {"name": "demo", "method": "optuna", "search": {"metric": "pearson"}},
        "stages": ["optuna", "finetune"],
        "tensorboard_dir": str(root / "tensorboard"),
    }
    write_json(root / "experiment.json", meta)
    stage = {"searched": ["batch_size", "learning_rate"], "num_epochs": 3, "metric": "pearson", "mode": "max"}

    optuna = root / "optuna"
    write_json(optuna / "stage.json", {"stage": "optuna", **stage, "status": "done", "started": 100.0})
    write_json(
        optuna / "trials.json",
        {
            "aaaa": {"retries": 0, "status": "completed", "epochs": 3},
            "bbbb": {"retries": 0, "status": "completed", "epochs": 1},
            "cccc": {"retries": 1, "status": "error", "epochs": 0},
            "dddd": {"retries": 1, "status": "completed", "epochs": 3},
        },
    )
    write_trial(optuna, "aaaa", [result_line("aaaa", n, 0.5 + n / 10, 0.6) for n in (1, 2, 3)])
    # Stopped by ASHA after one epoch; the process died writing a second line (torn).
    write_trial(optuna, "bbbb", [result_line("bbbb", 1, 0.55, 0.7), result_line("bbbb", 2, 0.6, 0.7)[:40]])
    write_trial(
        optuna,
        "cccc",
        [],
        error=failure(1, "RuntimeError: CUDA out of memory.")
        + failure(2, "RuntimeError: CUDA out of memory."),
    )
    # Failed in epoch 2, restored from the epoch-1 checkpoint, then finished: epoch 1 twice.
    write_trial(
        optuna,
        "dddd",
        [result_line("dddd", 1, 0.3, 0.5), result_line("dddd", 1, 0.35, 0.5)]
        + [result_line("dddd", n, 0.4, 0.5) for n in (2, 3)],
        error=failure(1, "OSError: disk hiccup"),
    )
    (optuna / "tuner.pkl").write_bytes(b"")  # Ray's own files sit beside the trials
    (optuna / "tensorboard_only").mkdir()  # a folder that is not a trial (no params.json)

    finetune = root / "finetune"
    write_json(
        finetune / "stage.json", {"stage": "finetune", **stage, "status": "interrupted", "started": 200.0}
    )
    write_trial(finetune, "eeee", [result_line("eeee", 1, 0.7, 0.8)])
    write_json(root / "test_scores.json", TEST_SCORES)
    return root


def test_read_experiment_reads_meta_stages_in_run_order_and_test_scores(storage: Path) -> None:
    exp = read_experiment(storage)
    assert exp.path == str(storage)
    assert exp.meta["config"]["name"] == "demo"
    # The order the stages ran in (stage.json's start time), not the folders' alphabetical one.
    assert [s["stage"] for s in exp.stages] == ["optuna", "finetune"]
    assert exp.test_scores == TEST_SCORES


def test_read_experiment_classifies_every_trial(storage: Path) -> None:
    trials = {t.trial_id: t for t in read_experiment(storage).trials}
    assert set(trials) == {"aaaa", "bbbb", "cccc", "dddd", "eeee"}
    got = {
        i: (t.stage, t.status, len(t.epochs), t.planned_epochs, t.retries, t.error) for i, t in trials.items()
    }
    assert got == {
        "aaaa": ("optuna", "finished", 3, 3, 0, None),
        "bbbb": ("optuna", "stopped", 1, 3, 0, None),
        "cccc": ("optuna", "failed", 0, 3, 1, "RuntimeError: CUDA out of memory."),
        "dddd": ("optuna", "finished", 3, 3, 1, "OSError: disk hiccup"),
        "eeee": ("finetune", "incomplete", 1, 3, 0, None),
    }


def test_read_trial_keeps_searched_params_and_the_latest_report_of_an_epoch(storage: Path) -> None:
    trials = {t.trial_id: t for t in read_experiment(storage).trials}
    assert trials["aaaa"].params == {"batch_size": 8, "learning_rate": 1e-5}
    assert [e["epoch"] for e in trials["dddd"].epochs] == [1, 2, 3]
    assert trials["dddd"].epochs[0]["pearson"] == 0.35
    assert trials["aaaa"].path == str(storage / "optuna" / "optuna_aaaa")


def test_report_of_a_stored_experiment(storage: Path) -> None:
    path = write_report(storage)
    assert path == storage / "report.md"
    md = path.read_text(encoding="utf-8")
    assert "stopped by ASHA after 1/3 epochs" in md
    assert "failed, retried 1x from checkpoint: RuntimeError: CUDA out of memory." in md
    assert f"tensorboard --logdir {storage / 'tensorboard'}" in md
    assert table_after(md, "## Test scores of the best configurations") == [
        [
            "trial",
            "validation pearson",
            "validation f1",
            "test pearson",
            "test f1",
            "klue_dev pearson",
            "klue_dev f1",
        ],
        ["optuna/aaaa", "0.8", "0.6", "0.75", "0.55", "0.5", "0.45"],
    ]


def test_folder_without_experiment_json_is_refused_helpfully(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        read_experiment(tmp_path)
    message = str(err.value)
    assert f"{tmp_path} is not an experiment folder: experiment.json is missing" in message
    assert "<storage>/<name> as written by run_search.py" in message


# --- figures, importance, disk, TensorBoard on a cluster -------------------------------------


def test_render_links_the_figures_it_is_given() -> None:
    figures = {"pareto": "pareto.png", "importance": "importance.png", "curves": "learning_curves.png"}
    md = render(experiment_record(TRIALS), figures)
    assert "![Pearson against F1, Pareto front highlighted](pareto.png)" in md
    assert "![Hyperparameter importance](importance.png)" in md
    assert "## Learning curves" in md and "![Learning curves](learning_curves.png)" in md
    assert "## Learning curves" not in render(experiment_record(TRIALS))


def test_render_states_why_importance_was_not_computed() -> None:
    md = render(experiment_record(TRIALS))
    assert "## Why: hyperparameter importance" in md
    # The record's stage stores no space: nothing varied that importance could compare.
    assert "- Not computed for `optuna`: 0 hyperparameters varied; importance compares at least 2." in md


def importance_record() -> ExperimentRecord:
    """Twelve trials whose Pearson the learning rate decides (batch size is noise)."""
    space = {
        "learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-3},
        "batch_size": {"type": "choice", "values": [8, 16]},
    }
    trials = [
        TrialRecord(
            f"t{i:02d}",
            "optuna",
            {"batch_size": (8, 16)[i * 7 % 3 % 2], "learning_rate": 10 ** (-5 + 2 * i / 11)},
            epochs=[epoch(1, 0.9 - abs(i - 8) / 12, 0.5)],
            planned_epochs=1,
            status="finished",
        )
        for i in range(12)
    ]
    exp = experiment_record(trials)
    exp.stages = [
        {
            "stage": "optuna",
            "searched": ["batch_size", "learning_rate"],
            "space": space,
            "metric": "pearson",
            "winner": {"trial_id": "t08", "params": trials[8].params, "metric": "pearson", "value": 0.9},
        }
    ]
    return exp


def test_render_has_an_importance_table_per_stage() -> None:
    md = render(importance_record())
    assert "### Importance in optuna\n\n12 trials; compared with all of them: the best 5 by pearson.\n" in md
    rows = table_after(md, "12 trials; compared with all of them: the best 5 by pearson.")
    assert rows[0] == [
        "hyperparameter",
        "searched",
        "importance for pearson",
        "importance for f1",
        "stage winner",
    ]
    assert rows[1][:2] == ["learning_rate", "loguniform 1e-05..0.001"]
    assert rows[1][4] == "0.0002848"  # the winner's value, 10 ** (-5 + 16 / 11)
    assert rows[1][3] == "-"  # every trial has F1 0.5: nothing to compare
    assert float(rows[1][2]) > float(rows[2][2])
    assert "Not computed for f1: all 12 trials scored the same." in md
    assert "- Most important hyperparameter for validation Pearson: learning_rate in `optuna` (" in md


def test_render_is_deterministic() -> None:
    assert render(importance_record()) == render(importance_record())


def test_render_has_the_tensorboard_cluster_command() -> None:
    md = render(experiment_record(TRIALS))
    assert (
        "    ray exec cluster.yaml 'tensorboard --logdir /runs/demo/tensorboard --port 6006' --port-forward 6006\n"
        in md
    )
    assert "HParams tab" in md


def test_render_states_the_disk_used() -> None:
    from reports.disk import DiskUsage

    exp = experiment_record(TRIALS)
    assert "## Disk" not in render(exp)
    exp.disk = DiskUsage(
        total=5 * 1024**2, checkpoints=4 * 1024**2, best_model=512 * 1024, tensorboard=2048, files=40
    )
    md = render(exp)
    assert (
        "- Experiment folder `/runs/demo`: 5.00 MiB in 40 files (this report and its figures not counted)."
        in md
    )
    assert (
        "- Trial checkpoints (each trial keeps its best): 4.00 MiB; exported best model: 512.0 KiB; "
        "TensorBoard: 2.00 KiB." in md
    )


def test_report_of_a_stored_experiment_has_its_figures_and_disk(storage: Path) -> None:
    import re

    md = write_report(storage).read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links == ["pareto.png", "learning_curves.png"]  # no stage had 4 trials for importance
    for name in links:
        assert (storage / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "## Disk" in md and f"- Experiment folder `{storage}`:" in md


def test_rebuilt_report_is_byte_identical(storage: Path) -> None:
    first = write_report(storage).read_text(encoding="utf-8")
    (storage / "report.md").unlink()
    assert write_report(storage).read_text(encoding="utf-8") == first
