"""Shared fixtures: the offline data folder and small real splits of it."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from tuning.settings import SHARED_ENV, DataConfig, shared_dir

REPO = Path(__file__).resolve().parent.parent


def _worker_temp_dir() -> None:
    """Under pytest-xdist (``make test`` runs files on several workers) each worker gets its own
    temp folder, inherited by every process a test starts: Ray's sessions then live under
    ``<tmp>/kt-<worker>/klue-tune-ray``, so a search on one worker, sweeping the dead sessions it
    finds (``ray_session.sweep``), never stops the processes another worker's test killed a driver
    to leave behind. The name stays short: Ray's socket paths must fit in 107 bytes."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    folder = Path(tempfile.gettempdir(), f"kt-{worker}")
    folder.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again


_worker_temp_dir()


@pytest.fixture(scope="session")
def shared() -> Path:
    """``../shared`` (or ``$KLUE_TUNE_SHARED``); a missing folder fails loudly, never skips."""
    path = shared_dir()
    if not (path / "data" / "korsts" / "sts-train.tsv").is_file():
        pytest.fail(
            f"offline data not found under {path}: put the shared folder beside the repo or set {SHARED_ENV}."
        )
    return path


@pytest.fixture(scope="session")
def method_runs(tmp_path_factory, shared):
    """One smoke search per method, each run the first time a test asks for it (tests/method_runs.py)."""
    from tests.method_runs import MethodRuns

    return MethodRuns(tmp_path_factory.mktemp("methods"))


@pytest.fixture(scope="session")
def killed_run(tmp_path_factory, shared):
    """One optuna search SIGKILLed mid-way and resumed, shared by the tests that read it
    (tests/killed_run.py)."""
    from tests.killed_run import kill_and_resume

    return kill_and_resume(tmp_path_factory.mktemp("killed"))


@pytest.fixture(scope="session")
def small_splits(shared: Path):
    """64 training and 32 validation KorSTS pairs, plus the full test splits."""
    from tuning.data import load_splits

    return load_splits(DataConfig(source="korsts", train_size=64, validation_size=32))


def run_cli(*args: str, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess[str]:  # noqa: F821
    """Run ``run_search.py`` in a fresh interpreter, as a user would."""
    import subprocess

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "run_search.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(*args: str, cwd: Path = REPO) -> subprocess.Popen[str]:  # noqa: F821
    """Start ``run_search.py`` as a user would, in its own session (so a signal can reach it and
    its children), stdout and stderr merged, unbuffered; the caller stops it by its PID."""
    import subprocess

    return subprocess.Popen(
        [sys.executable, str(REPO / "run_search.py"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def run_main(*args: str) -> subprocess.CompletedProcess[str]:  # noqa: F821
    """``run_search.main(args)`` in this process: its exit status, stdout and stderr, as
    :func:`run_cli` gives them from a fresh interpreter. For refusals, where nothing starts: the
    imports (seconds) are paid once per test process, not once per case. The signal handlers and
    environment variables ``main`` sets are put back; an exception it lets escape fails the test,
    as its traceback would show at a user."""
    import contextlib
    import io
    import signal
    import subprocess

    import run_search

    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    environ = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = run_search.main(list(args))
            except SystemExit as exit_:  # argparse's refusals
                rc = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        os.environ.clear()
        os.environ.update(environ)
        run_search.STOP.signum = None
    return subprocess.CompletedProcess(["run_search.py", *args], rc, out.getvalue(), err.getvalue())
