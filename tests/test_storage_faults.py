"""Storage faults are one-line messages that name the path and the fix, and lose nothing.

Read-only and full file systems are real tmpfs mounts (root can write through ``chmod``, not
through a read-only mount); torn and foreign JSON files are written by hand.
"""

from __future__ import annotations

import errno
import json
import subprocess
from pathlib import Path

import pytest
import ray

from tests.conftest import run_cli, run_main
from tuning.store import write_json


@pytest.fixture
def mount(tmp_path):
    """Mount a tmpfs with the given options at a fresh folder; unmounted afterwards."""
    mounted: list[Path] = []

    def make(options: str) -> Path:
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True
        )
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
        mounted.append(target)
        return target

    yield make
    for target in mounted:
        subprocess.run(["umount", str(target)], check=True)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    return last


def test_storage_naming_a_file_is_refused_before_ray_starts(tmp_path):
    not_a_folder = tmp_path / "runs.txt"
    not_a_folder.write_text("notes")
    proc = run_cli("--smoke-test", "--profile", "cpu", "--storage", str(not_a_folder), "--name", "r")
    line = one_error_line(proc)
    assert str(not_a_folder) in line and "--storage must name a folder, not a file" in line
    assert "Started a local Ray" not in proc.stdout + proc.stderr
    assert not_a_folder.read_text() == "notes"


def test_read_only_storage_is_refused_before_ray_starts(mount):
    storage = mount("ro,size=1m")
    proc = run_cli("--smoke-test", "--profile", "cpu", "--storage", str(storage), "--name", "r")
    line = one_error_line(proc)
    assert "Read-only file system" in line and str(storage / "r") in line and "writable" in line
    assert "Started a local Ray" not in proc.stdout + proc.stderr


def test_write_json_on_a_full_disk_keeps_the_old_file_and_leaves_no_tmp(mount):
    storage = mount("size=64k")
    target = storage / "experiment.json"
    write_json(target, {"config": {"name": "old"}})
    with pytest.raises(OSError) as err:
        write_json(target, {"config": {"name": "new"}, "blob": "x" * 200_000})
    assert err.value.errno == errno.ENOSPC
    assert json.loads(target.read_text()) == {"config": {"name": "old"}}
    assert sorted(p.name for p in storage.iterdir()) == ["experiment.json"]


@pytest.mark.e2e
def test_a_disk_that_fills_up_mid_search_is_one_message_and_corrupts_nothing(mount):
    storage = mount("size=400k")  # room for the experiment's records, not for a checkpoint
    proc = run_cli(
        "--smoke-test", "--method", "optuna", "--profile", "cpu", "--storage", str(storage), "--name", "r"
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: No space left on device") and str(storage) in last, last
    assert "--storage on a disk with room" in last
    # The trials' failures are one line each, no traceback (issue 29: 235 lines before).
    assert "Traceback" not in proc.stderr and "--- Logging error ---" not in proc.stderr, proc.stderr[-3000:]
    failed = [line for line in proc.stderr.splitlines() if "Trial task failed" in line]
    assert failed and all("No space left on device (traceback: " in line for line in failed), failed
    exp = storage / "r"
    assert "config" in json.loads((exp / "experiment.json").read_text())
    for stored in exp.rglob("*.json"):
        if stored.name in ("experiment.json", "stage.json", "trials.json"):
            json.loads(stored.read_text())  # whole, not torn
    assert not list(exp.rglob("*.tmp"))


def fake_experiment(root: Path, meta: str, stage: str | None = None) -> Path:
    exp = root / "exp"
    exp.mkdir()
    (exp / "experiment.json").write_text(meta)
    if stage is not None:
        (exp / "optuna").mkdir()
        (exp / "optuna" / "stage.json").write_text(stage)
    return exp


@pytest.mark.parametrize("command", [["report"], ["--resume"]])
def test_a_truncated_experiment_json_is_named_with_the_fix(tmp_path, command):
    exp = fake_experiment(tmp_path, '{"config": {"name": "x", "method": "opt')
    ray_before = ray.is_initialized()
    proc = run_main(*command, str(exp))
    line = one_error_line(proc)
    assert f"{exp / 'experiment.json'} is not valid JSON" in line and "restore it from a copy" in line
    assert ray.is_initialized() == ray_before  # refused before Ray started
    assert (exp / "experiment.json").read_text() == '{"config": {"name": "x", "method": "opt'


@pytest.mark.parametrize("command", [["report"], ["--resume"]])
def test_a_foreign_stage_json_is_named(tmp_path, command):
    exp = fake_experiment(tmp_path, json.dumps({"config": {}}), stage="[1, 2, 3]")
    line = one_error_line(run_main(*command, str(exp)))
    assert f"{exp / 'optuna' / 'stage.json'} was not written by this version of run_search.py" in line
    assert "the top level: input should be a valid dictionary" in line


def test_an_experiment_json_of_another_tool_is_named(tmp_path):
    exp = fake_experiment(tmp_path, json.dumps({"name": "someone else's"}))
    line = one_error_line(run_main("report", str(exp)))
    assert "experiment.json was not written by this version of run_search.py" in line
    assert "'config': field required" in line and "'name': a key this version does not know" in line
