"""Ray's processes and temp folder: what a SIGKILLed driver leaves is stopped, old sessions pruned.

Real processes throughout: ``sleep``-like Python children stand in for a session's leftovers in
the fast tests; the last test SIGKILLs a real smoke search and resumes it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from tests.killed_run import KilledRun
from tuning import ray_session

SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


def dead_pid() -> int:
    """The PID of a process that has ended (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def session_folder(root: Path, day: str, driver: int) -> Path:
    folder = root / f"session_{day}_00-00-00_000000_{driver}"
    (folder / "logs").mkdir(parents=True)
    return folder


def worker_in(session: Path) -> subprocess.Popen:
    """A process that logs into ``session`` the way a Ray worker does: ``worker-<id>-<job>-<pid>.out``."""
    pending = session / "logs" / "pending.out"
    with pending.open("w") as log:
        proc = subprocess.Popen(SLEEP, stdout=log)
    pending.rename(session / "logs" / f"worker-abc-01000000-{proc.pid}.out")  # its open file follows
    return proc


def entry(proc: subprocess.Popen, shift: float = 0.0) -> dict:
    return {"pid": proc.pid, "name": "x", "started": psutil.Process(proc.pid).create_time() + shift}


def write_record(path: Path, session: Path, driver: dict, processes: list[dict]) -> Path:
    path.write_text(json.dumps({"session_dir": str(session), "driver": driver, "processes": processes}))
    return path


@pytest.fixture
def children():
    """Processes a test starts; each is killed by its PID at the end."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_leftovers_of_a_dead_driver_are_stopped_and_nothing_else(tmp_path, children):
    session = session_folder(tmp_path, "2026-01-01", dead_pid())
    worker = worker_in(session)  # found through the session's log names
    named = subprocess.Popen([*SLEEP, str(session)])  # recorded; its command line names the session
    foreign = subprocess.Popen(SLEEP)  # recorded, but nothing ties it to the session
    reused = subprocess.Popen([*SLEEP, str(session)])  # recorded with another start time: a reused PID
    children += [worker, named, foreign, reused]
    record = write_record(
        tmp_path / ray_session.RECORD_FILE,
        session,
        {"pid": dead_pid(), "started": 0.0},
        [entry(named), entry(foreign), entry(reused, shift=-100.0)],
    )

    assert ray_session.stop_leftovers(record) == sorted([worker.pid, named.pid])
    assert worker.wait(timeout=10) == -signal.SIGTERM
    assert named.wait(timeout=10) == -signal.SIGTERM
    assert foreign.poll() is None and reused.poll() is None


def test_nothing_is_stopped_while_the_recorded_driver_runs(tmp_path, children):
    session = session_folder(tmp_path, "2026-01-01", os.getpid())
    worker = worker_in(session)
    children.append(worker)
    me = {"pid": os.getpid(), "started": psutil.Process().create_time()}
    write_record(tmp_path / ray_session.RECORD_FILE, session, me, [entry(worker)])

    # The caller is never "another" driver (a run claims its own folder): None here ...
    assert ray_session.running_driver(tmp_path) is None
    # ... but a live recorded driver that is another process is found.
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    children.append(driver)
    other = {"pid": driver.pid, "started": psutil.Process(driver.pid).create_time()}
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    write_record(elsewhere / ray_session.RECORD_FILE, session, other, [entry(worker)])
    assert ray_session.running_driver(elsewhere) == driver.pid
    assert ray_session.stop_leftovers(tmp_path / ray_session.RECORD_FILE) == []
    assert ray_session.sweep(tmp_path, keep=0) == ([], [])
    assert worker.poll() is None and session.is_dir()


@pytest.mark.parametrize(
    "text",
    [
        '{"session_dir": "/s", "driver": {"pid": 1}',  # torn
        "[]",
        '{"session_dir": "/s", "driver": {"pid": 1}}',  # no processes: not a record of ours
        '{"session_dir": "/s", "driver": {"pid": 1}, "processes": [], "cluster": "x"}',  # another tool's
    ],
)
def test_a_record_that_is_not_ours_is_no_session_to_stop(tmp_path, text):
    path = tmp_path / ray_session.RECORD_FILE
    path.write_text(text)
    assert ray_session.read_record(path) is None
    assert ray_session.stop_leftovers(path) == [] and ray_session.running_driver(tmp_path) is None
    (tmp_path / "driver.json").write_text(text)
    assert ray_session.running_driver(tmp_path) is None


def test_the_driver_record_keeps_its_format(tmp_path):
    ray_session.claim(tmp_path)
    me = json.loads((tmp_path / "driver.json").read_text())
    assert me["pid"] == os.getpid() and set(me) == {"pid", "name", "started"}
    assert ray_session.running_driver(tmp_path) is None  # the caller is never "another" driver


def test_sweep_stops_dead_sessions_leftovers_and_keeps_the_newest_dead_folders(tmp_path, children):
    live = session_folder(tmp_path, "2025-12-31", os.getpid())  # the oldest, but its driver runs
    dead = [session_folder(tmp_path, f"2026-01-0{day}", dead_pid()) for day in range(1, 5)]
    with_leftover = session_folder(tmp_path, "2026-01-05", dead_pid())
    worker = worker_in(with_leftover)
    children.append(worker)
    (tmp_path / "session_latest").symlink_to(live)

    stopped, removed = ray_session.sweep(tmp_path, keep=2)

    assert stopped == [worker.pid] and worker.wait(timeout=10) == -signal.SIGTERM
    assert removed == dead[:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, dead[3].name, with_leftover.name, "session_latest"]
    )


def test_ray_temp_folder_fits_rays_unix_socket_paths(monkeypatch):
    from ray._private.utils import validate_socket_filepath  # Ray's own check, run at ray.init

    tail = "session_2026-11-30_02-08-20_382126_4194304/sockets/plasma_store"
    monkeypatch.setattr(tempfile, "tempdir", "/tmp")
    assert ray_session.temp_root() == Path("/tmp/klue-tune-ray")
    validate_socket_filepath(f"{ray_session.temp_root()}/{tail}")

    deep = "/tmp/pytest-of-someone/pytest-123/test_a_rather_long_test_name0/tmp"
    with pytest.raises(OSError):  # Ray refuses to start in <deep>/klue-tune-ray ...
        validate_socket_filepath(f"{deep}/klue-tune-ray/{tail}")
    monkeypatch.setattr(tempfile, "tempdir", deep)
    assert ray_session.temp_root() == Path("/tmp/klue-tune-ray")  # ... so that folder is not used


@pytest.mark.e2e
def test_resume_stops_the_ray_processes_a_killed_driver_left(killed_run: KilledRun):
    """The driver alone was SIGKILLed mid-search (tests/killed_run.py): its Ray processes outlived
    it; the resumed run stops them before it starts Ray, and shuts its own down cleanly."""
    exp, resumed = killed_run.exp, killed_run.resumed
    assert killed_run.session.parent == ray_session.temp_root()
    print(f"alive 5 s after the driver's SIGKILL: {killed_run.survivors}")
    assert killed_run.survivors, "nothing outlived the driver here: this test would show nothing"
    assert resumed is not None
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert json.loads((exp / "experiment.json").read_text())["finished"] is True
    # The resumed run stopped them (Ray's agents end by themselves only 30-90 s later).
    stopped = re.search(r"stopped \d+ Ray processes left by a killed run \(PIDs \[(.*)\]\)", resumed.stdout)
    assert stopped and set(killed_run.survivors) <= {int(pid) for pid in stopped.group(1).split(", ")}, (
        resumed.stdout
    )
    assert killed_run.still_alive == [], {pid: killed_run.survivors[pid] for pid in killed_run.still_alive}
    assert not (exp / ray_session.RECORD_FILE).exists()  # the resumed run shut down cleanly
