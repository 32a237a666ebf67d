"""Driver failure: SIGKILL the search mid-way, then ``--resume`` continues from storage.

Finished trials are not re-run, an unfinished trial continues from its checkpoint (it does not
start over), a staged method resumes at the stage it was in, and Optuna's history survives.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.killed_run import BASE, KilledRun, epochs_of, kill_session, start_search, wait_for

pytestmark = pytest.mark.e2e


def test_killed_optuna_search_resumes_without_rerunning_or_restarting(killed_run: KilledRun):
    run = killed_run
    assert run.resumed is not None
    assert run.resumed.returncode == 0, run.resumed.stdout[-3000:] + run.resumed.stderr[-3000:]
    stage = run.stage
    # The finished trial was not re-run; the cut one continued instead of starting over.
    assert run.done_rows
    for trial_id, rows in run.done_rows.items():
        assert (stage / f"optuna_{trial_id}" / "result.json").read_text() == rows
    after = epochs_of(run.cut)
    assert after[: len(run.epochs_before)] == run.epochs_before
    assert after.count(1) == 1 and after[-1] == 4
    trials = sorted(stage.glob("optuna_*"))
    assert len(trials) == 4 and all(epochs_of(d)[-1] == 4 for d in trials)
    # Optuna's study kept the first run's trials (Tune's searcher state, read back as Tune does).
    import ray.cloudpickle as pickle

    state = pickle.loads(sorted(stage.glob("searcher-state-*.pkl"))[-1].read_bytes())
    completed = [t for t in state["_ot_study"].trials if t.state.name == "COMPLETE"]
    assert len(completed) == 4
    done_id = next(iter(run.done_rows))
    first = json.loads((stage / f"optuna_{done_id}" / "params.json").read_text())["training"]["learning_rate"]
    assert any(t.params["training/learning_rate"] == pytest.approx(first) for t in completed)
    assert "finished" in (run.exp / "report.md").read_text()

    again = run_cli("--resume", str(run.exp))
    assert again.returncode == 0 and "already finished" in again.stdout


def test_killed_staged_search_resumes_at_its_stage(tmp_path):
    space = tmp_path / "staged.yaml"
    space.write_text(
        BASE
        + "stages:\n"
        + "  - {name: lr, scheduler: fifo, space: {learning_rate: {type: grid, values: [1.0e-3, 3.0e-3]}}}\n"
        + "  - {name: batch, scheduler: fifo, space: {batch_size: {type: grid, values: [8, 32]}}}\n"
    )
    exp = tmp_path / "s"
    proc = start_search(space, tmp_path, "s", method="ablation")
    try:
        wait_for(lambda: any((d / "result.json").is_file() for d in (exp / "batch").glob("batch_*")), proc)
    finally:
        kill_session(proc)
    stage1 = {d.name: d.joinpath("result.json").read_text() for d in (exp / "lr").glob("lr_*")}

    resumed = run_cli("--resume", str(exp))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "[lr] already done" in resumed.stdout
    assert {d.name: d.joinpath("result.json").read_text() for d in (exp / "lr").glob("lr_*")} == stage1
    batch = json.loads((exp / "batch" / "stage.json").read_text())
    assert batch["status"] == "done" and batch["resumed"] == 1
    assert batch["carried"]["learning_rate"]["from_stage"] == "lr"
    assert sorted(len(epochs_of(d)) >= 4 for d in (exp / "batch").glob("batch_*")) == [True, True]
