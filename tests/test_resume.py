"""Driver failure: SIGKILL the search mid-way, then ``--resume`` continues from storage.

Finished trials are not re-run, an unfinished trial continues from its checkpoint (it does not
start over), a staged method resumes at the stage it was in, and Optuna's history survives.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO, run_cli
from tuning.store import read_results

pytestmark = pytest.mark.e2e

BASE = """
data: {source: korsts, train_size: 400, validation_size: 100}
model: {name_or_path: 'builtin:tiny', architecture: bi, max_length: 64}
training: {num_epochs: 4, batch_size: 16, logging_steps: 5}
search: {num_samples: 4, max_concurrent_trials: 1, scheduler: fifo, cpus_per_trial: 1}
"""


def start_search(space: Path, storage: Path, name: str, method: str = "optuna") -> subprocess.Popen:
    """The driver in its own session, so that it and the Ray processes it starts can be found."""
    log = open(storage / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    command = ["--method", method, "--space", str(space), "--storage", str(storage), "--name", name]
    return subprocess.Popen(
        [sys.executable, str(REPO / "run_search.py"), *command],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and every process of the session it leads (its Ray node), by PID."""
    victims = [p for p in psutil.process_iter(["pid"]) if _sid(p.pid) == proc.pid]
    for p in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait(timeout=30)
    psutil.wait_procs(victims, timeout=30)


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def epochs_of(trial_dir: Path) -> list[int]:
    return [int(r["epoch"]) for r in read_results(trial_dir)]


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"the search ended (rc {proc.returncode}) before the point to kill it")
        time.sleep(0.5)
    kill_session(proc)
    pytest.fail("the search did not reach the point to kill it in time")


def test_killed_optuna_search_resumes_without_rerunning_or_restarting(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(BASE + "space:\n  learning_rate: {type: loguniform, low: 1.0e-4, high: 1.0e-2}\n")
    stage = tmp_path / "r" / "optuna"
    proc = start_search(space, tmp_path, "r")

    def one_done_one_midway() -> bool:
        ended = json.loads((stage / "trials.json").read_text()) if (stage / "trials.json").is_file() else {}
        running = [d for d in stage.glob("optuna_*") if d.name.removeprefix("optuna_") not in ended]
        return bool(ended) and any(
            (d / "result.json").is_file() and 1 <= len(epochs_of(d)) < 4 for d in running
        )

    try:
        wait_for(one_done_one_midway, proc)
    finally:
        kill_session(proc)
    ended = json.loads((stage / "trials.json").read_text())
    done_id = next(iter(ended))
    done_rows = (stage / f"optuna_{done_id}" / "result.json").read_text()
    cut = next(
        d
        for d in stage.glob("optuna_*")
        if d.name.removeprefix("optuna_") not in ended and (d / "result.json").is_file()
    )
    epochs_before = epochs_of(cut)

    resumed = run_cli("--resume", str(tmp_path / "r"))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    # The finished trial was not re-run; the cut one continued instead of starting over.
    assert (stage / f"optuna_{done_id}" / "result.json").read_text() == done_rows
    after = epochs_of(cut)
    assert after[: len(epochs_before)] == epochs_before
    assert after.count(1) == 1 and after[-1] == 4
    trials = sorted(stage.glob("optuna_*"))
    assert len(trials) == 4 and all(epochs_of(d)[-1] == 4 for d in trials)
    # Optuna's study kept the first run's trials (Tune's searcher state, read back as Tune does).
    import ray.cloudpickle as pickle

    state = pickle.loads(sorted(stage.glob("searcher-state-*.pkl"))[-1].read_bytes())
    completed = [t for t in state["_ot_study"].trials if t.state.name == "COMPLETE"]
    assert len(completed) == 4
    first = json.loads((stage / f"optuna_{done_id}" / "params.json").read_text())["training"]["learning_rate"]
    assert any(t.params["training/learning_rate"] == pytest.approx(first) for t in completed)
    assert "finished" in (tmp_path / "r" / "report.md").read_text()

    again = run_cli("--resume", str(tmp_path / "r"))
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
