"""Winners' housekeeping: checkpoints that can no longer matter are removed after a search."""

from __future__ import annotations

from pathlib import Path

from tuning.store import ExperimentMeta, ExperimentRecord, TestScore, TrialRecord, TrialStatus
from tuning.winners import prune_checkpoints


def trial(tmp_path: Path, trial_id: str, status: TrialStatus) -> TrialRecord:
    folder = tmp_path / "optuna" / f"optuna_{trial_id}"
    (folder / "checkpoint_000000").mkdir(parents=True)
    (folder / "checkpoint_000000" / "model.safetensors").write_bytes(b"x" * 100)
    return TrialRecord(trial_id=trial_id, stage="optuna", params={}, status=status, path=str(folder))


def experiment(tmp_path: Path, trials: list[TrialRecord]) -> ExperimentRecord:
    return ExperimentRecord(str(tmp_path), ExperimentMeta(config={}), [], trials, [])


def test_stopped_trials_lose_their_checkpoints_unless_they_are_winners(tmp_path):
    trials = [
        trial(tmp_path, "a", "finished"),
        trial(tmp_path, "b", "stopped"),
        trial(tmp_path, "c", "stopped"),
    ]
    winner = TestScore(trial_id="c", stage="optuna", params={}, validation={}, test={})
    freed = prune_checkpoints(experiment(tmp_path, trials), [winner])
    assert freed == 100
    kept = {t.trial_id: (Path(t.path) / "checkpoint_000000").is_dir() for t in trials}
    assert kept == {"a": True, "b": False, "c": True}


def test_a_trial_keeps_only_its_best_epochs_checkpoint(tmp_path):
    # PBT keeps several checkpoints per trial while it runs; afterwards only the best one is needed.
    t = trial(tmp_path, "a", "finished")
    for name in ("checkpoint_000001", "checkpoint_000002"):
        (Path(t.path) / name).mkdir()
        (Path(t.path) / name / "model.safetensors").write_bytes(b"x" * 10)
    t.reports = [
        {"epoch": 1, "pearson": 0.5, "checkpoint_dir_name": "checkpoint_000000"},
        {"epoch": 2, "pearson": 0.7, "checkpoint_dir_name": "checkpoint_000001"},
        {"epoch": 3, "pearson": 0.6, "checkpoint_dir_name": "checkpoint_000002"},
    ]
    assert prune_checkpoints(experiment(tmp_path, [t]), [], "pearson") == 110
    assert sorted(p.name for p in Path(t.path).glob("checkpoint_*")) == ["checkpoint_000001"]


def test_an_unfinished_trial_keeps_every_checkpoint_for_resume(tmp_path):
    t = trial(tmp_path, "a", "incomplete")
    (Path(t.path) / "checkpoint_000001").mkdir()
    t.reports = [
        {"epoch": 1, "pearson": 0.7, "checkpoint_dir_name": "checkpoint_000000"},
        {"epoch": 2, "pearson": 0.6, "checkpoint_dir_name": "checkpoint_000001"},
    ]
    assert prune_checkpoints(experiment(tmp_path, [t]), [], "pearson") == 0
    assert len(list(Path(t.path).glob("checkpoint_*"))) == 2
