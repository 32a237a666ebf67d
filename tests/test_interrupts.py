"""Stop signals: Ctrl-C (SIGINT) or SIGTERM at several points of a real search, then ``--resume``.

SIGINT goes to the driver's whole process group, as a terminal's Ctrl-C does; SIGTERM to the driver. After it the
experiment is unfinished, nothing is exported, the exact ``--resume`` command is printed, the exit
status is 128 + the signal, and ``--resume`` completes without re-running a finished trial.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, start_cli
from tuning.store import read_results

pytestmark = pytest.mark.e2e


def signal_at(storage: Path, marker: str, signals: list[int], *flags: str) -> tuple[int, str]:
    """Run a smoke search; when a line holds ``marker``, send ``signals`` to its process group."""
    command = ["--smoke-test", "--storage", str(storage), "--name", "r", *flags]
    proc = start_cli(*command)
    lines, sent = [], False
    try:
        for line in proc.stdout:
            lines.append(line)
            if not sent and marker in line:
                for signum in signals:
                    # Ctrl-C reaches the terminal's whole process group (Ray's own processes
                    # block SIGINT); SIGTERM is sent to the driver, as `kill PID` does: to the
                    # group it would end Ray's GCS and raylet too, which no driver can survive.
                    if signum == signal.SIGINT:
                        os.killpg(proc.pid, signum)
                    else:
                        os.kill(proc.pid, signum)
                    time.sleep(0.5)  # two signals at once would reach Python as one
                sent = True
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = "".join(lines)
    assert sent, f"{marker!r} never appeared:\n{output[-3000:]}"
    return rc, output


def ended_trials(exp: Path) -> dict[str, str]:
    """Trials Tune recorded as ended, by folder -> their result rows (to see they are not re-run)."""
    out = {}
    for trials_file in exp.glob("*/trials.json"):
        for trial_id in json.loads(trials_file.read_text()):
            folder = next(trials_file.parent.glob(f"*_{trial_id}"))
            out[str(folder)] = (folder / "result.json").read_text()
    return out


def check_stopped_then_resumed(rc: int, output: str, exp: Path, expected_rc: int) -> None:
    assert rc == expected_rc, output[-3000:]
    meta = json.loads((exp / "experiment.json").read_text())
    assert not meta.get("finished")
    assert not (exp / "best_model").exists() and not (exp / "test_scores.json").exists()
    command = shlex.join([sys.executable, str(REPO / "run_search.py"), "--resume", str(exp)])
    assert command in output, output[-3000:]
    assert "Traceback" not in output.split("stopping the search")[-1]
    before = ended_trials(exp)

    resumed = run_cli("--resume", str(exp))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert json.loads((exp / "experiment.json").read_text())["finished"] is True
    assert (exp / "best_model" / "best.json").is_file()
    for folder, rows in before.items():  # a trial that ended before the stop is not re-run
        assert Path(folder, "result.json").read_text() == rows
    for stage in exp.glob("*/stage.json"):
        assert json.loads(stage.read_text())["status"] == "done"
        for trial in stage.parent.glob("*_*"):
            if (trial / "result.json").is_file():
                epochs = [r["epoch"] for r in read_results(trial)]
                assert epochs == sorted(epochs) and len(set(epochs)) == len(epochs)  # none started over


@pytest.mark.parametrize(("signum", "expected_rc"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_trial_stops_cleanly_and_resume_finishes(tmp_path, signum, expected_rc):
    rc, output = signal_at(tmp_path, "epoch 1", [signum], "--method", "optuna", "--profile", "cpu")
    exp = tmp_path / "r"
    assert json.loads((exp / "optuna" / "stage.json").read_text())["status"] == "interrupted"
    check_stopped_then_resumed(rc, output, exp, expected_rc)


def test_a_signal_before_tune_starts_leaves_a_resumable_experiment(tmp_path):
    rc, output = signal_at(
        tmp_path, "resolved config saved", [signal.SIGTERM], "--method", "optuna", "--profile", "cpu"
    )
    check_stopped_then_resumed(rc, output, tmp_path / "r", 143)


def test_a_signal_between_stages_stops_before_the_next_stage(tmp_path):
    # The grid method prints its first stage's winner as that stage ends: the signal lands as stage 2 starts.
    rc, output = signal_at(tmp_path, "] winner", [signal.SIGINT], "--method", "grid", "--profile", "cpu")
    exp = tmp_path / "r"
    statuses = [json.loads(f.read_text())["status"] for f in sorted(exp.glob("*/stage.json"))]
    assert "interrupted" in statuses or len(statuses) == 1, statuses
    check_stopped_then_resumed(rc, output, exp, 130)


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    rc, output = signal_at(
        tmp_path, "epoch 1", [signal.SIGINT, signal.SIGINT], "--method", "optuna", "--profile", "cpu"
    )
    check_stopped_then_resumed(rc, output, tmp_path / "r", 130)
