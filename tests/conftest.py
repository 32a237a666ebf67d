"""Shared fixtures: the offline data folder and small real splits of it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tuning.config import SHARED_ENV, DataConfig, shared_dir

REPO = Path(__file__).resolve().parent.parent


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
