"""A search whose driver is SIGKILLed mid-way and then resumed: run once per test session and
read by test_resume (nothing re-run, the cut trial continued), test_study (the same Optuna
study goes on) and test_ray_cleanup (the Ray processes the dead driver left are stopped).

Each of those checks used to start and kill its own search; they look at different parts of
the same event, so one run serves them all (issue 27: the suite's time is its searches).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO, run_cli
from tuning import ray_session
from tuning.store import read_results

BASE = """
data: {source: korsts, train_size: 400, validation_size: 100}
model: {name_or_path: 'builtin:tiny', architecture: bi, max_length: 64}
training: {num_epochs: 4, batch_size: 16, logging_steps: 5}
search: {num_samples: 4, max_concurrent_trials: 1, scheduler: fifo, cpus_per_trial: 1}
"""
SPACE = BASE + "space:\n  learning_rate: {type: loguniform, low: 1.0e-4, high: 1.0e-2}\n"


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


def session_processes(session: Path) -> dict[int, str]:
    """PID -> command line of every process naming ``session`` or holding a file open in it."""
    out = {}
    for proc in psutil.process_iter():
        try:
            cmdline = " ".join(proc.cmdline())
            files = [f.path for f in proc.open_files()]
            if proc.status() != psutil.STATUS_ZOMBIE and (
                session.name in cmdline or any(f.startswith(f"{session}/") for f in files)
            ):
                out[proc.pid] = cmdline
        except psutil.Error:
            continue
    return out


@dataclass
class KilledRun:
    """What was on disk and alive when the driver died, and what the resumed run printed."""

    exp: Path
    stage: Path
    ended: dict[str, dict]
    """``trials.json`` at the kill: the trials Tune had ended."""
    done_rows: dict[str, str]
    """Each ended trial's ``result.json`` text at the kill."""
    cut: Path
    """The trial that was training when the driver died."""
    epochs_before: list[int]
    """The cut trial's reported epochs at the kill."""
    folders_before: set[str]
    """Tune ids of every trial folder at the kill."""
    study_complete: set[str]
    """Tune ids of the trials complete in Optuna's journal at the kill."""
    session: Path
    """The Ray session the killed driver started."""
    survivors: dict[int, str] = field(default_factory=dict)
    """Processes of that session alive 5 s after the kill: PID -> command line."""
    resumed: subprocess.CompletedProcess | None = None
    still_alive: list[int] = field(default_factory=list)
    """Survivors still alive (and still the session's) after the resumed run ended."""


def kill_and_resume(storage: Path) -> KilledRun:
    """Start an optuna search (4 trials, one at a time, 4 epochs each); SIGKILL its driver alone
    (``kill -9 PID``: its Ray processes outlive it) once one trial has ended and the next has
    reported an epoch but not all; snapshot what is there; ``--resume`` it."""
    from tuning.methods._study import TUNE_TRIAL_ATTR, journal
    from tuning.store import STUDY_FILE

    space = storage / "space.yaml"
    space.write_text(SPACE)
    exp = storage / "r"
    stage = exp / "optuna"
    proc = start_search(space, storage, "r")

    def ended() -> dict[str, dict]:
        file = stage / "trials.json"
        return json.loads(file.read_text()) if file.is_file() else {}

    def one_done_one_midway() -> bool:
        done = ended()
        running = [d for d in stage.glob("optuna_*") if d.name.removeprefix("optuna_") not in done]
        return bool(done) and any(
            (d / "result.json").is_file() and 1 <= len(epochs_of(d)) < 4 for d in running
        )

    run: KilledRun | None = None
    survivors: dict[int, str] = {}
    try:
        try:
            wait_for(one_done_one_midway, proc)
            session = Path(json.loads((exp / ray_session.RECORD_FILE).read_text())["session_dir"])
            os.kill(proc.pid, signal.SIGKILL)  # the driver alone, as `kill -9 PID` does
            proc.wait(timeout=30)
        except BaseException:
            kill_session(proc)
            raise
        time.sleep(5)  # what dies with the driver has died
        survivors = session_processes(session)
        done = ended()
        cut = next(
            d
            for d in stage.glob("optuna_*")
            if d.name.removeprefix("optuna_") not in done and (d / "result.json").is_file()
        )
        import optuna
        from optuna.trial import TrialState

        study = optuna.load_study(study_name="optuna", storage=journal(exp / STUDY_FILE))
        run = KilledRun(
            exp=exp,
            stage=stage,
            ended=done,
            done_rows={i: (stage / f"optuna_{i}" / "result.json").read_text() for i in done},
            cut=cut,
            epochs_before=epochs_of(cut),
            folders_before={d.name.removeprefix("optuna_") for d in stage.glob("optuna_*")},
            study_complete={
                t.user_attrs[TUNE_TRIAL_ATTR] for t in study.trials if t.state == TrialState.COMPLETE
            },
            session=session,
            survivors=survivors,
        )
        run.resumed = run_cli("--resume", str(exp))
        run.still_alive = [
            pid for pid in survivors if psutil.pid_exists(pid) and pid in session_processes(session)
        ]
        return run
    finally:
        for pid in survivors:  # whatever the tool failed to stop, by the PIDs seen
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
