"""Winners' housekeeping: checkpoints of trials stopped early are removed once they cannot win."""

from __future__ import annotations

from pathlib import Path

from reports.records import ExperimentRecord, TrialRecord
from tuning.winners import prune_checkpoints


def trial(tmp_path: Path, trial_id: str, status: str) -> TrialRecord:
    folder = tmp_path / "optuna" / f"optuna_{trial_id}"
    (folder / "checkpoint_000000").mkdir(parents=True)
    (folder / "checkpoint_000000" / "model.safetensors").write_bytes(b"x" * 100)
    return TrialRecord(trial_id=trial_id, stage="optuna", params={}, status=status, path=str(folder))


def test_stopped_trials_lose_their_checkpoints_unless_they_are_winners(tmp_path):
    trials = [
        trial(tmp_path, "a", "finished"),
        trial(tmp_path, "b", "stopped"),
        trial(tmp_path, "c", "stopped"),
    ]
    record = ExperimentRecord(str(tmp_path), {}, [], trials, [])
    freed = prune_checkpoints(record, [{"stage": "optuna", "trial_id": "c"}])
    assert freed == 100
    kept = {t.trial_id: (Path(t.path) / "checkpoint_000000").is_dir() for t in trials}
    assert kept == {"a": True, "b": False, "c": True}
