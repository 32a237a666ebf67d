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
    importance_chart,
    learning_curves,
    pareto_scatter,
)
from reports.importance import Importance
from reports.tables import human
from tuning.ranking import pareto_front, to_rows
from tuning.store import DiskUsage, TrialRecord, measure

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
