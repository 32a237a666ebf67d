"""Report figures and disk usage: PNG files drawn from hand-written records (or nothing when
there is nothing to draw), and the bytes an experiment folder holds, counted exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reports.figures import (
    CURVES_PNG,
    IMPORTANCE_PNG,
    PARETO_PNG,
    curves_figure,
    importance_chart,
    learning_curves,
    pareto_scatter,
)
from reports.importance import Importance
from reports.tables import human
from tuning.ranking import pareto_front, recipe_trials, to_rows
from tuning.store import (
    Carried,
    DiskUsage,
    ExperimentMeta,
    ExperimentRecord,
    StageRecord,
    TrialRecord,
    measure,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG_SIGNATURE) and len(data) > 1000


def epochs(*pearsons: float) -> list[dict[str, Any]]:
    return [{"epoch": i, "pearson": p, "f1": 0.5 + p / 2} for i, p in enumerate(pearsons, start=1)]


TRIALS = [
    TrialRecord("aaaa", "optuna", {"lr": 1e-5}, epochs(0.5, 0.7, 0.75), planned_epochs=3, status="finished"),
    TrialRecord("bbbb", "optuna", {"lr": 1e-3}, epochs(0.2), planned_epochs=3, status="stopped"),
    TrialRecord("cccc", "optuna", {"lr": 1e-4}, [], planned_epochs=3, status="failed", error="boom"),
    TrialRecord("dddd", "later", {"lr": 3e-5}, epochs(0.6, 0.65), planned_epochs=3, status="incomplete"),
]


def test_learning_curves_draw_every_stage(tmp_path: Path) -> None:
    assert learning_curves(TRIALS, ["optuna", "later"], tmp_path) == CURVES_PNG
    assert is_png(tmp_path / CURVES_PNG)


def legend_texts(ax: Any) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None, "the panel has no legend"
    return [t.get_text() for t in legend.get_texts()]


def test_learning_curves_label_the_winner_and_the_recipe_in_a_legend() -> None:
    import matplotlib.pyplot as plt

    fig = curves_figure(TRIALS, ["optuna", "later"], recipes={"optuna": "bbbb"})
    try:
        optuna_panel, later_panel = fig.axes
        # The winner by default: the stage's best trial (aaaa's best epoch: 0.75).
        assert legend_texts(optuna_panel) == [
            "winner aaaa (pearson 0.7500)",
            "recipe bbbb (pearson 0.2000)",
            "finished",
            "stopped early by ASHA",
        ]
        assert legend_texts(later_panel) == ["winner dddd (pearson 0.6500)", "incomplete"]
        lines = optuna_panel.get_lines()
        (recipe,) = [line for line in lines if line.get_linestyle() == "--"]
        winner = max(lines, key=lambda line: line.get_linewidth())
        assert list(recipe.get_ydata()) == [0.2] and list(winner.get_ydata()) == [0.5, 0.7, 0.75]
    finally:
        plt.close(fig)


def test_other_trials_are_faint_and_a_given_winner_is_the_one_marked() -> None:
    import matplotlib.pyplot as plt

    trials = [
        TrialRecord("aaaa", "optuna", {}, epochs(0.5, 0.7), planned_epochs=2, status="finished"),
        TrialRecord("bbbb", "optuna", {}, epochs(0.6, 0.8), planned_epochs=2, status="finished"),
        TrialRecord("cccc", "optuna", {}, epochs(0.4), planned_epochs=2, status="stopped"),
    ]
    fig = curves_figure(trials, ["optuna"], winners={"optuna": "aaaa"}, recipes={"optuna": "aaaa"})
    try:
        (panel,) = fig.axes
        assert legend_texts(panel) == [
            "winner (the recipe) aaaa (pearson 0.7000)",
            "other trials",
            "finished",
            "stopped early by ASHA",
        ]
        faint = [
            line for line in panel.get_lines() if line.get_alpha() is not None and line.get_alpha() < 0.5
        ]
        assert len(faint) == 2  # bbbb and cccc
    finally:
        plt.close(fig)


def test_learning_curves_are_drawn_over_training_pairs_when_reports_carry_them() -> None:
    import matplotlib.pyplot as plt

    rows = [{**e, "pairs": 720 * e["epoch"]} for e in epochs(0.5, 0.6)]
    fig = curves_figure(
        [TrialRecord("aaaa", "optuna", {}, rows, planned_epochs=2, status="finished")], ["optuna"]
    )
    try:
        (panel,) = fig.axes
        assert panel.get_xlabel() == "training pairs seen"
        assert list(panel.get_lines()[0].get_xdata()) == [720, 1440]
    finally:
        plt.close(fig)
    fig = curves_figure(TRIALS, ["optuna"])
    assert fig.axes[0].get_xlabel() == "epoch"  # records of a version without `pairs`
    plt.close(fig)


def record_with_recipe(start_from_recipe: bool = True) -> ExperimentRecord:
    """An Optuna stage whose trial ``bbbb`` ran the file's values; a later stage with a carried value."""
    config = {
        "training": {"learning_rate": 5e-5, "batch_size": 32, "weight_decay": 0.0},
        "search": {"start_from_recipe": start_from_recipe},
    }
    stages = [
        StageRecord(
            stage="optuna", status="done", searched=["batch_size", "learning_rate"], searcher="optuna-tpe"
        ),
        StageRecord(
            stage="wd",
            status="done",
            searched=["batch_size", "weight_decay"],
            searcher="optuna-tpe",
            carried={"batch_size": Carried(value=16, from_stage="optuna", trial_id="aaaa")},
        ),
        StageRecord(stage="grid", status="done", searched=["learning_rate"], searcher="grid"),
    ]
    trials = [
        TrialRecord("aaaa", "optuna", {"batch_size": 16, "learning_rate": 1.2e-4}, epochs(0.7)),
        TrialRecord("bbbb", "optuna", {"batch_size": 32, "learning_rate": 5e-5}, epochs(0.6)),
        TrialRecord(
            "cccc", "wd", {"batch_size": 32, "weight_decay": 0.0}, epochs(0.6)
        ),  # the file's, not carried
        TrialRecord("dddd", "wd", {"batch_size": 16, "weight_decay": 0.0}, epochs(0.6)),
        TrialRecord("eeee", "grid", {"learning_rate": 5e-5}, epochs(0.6)),  # a grid enqueues no recipe
    ]
    return ExperimentRecord("x", ExperimentMeta(config=config), stages, trials, [])


def test_the_recipe_trial_is_the_one_with_the_files_values() -> None:
    assert recipe_trials(record_with_recipe()) == {"optuna": "bbbb", "wd": "dddd"}
    assert recipe_trials(record_with_recipe(start_from_recipe=False)) == {}


def test_learning_curves_without_any_scored_epoch_draw_nothing(tmp_path: Path) -> None:
    assert learning_curves(TRIALS[2:3], ["optuna"], tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_pareto_scatter(tmp_path: Path) -> None:
    rows = to_rows(TRIALS)
    assert pareto_scatter(rows, pareto_front(rows), tmp_path) == PARETO_PNG
    assert is_png(tmp_path / PARETO_PNG)


def test_pareto_scatter_without_scores_draws_nothing(tmp_path: Path) -> None:
    assert pareto_scatter(to_rows(TRIALS[2:3]), [], tmp_path) is None


def test_importance_chart_draws_the_computed_stages_only(tmp_path: Path) -> None:
    done = Importance(
        "optuna",
        params=["learning_rate", "batch_size"],
        values={
            "pearson": {"learning_rate": 0.8, "batch_size": 0.2},
            "f1": {"learning_rate": 0.6, "batch_size": 0.4},
        },
        trials=12,
        top={"pearson": 5, "f1": 5},
    )
    skipped = Importance("seeds", skipped="0 hyperparameters varied; importance compares at least 2.")
    assert importance_chart([skipped], tmp_path) is None
    assert importance_chart([done, skipped], tmp_path) == IMPORTANCE_PNG
    assert is_png(tmp_path / IMPORTANCE_PNG)


# --- disk ------------------------------------------------------------------------------------


def write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def test_measure_counts_checkpoints_export_and_tensorboard_apart(tmp_path: Path) -> None:
    write(tmp_path / "experiment.json", 100)
    write(tmp_path / "optuna" / "optuna_a" / "result.json", 50)
    write(tmp_path / "optuna" / "optuna_a" / "checkpoint_000002" / "model.safetensors", 4000)
    write(tmp_path / "optuna" / "optuna_b" / "checkpoint_000000" / "sub" / "optimizer.pt", 1000)
    write(tmp_path / "best_model" / "model.safetensors", 3000)
    write(tmp_path / "tensorboard" / "optuna_a" / "events.out", 20)
    write(tmp_path / "report.md", 7777)  # the report's own files are not counted
    write(tmp_path / "pareto.png", 8888)
    write(tmp_path / "optuna" / "report.md", 5)  # ... only at the top
    (tmp_path / "link").symlink_to(tmp_path / "best_model" / "model.safetensors")
    assert measure(tmp_path, skip=("report.md", "pareto.png")) == DiskUsage(
        total=100 + 50 + 4000 + 1000 + 3000 + 20 + 5,
        checkpoints=5000,
        best_model=3000,
        tensorboard=20,
        files=7,
    )


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.50 KiB"), (20 * 1024**2, "20.0 MiB"), (3 * 1024**3, "3.00 GiB")],
)
def test_human_sizes(size: int, text: str) -> None:
    assert human(size) == text
