"""Running on a Ray cluster: the AWS launcher config, and real multi-node searches on loopback.

The e2e tests start a head and a worker as separate Ray nodes on this machine (one CPU each, so
two one-CPU trials must land on different nodes), run ``run_search.py --address`` against them,
and read what happened from storage: where each trial ran, and, after the worker node's raylet
is killed mid-trial, that the trial was retried from its checkpoint on the surviving node.
"""

from __future__ import annotations

import copy
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster_util import RAY, LoopbackCluster, stop_process_group
from tuning.store import STAGE_FILE, TRIALS_FILE, read_results

REPO = Path(__file__).resolve().parent.parent
CLUSTER_YAML = REPO / "cluster.yaml"
# `name[extras]==version` as pip reads it on a command line or in pyproject.toml.
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([A-Za-z0-9.+!_-]+)")


def cluster_config() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text(encoding="utf-8"))


def pins(text: str) -> dict[str, str]:
    """Package -> pinned version for every ``name==version`` in ``text``."""
    return {name.lower().replace("_", "-"): version for name, version in PIN.findall(text)}


def pyproject_pins() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return pins("\n".join(project["dependencies"]))


# ---------------------------------------------------------------- the cluster-launcher config


def test_cluster_yaml_passes_rays_own_schema_check():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(cluster_config()))


@pytest.mark.parametrize(
    "mistake",
    ["misspelled top-level key", "misspelled node-type key", "fractional GPU resource"],
)
def test_the_schema_check_refuses_a_broken_config(mistake):
    from jsonschema import ValidationError
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = copy.deepcopy(cluster_config())
    worker = cfg["available_node_types"]["ray.worker.gpu"]
    if mistake == "misspelled top-level key":
        cfg["max_worker"] = cfg.pop("max_workers")
    elif mistake == "misspelled node-type key":
        worker["min_worker"] = worker.pop("min_workers")
    else:
        worker["resources"] = {"CPU": 4, "GPU": 0.5}
    with pytest.raises(ValidationError):
        validate_config(prepare_config(cfg))


@pytest.mark.parametrize("role", ["head", "worker"])
def test_setup_commands_install_the_versions_pyproject_pins(role):
    cfg = cluster_config()
    commands = cfg["setup_commands"] + cfg[f"{role}_setup_commands"]
    installed = pins("\n".join(commands))
    expected = pyproject_pins()
    assert {"torch", "ray"} <= set(installed)
    assert {name: expected.get(name) for name in installed} == installed
    # torch first, so installing the project keeps that build (CPU on the head, CUDA on workers).
    checkout = next(remote for remote, local in cfg["file_mounts"].items() if local == ".")
    torch_at = next(i for i, c in enumerate(commands) if "torch==" in c)
    project_at = next(
        i for i, c in enumerate(commands) if re.search(rf"pip install .*{re.escape(checkout)}\s*$", c)
    )
    assert torch_at < project_at
    cpu_index = "download.pytorch.org/whl/cpu" in commands[torch_at]
    assert cpu_index == (role == "head")


def test_every_node_starts_ray_in_token_mode_with_the_shared_token():
    cfg = cluster_config()
    assert "~/.ray/auth_token" in cfg["file_mounts"]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in cfg[key] if "ray start" in c)
        assert "RAY_AUTH_MODE=token ray start" in start, key


def test_the_documented_job_stores_results_on_the_mount_every_node_has():
    setup = "\n".join(cluster_config()["setup_commands"])
    mount = re.search(r"sudo mount -t nfs4 .* (/\S+)\)", setup)
    assert mount, setup
    docs = (REPO / "docs" / "cluster.md").read_text(encoding="utf-8")
    job = re.search(r"ray job submit .*?--storage (\S+)", docs, re.DOTALL)
    assert job, "docs/cluster.md shows no `ray job submit ... --storage`"
    assert job.group(1).startswith(mount.group(1) + "/")


# ---------------------------------------------------------------- loopback multi-node runs

# A test-size model built in code on 800 KorSTS pairs: about 1-2 s an epoch on one CPU, so a trial
# outlasts the few seconds a trial's worker process takes to start. (The --smoke-test's
# sub-second trials do not: with reuse_actors a trial whose process is still starting on one node
# takes over the finished trial's process on the other, and both run on one node.)
SPACE = """\
name: cluster
data: {{source: korsts, train_size: 800, validation_size: 64}}
model: {{name_or_path: 'builtin:tiny', max_length: 64}}
training: {{num_epochs: {epochs}, batch_size: 16, logging_steps: 10}}
search: {{num_samples: 2, scheduler: fifo, cpus_per_trial: 1, max_failures: 2, top_k: 1}}
space:
  learning_rate: {{type: loguniform, low: 1.0e-4, high: 1.0e-3}}
"""


def search_command(cluster: LoopbackCluster, tmp_path: Path, name: str, epochs: int) -> list[str]:
    """``run_search.py --address <head>`` for two one-CPU trials of ``epochs`` epochs.

    ``--max-concurrent-trials 2`` starts both trials at once: without a limit Ray Tune keeps one
    Optuna trial pending at a time, so the second would be placed only once the first runs.
    """
    space = tmp_path / f"{name}.yaml"
    space.write_text(SPACE.format(epochs=epochs), encoding="utf-8")
    return [
        sys.executable, str(REPO / "run_search.py"), "--address", cluster.address, "--space", str(space),
        "--max-concurrent-trials", "2", "--storage", str(tmp_path / "runs"), "--name", name,
    ]  # fmt: skip


def stage_dir(experiment: Path) -> Path:
    (stage,) = [p.parent for p in experiment.glob(f"*/{STAGE_FILE}")]
    return stage


EPOCHS = 6


@pytest.mark.e2e
def test_a_trial_on_a_killed_node_resumes_from_its_checkpoint_elsewhere(tmp_path, shared):
    experiment = tmp_path / "runs" / "failure"
    log = tmp_path / "search.log"
    with LoopbackCluster(num_workers=1, cpus_per_node=1) as cluster:
        worker = cluster.workers[0]
        with open(log, "w") as out:
            driver = subprocess.Popen(
                search_command(cluster, tmp_path, "failure", EPOCHS),
                cwd=REPO, env=cluster.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            # 1. Wait until the trial on the worker node has reported two epochs, then kill
            #    that node's raylet (two, so its first epoch's checkpoint is surely registered).
            victim, deadline = None, time.monotonic() + 120
            while victim is None and driver.poll() is None and time.monotonic() < deadline:
                for result in experiment.glob("*/*/result.json"):
                    rows = read_results(result.parent)
                    if len(rows) >= 2 and rows[-1]["node_ip"] == worker.ip:
                        assert rows[-1]["epoch"] < EPOCHS, "the trial finished before the kill"
                        worker.kill_raylet()
                        victim = result.parent
                        break
                time.sleep(0.1)
            assert victim is not None, f"no trial reported twice on the worker:\n{log.read_text()[-3000:]}"
            # 2. The search goes on with the head node alone and finishes normally.
            rc = driver.wait(timeout=180)
        finally:
            stop_process_group(driver)
        assert rc == 0, log.read_text()[-4000:]
        assert worker.process.poll() is not None, "the worker node outlived its raylet"
    assert not cluster.leftover_processes()

    # 3. The trial finished every epoch, continuing on the head from its last checkpoint.
    rows = read_results(victim)
    last_of_each = {row["epoch"]: row for row in rows}
    assert sorted(last_of_each) == list(range(1, EPOCHS + 1))
    on_worker = [r["epoch"] for r in rows if r["node_ip"] == worker.ip]
    on_head = [r["epoch"] for r in rows if r["node_ip"] == cluster.head.ip]
    assert on_worker[:2] == [1, 2] and on_head[-1] == EPOCHS
    assert 2 <= on_head[0] <= on_worker[-1] + 1, (on_worker, on_head)  # not restarted from scratch
    # 4. The retry is in the stage's trial log and in the report.
    ended = json.loads((stage_dir(experiment) / TRIALS_FILE).read_text())
    trial_id = rows[-1]["trial_id"]
    retries = ended[trial_id]["retries"]
    assert retries >= 1
    assert sum(e["retries"] for e in ended.values()) == retries  # the other trial never failed
    report = (experiment / "report.md").read_text(encoding="utf-8")
    assert f"retried {retries}x from checkpoint" in report


@pytest.fixture(scope="module")
def cluster() -> Iterator[LoopbackCluster]:
    """A head and a worker node, one CPU each, shared by the tests that leave it healthy."""
    with LoopbackCluster(num_workers=1, cpus_per_node=1) as c:
        yield c
    assert not c.leftover_processes()


@pytest.mark.e2e
def test_a_request_no_node_can_meet_is_named_before_trials_start(cluster, tmp_path, shared):
    # Each node of the loopback cluster has one CPU: a 2-CPU trial waits for a node that fits.
    # This cluster reports no autoscaler node types, so the search warns (a `ray up` cluster may
    # still add a node) and stops cleanly on Ctrl-C.
    command = [*search_command(cluster, tmp_path, "too-big", epochs=1), "--cpus-per-trial", "2"]
    proc = subprocess.Popen(command, cwd=REPO, env=cluster.env, stderr=subprocess.PIPE, text=True)
    try:
        warning = ""
        deadline = time.monotonic() + 120
        while "warning:" not in warning and time.monotonic() < deadline:
            warning = proc.stderr.readline() or warning
        assert warning.startswith("warning: a trial asks for 2 CPUs and 0 GPUs"), warning
        assert "most CPUs on one: 1" in warning
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.e2e
def test_a_request_no_node_type_can_meet_is_refused_before_anything_starts(cluster, tmp_path, shared):
    # As on a `ray up` head: the autoscaler's config in ~/ray_bootstrap_config.yaml names the node
    # types it may start; none has 2 CPUs.
    home = tmp_path / "home"
    home.mkdir()
    (home / "ray_bootstrap_config.yaml").write_text(
        "available_node_types:\n  head: {resources: {CPU: 0}}\n  worker: {resources: {CPU: 1, GPU: 0}}\n",
        encoding="utf-8",
    )
    command = [*search_command(cluster, tmp_path, "too-big", epochs=1), "--cpus-per-trial", "2"]
    env = {**cluster.env, "HOME": str(home)}
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "error: a trial asks for 2 CPUs and 0 GPUs" in proc.stderr
    assert "no node or node type of the cluster" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs" / "too-big").exists()


@pytest.mark.e2e
def test_a_client_without_the_clusters_token_is_refused(cluster):
    assert cluster.status().returncode == 0
    wrong = {**cluster.env, "RAY_AUTH_TOKEN": "0" * 64}
    proc = subprocess.run(
        [RAY, "status", "--address", cluster.address], env=wrong, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "Authentication token is missing or incorrect" in proc.stderr


@pytest.mark.e2e
def test_a_search_runs_its_trials_on_both_nodes(cluster, tmp_path, shared):
    command = search_command(cluster, tmp_path, "spread", epochs=3)
    proc = subprocess.run(command, cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    experiment = tmp_path / "runs" / "spread"
    trials = sorted(p.parent for p in stage_dir(experiment).glob("*/result.json"))
    assert len(trials) == 2
    # Each trial ran on one node; with one CPU per node and per trial, on different nodes.
    nodes = [{row["node_ip"] for row in read_results(t)} for t in trials]
    assert sorted(nodes, key=sorted) == sorted([{cluster.head.ip}, {cluster.workers[0].ip}], key=sorted)
    # The trials imported the code Ray shipped to the worker node, not the driver's files.
    shipped = cluster.workers[0].temp_dir.glob(
        "session_*/runtime_resources/py_modules_files/*/tuning/trial.py"
    )
    assert any(shipped)
    ended = json.loads((stage_dir(experiment) / TRIALS_FILE).read_text())
    assert [e["retries"] for e in ended.values()] == [0, 0]
    assert (experiment / "report.md").is_file()
