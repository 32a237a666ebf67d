"""Damage and races: what the tool says when its own files are broken or two runs collide.

Everything is real: weights files cut short or overwritten with random bytes, a ``result.json``
cut mid-line, a deleted trial folder, two ``run_search.py`` processes started at once with one
``--name`` (each reading its data from a named pipe, so the test decides which one reaches the
folder first), and a report asked for while the search still runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli, run_main, start_cli
from tests.test_reports import (
    storage,  # noqa: F401 - the fixture: a stored two-stage experiment
    table_after,
)
from tests.test_serve import export_tiny
from tuning.model import ModelError
from tuning.store import TestScore
from tuning.winners import export_best

SHARED_TRAIN = "data/korsts/sts-train.tsv"


def damage(weights: Path, how: str) -> None:
    """Cut the file in half, or overwrite it with as many random bytes."""
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if how == "truncated" else os.urandom(len(data)))


def last_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The one message: exit 2, no traceback, the last line an ``error:``."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr[-3000:]
    return last


# --- a damaged model: one message, from serve, the export step and report ----------------------


@pytest.mark.parametrize(
    ("how", "cause"),
    [("truncated", "incomplete metadata, file not fully covered"), ("random", "header too large")],
)
def test_serve_on_damaged_weights_is_one_message(tmp_path: Path, how: str, cause: str) -> None:
    folder = export_tiny(tmp_path / "best_model")
    damage(folder / "model.safetensors", how)
    with socket.socket() as probe:  # a free port: the port is checked before the model is loaded
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = run_cli("serve", str(folder), "--port", str(port), timeout=120)
    line = last_error(proc)
    assert f"the weights file {folder / 'model.safetensors'} cannot be loaded" in line, line
    assert cause in line and "restore the folder from a copy" in line, line
    assert len(proc.stderr.strip().splitlines()) <= 3, proc.stderr  # no pages of loader output


def test_export_of_a_damaged_checkpoint_is_one_model_error(tmp_path: Path) -> None:
    checkpoint = export_tiny(tmp_path / "exp" / "optuna" / "optuna_aaaa" / "checkpoint_000001")
    (checkpoint.parent / "params.json").write_text("{}")
    damage(checkpoint / "model.safetensors", "truncated")
    winner = TestScore(
        trial_id="aaaa", stage="optuna", params={}, validation={}, test={}, checkpoint=str(checkpoint)
    )
    with pytest.raises(ModelError) as err:
        export_best(winner, tmp_path / "exp")
    message = str(err.value)
    assert f"the weights file {checkpoint / 'model.safetensors'} cannot be loaded" in message
    assert "delete that checkpoint folder" in message and "--resume" in message
    assert "\n" not in message
    assert not (tmp_path / "exp" / "best_model").exists()


# --- report: says what it could not read -------------------------------------------------------


def test_report_names_the_files_it_cannot_read_and_marks_the_trial(storage: Path) -> None:  # noqa: F811
    result = storage / "optuna" / "optuna_aaaa" / "result.json"
    text = result.read_text()
    result.write_text(text[: len(text.splitlines()[0]) // 2])  # cut mid-line, in the first report
    damage(export_tiny(storage / "best_model") / "model.safetensors", "random")

    proc = run_main("report", str(storage))
    line = last_error(proc)
    assert line.startswith(f"error: {storage / 'report.md'} is written, but 2 files could not be read")
    assert f"{result}: line 1 of 1 cut off" in line and "0 reports read" in line
    assert f"the weights file {storage / 'best_model' / 'model.safetensors'} cannot be loaded" in line

    md = (storage / "report.md").read_text(encoding="utf-8")
    assert md.index("## Files that could not be read") < md.index("- Method:")
    assert f"- {result}: line 1 of 1 cut off" in md
    row = next(r for r in table_after(md, "## Ranking by validation F1") if r[1] == "optuna/aaaa")
    assert row[-1].startswith("unreadable: a file of the trial could not be read (no report could be read")
    assert "1 unreadable (a file of the trial could not be read)" in md


def test_report_on_a_missing_folder_is_one_clean_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-run"
    line = last_error(run_main("report", str(missing)))
    assert line == (
        f"error: report {missing}: {missing} does not exist; pass an experiment folder "
        "<storage>/<name> as written by run_search.py."
    )


# --- two runs started at once with one --name; a report while the search runs ---------------------


def korsts_rows(shared: Path, n: int) -> str:
    """The header and the first ``n`` pairs of the shared KorSTS training file (TSV)."""
    return "\n".join((shared / SHARED_TRAIN).read_text(encoding="utf-8").splitlines()[: n + 1]) + "\n"


@pytest.mark.e2e
def test_two_runs_with_one_name_one_wins_the_other_is_told_and_report_waits(
    tmp_path: Path, shared: Path
) -> None:
    """Both runs pass the "already exists" check while they wait on their data pipes; the winner is
    let through first, so the loser meets the folder at ``mkdir``: the race the lock must win."""
    rows = korsts_rows(shared, 400)
    pipes = [tmp_path / "first.tsv", tmp_path / "second.tsv"]
    for pipe in pipes:
        os.mkfifo(pipe)
    common = ["--smoke-test", "--method", "optuna", "--profile", "cpu", "--storage", str(tmp_path)]
    # 30 epochs, not the smoke test's 2: the winner must still be searching when `report` is asked
    # (with 2, under load, it reached its own report first).
    common += ["--training.num_epochs", "30"]
    procs = [start_cli(*common, "--name", "r", "--data", str(pipe)) for pipe in pipes]
    outputs: list[list[str]] = [[], []]
    readers = [
        threading.Thread(target=lambda p=p, out=out: out.extend(p.stdout), daemon=True)
        for p, out in zip(procs, outputs)
    ]
    for reader in readers:
        reader.start()
    exp = tmp_path / "r"
    try:
        pipes[0].write_text(rows)  # blocks until the first run opens its pipe, past the name check
        deadline = time.time() + 120
        while not (exp / "experiment.json").is_file():
            assert procs[0].poll() is None, "".join(outputs[0])[-3000:]
            assert time.time() < deadline, "".join(outputs[0])[-3000:]
            time.sleep(0.2)
        pipes[1].write_text(rows)  # the second run read the pipe's data only now: the folder exists
        assert procs[1].wait(timeout=120) == 2, "".join(outputs[1])[-3000:]
        readers[1].join(timeout=10)
        loser = "".join(outputs[1])
        assert "Traceback" not in loser and "--storage must name a folder" not in loser, loser[-3000:]
        assert loser.strip().splitlines()[-1] == (
            f"error: another run holds the name r: it created {exp} while this one was starting "
            f"(process {procs[0].pid}); pass another --name (results are never overwritten)."
        ), loser[-3000:]

        # The winner still runs: a report now would call it finished; it is refused, nothing written.
        live = run_cli("report", str(exp), timeout=120)
        line = last_error(live)
        assert f"process {procs[0].pid} is still running this experiment" in line, line
        assert procs[0].poll() is None, "the search ended before the report was asked for"
        assert not (exp / "report.md").exists()
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)  # as `kill PID`: the driver stops cleanly (143)
        for proc in procs:
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
    assert procs[0].returncode == 143, "".join(outputs[0])[-3000:]
    assert json.loads((exp / "experiment.json").read_text())["config"]["name"] == "r"  # the winner's, whole

    # Once the driver has ended, the same report is written.
    done = run_cli("report", str(exp), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (exp / "report.md").is_file()


# --- --resume after a trial's folder was deleted ----------------------------------------------------


@pytest.mark.e2e
def test_resume_says_which_trials_run_again_from_scratch(tmp_path: Path) -> None:
    command = ["--smoke-test", "--method", "optuna", "--profile", "cpu", "--storage", str(tmp_path)]
    # FIFO: the restarted trial trains every epoch whatever the other scored (under ASHA it could
    # be stopped at the first rung, seen once under load: result.json then held only [1.0]).
    command += ["--search.scheduler", "fifo", "--training.num_epochs", "3"]
    proc = start_cli(*command, "--name", "r")
    lines: list[str] = []
    cut = None
    try:
        for line in proc.stdout:
            lines.append(line)
            # Cut at epoch 2, not 1: Tune holds a trial's next result until the driver has
            # recorded the checkpoint of the one before, so the saved state surely names a
            # checkpoint of the cut trial, which its deleted folder no longer has (the case
            # Ray's own restore fails on, at every retry).
            found = re.search(r"\[optuna\] (\w+) epoch 2(\.0)?/3", line)
            if found and cut is None:
                cut = found.group(1)
                os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = "".join(lines)
    assert cut and rc == 143, output[-3000:]
    stage = tmp_path / "r" / "optuna"
    ended = json.loads((stage / "trials.json").read_text()) if (stage / "trials.json").is_file() else {}
    assert cut not in ended, output[-3000:]  # cut mid-trial: Tune continues it from its checkpoint
    shutil.rmtree(stage / f"optuna_{cut}")

    resumed = run_cli("--resume", str(tmp_path / "r"), timeout=300)
    out = resumed.stdout
    assert resumed.returncode == 0, out[-3000:] + resumed.stderr[-3000:]
    said = [line for line in out.splitlines() if "runs again from scratch" in line]
    assert (
        f"[optuna] {cut} runs again from scratch: its folder {stage / f'optuna_{cut}'} was deleted "
        "(it had reached epoch 2)"
    ) in said, out[-3000:]
    # A trial that was running but had not reported yet (two run at once here) starts over too.
    others = [line for line in said if f" {cut} " not in line]
    assert all(line.endswith("it was cut before it saved its first checkpoint") for line in others), said
    ran = f"[optuna] {cut} epoch 1"
    assert ran in out, out[-6000:] + resumed.stderr[-6000:]
    assert out.index("runs again from scratch") < out.index(ran)  # said before it ran
    epochs = [
        json.loads(r)["epoch"] for r in (stage / f"optuna_{cut}" / "result.json").read_text().splitlines()
    ]
    assert epochs == [1, 2, 3], epochs  # it did start over, from epoch 1, and finished
    ended = json.loads((stage / "trials.json").read_text())
    assert ended[cut]["status"] == "completed" and not ended[cut]["retries"], ended[cut]
