"""A stage's Tune callbacks survive ``Tuner.restore``: Ray unpickles them from ``tuner.pkl``,
pickled when the Tuner was created, so what they keep must come back from storage."""

from __future__ import annotations

import pickle
from pathlib import Path

from tuning import store
from tuning.methods._stage import TimeBudget, TrialLog
from tuning.store import TrialEnd


def test_a_restored_trial_log_reads_how_trials_ended_from_storage(tmp_path: Path) -> None:
    log = TrialLog(tmp_path, ["learning_rate"], 2)
    pickled = pickle.dumps(log)  # as Ray writes tuner.pkl: before any trial ended
    store.write_trial_ends(tmp_path, {"a_00001": TrialEnd(status="completed", epochs=0.25)})
    restored = pickle.loads(pickled)
    assert restored.ended == {"a_00001": TrialEnd(status="completed", epochs=0.25)}


def test_a_trial_log_and_budget_pickled_before_2026_11_30_still_restore(tmp_path: Path) -> None:
    store.write_trial_ends(tmp_path, {"a_00001": TrialEnd(retries=1)})
    log = TrialLog.__new__(TrialLog)
    log.__setstate__({"path": tmp_path / store.TRIALS_FILE, "stage": "s", "searched": [], "num_epochs": 2})
    assert log.stage_dir == tmp_path and log.ended["a_00001"].retries == 1
    budget = TimeBudget(60, tmp_path)
    state = {k: v for k, v in budget.__dict__.items() if k != "stage_dir"}
    old = TimeBudget.__new__(TimeBudget)
    old.__setstate__({**state, "marker": tmp_path / store.BUDGET_FILE})
    assert old.stage_dir == tmp_path and old.stop_all() is False  # 60 s are not up
