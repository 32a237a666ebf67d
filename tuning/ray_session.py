"""Ray's processes and temp folder on this machine, for a driver that starts Ray itself.

``ray.shutdown()`` stops the processes Ray started, and the kernel ends the GCS and the raylet
when their parent (the driver) dies. A driver killed by SIGKILL still leaves some behind (see
docs/reliability.md). So the driver records the processes of its Ray session (:func:`record`)
in ``<experiment>/ray_processes.json`` and in the session folder; ``--resume`` and every run
started here stop those of a driver that is gone (:func:`stop_leftovers`, by PID, only a process
that still belongs to that session: a reused PID is never touched), then prune old session
folders (:func:`sweep`). A clean shutdown deletes the record (:func:`forget`).

A process belongs to a session when its command line names the session or it holds a file open
in the session folder (Ray's processes log there; their titles, e.g. ``ray::DashboardAgent``,
hide their command lines).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from tuning import store
from tuning.store import RAY_PROCESSES_FILE as RECORD_FILE
from tuning.store import ProcessEntry, RayProcesses

KEEP_SESSIONS = 3  # dead sessions' folders kept for debugging (their logs), the newest first
# AF_UNIX socket paths: at most 107 bytes on Linux, 103 on macOS. The longest one Ray opens is
# <root>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store (pid up to 7 digits).
SOCKET_PATH_MAX = 103
SOCKET_TAIL = len("/session_2026-11-30_02-08-20_382126_4194304/sockets/plasma_store.1")
FALLBACK_ROOT = Path("/tmp/klue-tune-ray")


def temp_root() -> Path:
    """Ray's temp folder for runs started here: ``<tmp>/klue-tune-ray``.

    ``<tmp>`` is ``$TMPDIR`` or ``/tmp``; a ``$TMPDIR`` too deep for Ray's unix sockets gives
    ``/tmp/klue-tune-ray``.
    """
    root = Path(tempfile.gettempdir(), "klue-tune-ray")
    if len(str(root).encode()) + SOCKET_TAIL > SOCKET_PATH_MAX:
        return FALLBACK_ROOT
    return root


def record(exp_dir: Path) -> Path | None:
    """After ``ray.init`` started Ray here: write the session's processes; returns its folder.

    Nothing is written when ``ray.init`` joined a cluster (``$RAY_ADDRESS``): its processes are
    not this driver's.
    """
    import ray._private.worker  # no public API lists the processes a node started

    node: Any = ray._private.worker._global_node  # set while Ray runs in this process
    if not node.all_processes:
        return None
    session_dir = Path(node.get_session_dir_path())
    started = [info.process.pid for infos in node.all_processes.values() for info in infos]
    procs: dict[int, psutil.Process] = {}
    for pid in started:  # and their children so far (the raylet's agents and workers)
        try:
            root = psutil.Process(pid)
            procs.update({p.pid: p for p in [root, *root.children(recursive=True)]})
        except psutil.Error:
            continue
    payload = RayProcesses(
        session_dir=str(session_dir),
        driver=_me(),
        processes=[e for e in map(_identity, procs.values()) if e],
    )
    store.write_ray_processes(exp_dir / RECORD_FILE, payload)
    store.write_ray_processes(session_dir / RECORD_FILE, payload)
    return session_dir


def forget(exp_dir: Path) -> None:
    """After a clean ``ray.shutdown()``: nothing is left to stop."""
    rec = read_record(exp_dir / RECORD_FILE)
    if rec:
        Path(rec.session_dir, RECORD_FILE).unlink(missing_ok=True)
    (exp_dir / RECORD_FILE).unlink(missing_ok=True)


def read_record(path: Path) -> RayProcesses | None:
    """A record written by :func:`record`, or None (no file, or not one of ours: a torn file or
    another tool's is no session of this tool to stop)."""
    try:
        return store.read_ray_processes(path)
    except (OSError, store.StorageError):
        return None


def claim(exp_dir: Path) -> None:
    """Record this process as the driver of ``exp_dir`` (``driver.json``: PID and start time).

    Written as soon as the folder exists (a new run) or is taken over (``--resume``), and left in
    place when the driver ends: a record whose process is gone (or whose PID was reused: the
    start time differs) names no running driver.
    """
    store.write_driver(exp_dir, _me())


def running_driver(exp_dir: Path) -> int | None:
    """The PID of the driver running ``exp_dir`` now, if any: the one ``driver.json`` names, or
    the one that recorded the experiment's Ray session (a run started before ``driver.json``)."""
    try:
        entry: ProcessEntry | None = store.read_driver(exp_dir)
    except (OSError, store.StorageError):  # none yet, or not one of ours
        entry = None
    proc = _same_process(entry) if entry else None
    if proc is None:
        rec = read_record(exp_dir / RECORD_FILE)
        proc = _same_process(rec.driver) if rec else None
    return proc.pid if proc and proc.pid != os.getpid() else None


def stop_leftovers(record_file: Path) -> list[int]:
    """Stop the processes of a recorded session whose driver is gone; returns their PIDs."""
    rec = read_record(record_file)
    if rec is None or _same_process(rec.driver):
        return []
    procs = leftovers(rec)
    stop(procs)
    return sorted(p.pid for p in procs)


def leftovers(rec: RayProcesses) -> list[psutil.Process]:
    """The session's processes still running: those recorded, the workers its logs name
    (``worker-<id>-<job>-<pid>.out``), and their children; each checked to belong to it."""
    session_dir = Path(rec.session_dir)
    found = [p for p in map(_same_process, rec.processes) if p]
    for log in Path(session_dir, "logs").glob("worker-*.out"):
        pid = log.stem.rsplit("-", 1)[-1]
        if pid.isdigit():
            try:
                found.append(psutil.Process(int(pid)))
            except psutil.Error:
                continue
    for proc in list(found):
        try:
            found += proc.children(recursive=True)
        except psutil.Error:
            continue
    unique = {p.pid: p for p in found if p.pid != os.getpid()}
    return [p for p in unique.values() if belongs(p, session_dir)]


def belongs(proc: psutil.Process, session_dir: Path) -> bool:
    """Whether ``proc`` runs, and names the session or holds a file open in its folder."""
    folder = os.path.realpath(session_dir)
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if session_dir.name in " ".join(proc.cmdline()):
            return True
        return any(f.path.startswith(folder + os.sep) for f in proc.open_files())
    except psutil.Error:  # gone, or another user's
        return False


def stop(procs: list[psutil.Process], grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL whatever is still running after ``grace_s``; wait for them to go.

    psutil checks a process's start time before signalling it, so a PID reused meanwhile is
    left alone.
    """
    for signal_them in (psutil.Process.terminate, psutil.Process.kill):
        running = [p for p in procs if not _gone(p)]
        for proc in running:
            try:
                signal_them(proc)
            except psutil.Error:
                continue
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and not all(map(_gone, running)):
            time.sleep(0.1)


def sweep(root: Path, keep: int = KEEP_SESSIONS) -> tuple[list[int], list[Path]]:
    """Stop the leftovers of dead sessions under ``root``; remove all but the newest ``keep``
    of their folders. A session whose driver or any process still runs is never touched.

    Returns:
        The PIDs stopped and the folders removed.
    """
    stopped, dead = [], []
    folders = sorted(d for d in root.glob("session_*") if d.is_dir() and not d.is_symlink())
    for folder in folders:  # session_<date>_<time>_<usec>_<driver pid>: oldest first
        rec = read_record(folder / RECORD_FILE) or _unrecorded(folder)
        if rec is None or _same_process(rec.driver):
            continue
        procs = leftovers(rec)
        stop(procs)
        stopped += [p.pid for p in procs]
        if all(map(_gone, procs)):
            dead.append(folder)
    removed = dead[: max(len(dead) - keep, 0)]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return sorted(stopped), removed


def _unrecorded(folder: Path) -> RayProcesses | None:
    """A session without a record (its driver died before writing one): its driver is the PID
    in its name, taken as running while that PID exists (its start time is unknown)."""
    pid = folder.name.rsplit("_", 1)[-1]
    if not pid.isdigit():
        return None
    return RayProcesses(session_dir=str(folder), driver=ProcessEntry(pid=int(pid)), processes=[])


def _identity(proc: psutil.Process) -> ProcessEntry | None:
    try:
        return ProcessEntry(pid=proc.pid, name=proc.name(), started=proc.create_time())
    except psutil.Error:
        return None


def _me() -> ProcessEntry:
    """This process (its start time unknown if psutil cannot read it)."""
    return _identity(psutil.Process()) or ProcessEntry(pid=os.getpid())


def _same_process(entry: ProcessEntry) -> psutil.Process | None:
    """The recorded process if it still runs: same PID and start time (None: any start time)."""
    try:
        proc = psutil.Process(entry.pid)
        same = entry.started is None or abs(proc.create_time() - entry.started) < 1.0
        return proc if same and not _gone(proc) else None
    except (psutil.Error, ValueError):  # gone, another user's, or a PID that cannot be one
        return None


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def autoscaler_node_types() -> list[dict[str, float]]:
    """Resources of each node type the running cluster's autoscaler may start, as it reports
    them to Ray's GCS (the v2 autoscaler does; `ray up`'s v1 does not: then empty). Ray has no
    public API for this; like the process list above, it is read here and nowhere else."""
    from ray._private.state import state

    config = state.get_cluster_config()
    return [dict(group.resources) for group in config.node_group_configs] if config else []
