"""Tests of reports: the markdown report of hand-written records, and reading an experiment back
from a storage folder written by hand in Ray's and run_search.py's layout. (Rankings are tested in
test_ranking.py, the stored records in test_store.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reports import read_experiment, render, write_report
from tuning.store import (
    DiskUsage,
    ExperimentMeta,
    ExperimentRecord,
    StageRecord,
    TestScore,
    TrialRecord,
    Winner,
)


def epoch(n: int, pearson: float | None, f1: float | None, **more: Any) -> dict[str, Any]:
    return {"epoch": n, "pearson": pearson, "f1": f1, **more}


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
    meta = ExperimentMeta(
        config={
            "name": "demo",
            "method": "optuna",
            "model": {"name_or_path": "builtin:tiny", "architecture": "bi"},
            "data": {"source": "korsts"},
            "search": {"metric": "pearson"},
        },
        tensorboard_dir="/runs/demo/tensorboard",
        command="python run_search.py --method optuna",
        wall_time_s=120.0,
    )
    stage = StageRecord(stage="optuna", status="done", searched=["learning_rate"])
    return ExperimentRecord("/runs/demo", meta, [stage], trials, [])


TRIALS = [
    TrialRecord(
        "aaaa",
        "optuna",
        {"learning_rate": 1e-5},
        reports=[epoch(1, 0.7, 0.6), epoch(2, 0.8, 0.65), epoch(3, 0.78, 0.7)],
        planned_epochs=3,
        status="finished",
    ),
    TrialRecord(
        "bbbb",
        "optuna",
        {"learning_rate": 2e-4},
        reports=[epoch(1, 0.6, 0.75)],
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
    header = ["rank", "trial", "learning_rate", "best epoch", "pairs", "pearson", "f1", "spearman", "mse"]
    header += ["pearson 95% CI", "status"]
    by_f1 = table_after(md, "## Ranking by validation F1")
    by_pearson = table_after(md, "## Ranking by validation Pearson")
    assert by_f1[0] == by_pearson[0] == header
    assert [r[1] for r in by_f1[1:]] == ["optuna/bbbb", "optuna/aaaa", "optuna/cccc"]
    assert [r[1] for r in by_pearson[1:]] == ["optuna/aaaa", "optuna/bbbb", "optuna/cccc"]
    # Each trial shows its best epoch by the search metric (pearson): aaaa's is epoch 2.
    # No budget in pairs in these hand-written reports, no validation size: no interval either.
    assert by_pearson[1] == ["1", "optuna/aaaa", "1e-05", "2", "-", "0.8", "0.65", "-", "-", "-", "finished"]
    assert by_pearson[2][-1] == "stopped by ASHA after 1/3 epochs"
    assert by_pearson[3][3:10] == ["-", "-", "-", "-", "-", "-", "-"]
    assert by_pearson[3][-1] == "failed, retried 2x from checkpoint: RuntimeError: CUDA out of memory."


def test_render_has_the_pareto_front_and_the_tensorboard_command() -> None:
    md = render(experiment_record(TRIALS))
    assert (
        "Trials no other trial beats on both metrics: `optuna/aaaa` (0.8, 0.65), `optuna/bbbb` (0.6, 0.75)"
        in md
    )
    assert "    tensorboard --logdir tensorboard\n" in md  # relative to the report's folder
    assert "/runs/demo" not in md  # no machine path (issue 28)
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
    # Stopped by ASHA after one epoch (a torn result.json: tests/test_damage.py).
    write_trial(optuna, "bbbb", [result_line("bbbb", 1, 0.55, 0.7)])
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
    assert exp.meta.config["name"] == "demo"
    assert exp.metric == "pearson"
    # The order the stages ran in (stage.json's start time), not the folders' alphabetical one.
    assert [s.stage for s in exp.stages] == ["optuna", "finetune"]
    assert [s.status for s in exp.stages] == ["done", "interrupted"]
    assert exp.test_scores == [TestScore.model_validate(s) for s in TEST_SCORES]
    assert exp.test_scores[0].test["klue_dev"]["pearson"] == 0.5


def test_read_experiment_classifies_every_trial(storage: Path) -> None:
    trials = {t.trial_id: t for t in read_experiment(storage).trials}
    assert set(trials) == {"aaaa", "bbbb", "cccc", "dddd", "eeee"}
    got = {
        i: (t.stage, t.status, len(t.reports), t.planned_epochs, t.retries, t.error)
        for i, t in trials.items()
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
    assert [e["epoch"] for e in trials["dddd"].reports] == [1, 2, 3]
    assert trials["dddd"].reports[0]["pearson"] == 0.35
    assert trials["aaaa"].path == str(storage / "optuna" / "optuna_aaaa")


def test_report_of_a_stored_experiment(storage: Path) -> None:
    path = write_report(storage)
    assert path == storage / "report.md"
    md = path.read_text(encoding="utf-8")
    assert "stopped by ASHA after 1/3 epochs" in md
    assert "failed, retried 1x from checkpoint: RuntimeError: CUDA out of memory." in md
    assert "tensorboard --logdir tensorboard\n" in md and str(storage) not in md
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
            reports=[epoch(1, 0.9 - abs(i - 8) / 12, 0.5)],
            planned_epochs=1,
            status="finished",
        )
        for i in range(12)
    ]
    exp = experiment_record(trials)
    winner = Winner(
        trial_id="t08",
        params=trials[8].params,
        metric="pearson",
        value=0.9,
        config_file="/runs/demo/optuna/optuna_t08/params.json",
    )
    exp.stages = [
        StageRecord(
            stage="optuna",
            status="done",
            searched=["batch_size", "learning_rate"],
            space=space,
            metric="pearson",
            winner=winner,
        )
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
        "    ray exec cluster.yaml 'tensorboard --logdir <storage>/demo/tensorboard --port 6006' --port-forward 6006\n"
        in md
    )
    assert "HParams tab" in md


def test_render_states_the_disk_used() -> None:
    exp = experiment_record(TRIALS)
    assert "## Disk" not in render(exp)
    exp.disk = DiskUsage(
        total=5 * 1024**2, checkpoints=4 * 1024**2, best_model=512 * 1024, tensorboard=2048, files=40
    )
    md = render(exp)
    assert (
        "- Experiment folder (this report's): 5.00 MiB in 40 files (this report and its figures not counted)."
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
    assert "## Disk" in md and "- Experiment folder (this report's):" in md


def test_rebuilt_report_is_byte_identical(storage: Path) -> None:
    first = write_report(storage).read_text(encoding="utf-8")
    (storage / "report.md").unlink()
    assert write_report(storage).read_text(encoding="utf-8") == first


def test_every_trial_status_has_its_words_and_its_marker() -> None:
    """The report's tables and figures cover exactly the closed set of statuses a trial can have."""
    from typing import get_args

    from reports.figures import END_MARKERS
    from reports.tables import STATUS_TEXT
    from tuning.store import TrialStatus

    assert set(STATUS_TEXT) == set(END_MARKERS) == set(get_args(TrialStatus))
