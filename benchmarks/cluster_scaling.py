"""Wall time of one search on one node vs two loopback nodes, and the time a node failure costs.

    python benchmarks/cluster_scaling.py                  # builtin:tiny, 4 trials x 5 epochs, 3 rounds
    python benchmarks/cluster_scaling.py --samples 6 --epochs 6 --repeats 1

The same search (a test-size model built in code on a KorSTS subset, FIFO, one CPU per trial,
``--max-concurrent-trials 2`` so that two trials start together: without a limit Ray Tune keeps
only one Optuna trial pending at a time) runs in three setups through the real ``run_search.py``,
``--repeats`` rounds of the three in turn (a fresh cluster for every loopback run):

1. one node with 2 CPUs: Ray started in-process, as ``run_search.py`` does without ``--address``;
2. two nodes with 1 CPU each: a head and a worker started as separate Ray nodes on loopback
   addresses (``tests/cluster_util.py``), ``--address <head>``: the same CPUs per trial and in all;
3. the same two nodes, with the worker's raylet SIGKILLed once a trial there has reported an
   epoch: that trial is retried from its checkpoint on the head, which then has to run every
   remaining trial alone.

It prints one markdown table of medians over the rounds (with min-max of the wall time). The
nodes share this machine's cores with whatever else runs on it (the load average is printed with
the table): compare rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.cluster_util import LoopbackCluster, stop_process_group  # noqa: E402

SPACE = """\
name: cluster-scaling
data: {{source: korsts, train_size: {train_size}, validation_size: 64}}
model: {{name_or_path: 'builtin:tiny', max_length: 64}}
training: {{num_epochs: {epochs}, batch_size: 16, logging_steps: 10}}
search: {{num_samples: {samples}, scheduler: fifo, cpus_per_trial: 1, max_failures: 2, top_k: 1}}
space:
  learning_rate: {{type: loguniform, low: 1.0e-4, high: 1.0e-3}}
"""


@dataclass
class Timing:
    """One search: its wall time and what its trials did, read back from storage."""

    setup: str
    wall_s: float
    trials_span_s: float
    """First trial's first step to last trial's last report."""
    trial_s: float
    """Sum over trials of the seconds each spent training (Ray's ``time_total_s``)."""
    retries: int
    nodes: int
    pause_s: float | None = None
    """The killed trial's standstill: from its last report on the lost node to the start of its
    first epoch after the retry (failure detection, waiting for a CPU, restart from checkpoint)."""
    redone: int = 0
    """Epochs the killed trial reported twice (lost work)."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=4, help="trials per search (default 4)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per trial (default 5)")
    p.add_argument("--train-size", type=int, default=1200, help="KorSTS training pairs (default 1200)")
    p.add_argument("--repeats", type=int, default=3, help="rounds of the three setups (default 3)")
    p.add_argument(
        "--max-concurrent-trials",
        type=int,
        default=2,
        help="passed to run_search.py; 0: none (then Ray Tune starts Optuna trials one at a time) (default 2)",
    )
    p.add_argument("--timeout", type=float, default=400, help="seconds per search at most (default 400)")
    return p.parse_args(argv)


def rows_of(result: Path) -> list[dict[str, Any]]:
    rows = []
    for line in result.read_text(encoding="utf-8").splitlines() if result.is_file() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def run_search(
    setup: str,
    name: str,
    args: argparse.Namespace,
    storage: Path,
    env: dict[str, str],
    cluster: LoopbackCluster | None = None,
    kill_worker: bool = False,
) -> Timing:
    """Run one search as ``<storage>/<name>``; with ``kill_worker``, kill the worker's raylet
    once a trial there has reported its first epoch."""
    command = [sys.executable, str(REPO / "run_search.py"), "--space", str(storage / "space.yaml")]
    command += ["--storage", str(storage), "--name", name]
    if args.max_concurrent_trials:
        command += ["--max-concurrent-trials", str(args.max_concurrent_trials)]
    if cluster:
        command += ["--address", cluster.address]
    log = storage / f"{name}.log"
    started = time.monotonic()
    with open(log, "w") as out:
        driver = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        victim = cluster.workers[0] if cluster and kill_worker else None
        while victim and driver.poll() is None:
            if any(
                rows and rows[-1]["node_ip"] == victim.ip
                for rows in map(rows_of, (storage / name).glob("*/*/result.json"))
            ):
                victim.kill_raylet()
                victim = None
            time.sleep(0.1)
        rc = driver.wait(timeout=max(1.0, args.timeout - (time.monotonic() - started)))
    finally:
        stop_process_group(driver)
    wall = time.monotonic() - started
    if rc != 0:
        raise SystemExit(f"{setup}: run_search.py exited {rc}; see {log}:\n{log.read_text()[-3000:]}")
    if victim:
        raise SystemExit(
            f"{setup}: no trial ran on the worker node, nothing was killed:\n{log.read_text()[-3000:]}"
        )
    trials = [rows_of(r) for r in (storage / name).glob("*/*/result.json")]
    starts = [t[0]["timestamp"] - t[0]["time_this_iter_s"] for t in trials if t]
    ends = [t[-1]["timestamp"] for t in trials if t]
    ended = json.loads(next((storage / name).glob("*/trials.json")).read_text())
    pause, redone = None, 0
    for t in trials:
        if len({row["node_ip"] for row in t}) > 1:
            first_ip = t[0]["node_ip"]
            before = [r for r in t if r["node_ip"] == first_ip]
            after = [r for r in t if r["node_ip"] != first_ip]
            pause = after[0]["timestamp"] - after[0]["time_this_iter_s"] - before[-1]["timestamp"]
            redone = len({r["epoch"] for r in before} & {r["epoch"] for r in after})
    return Timing(
        setup=setup,
        wall_s=wall,
        trials_span_s=max(ends) - min(starts),
        trial_s=sum(t[-1]["time_total_s"] for t in trials if t),
        retries=sum(int(e.get("retries", 0)) for e in ended.values()),
        nodes=len({row["node_ip"] for t in trials for row in t}),
        pause_s=pause,
        redone=redone,
    )


SETUPS = {
    "one-node": "1 node x 2 CPUs (in-process)",
    "two-nodes": "2 nodes x 1 CPU (loopback)",
    "two-nodes-kill": "2 nodes x 1 CPU (loopback), worker killed after its first epoch",
}


def table(rounds: dict[str, list[Timing]]) -> str:
    """Medians per setup, relative to one node; and the time the kill cost."""

    def median(name: str, attr: str) -> float:
        return statistics.median(getattr(t, attr) for t in rounds[name])

    base = median("one-node", "wall_s")
    lines = [
        "| setup | nodes used | run_search.py wall (s), median [min-max] | trials' span (s) "
        "| sum of trial times (s) | retries | wall vs 1 node |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, setup in SETUPS.items():
        runs = rounds[name]
        walls = [t.wall_s for t in runs]
        lines.append(
            f"| {setup} | {max(t.nodes for t in runs)} | {median(name, 'wall_s'):.1f} "
            f"[{min(walls):.1f}-{max(walls):.1f}] | {median(name, 'trials_span_s'):.1f} "
            f"| {median(name, 'trial_s'):.1f} | {median(name, 'retries'):g} "
            f"| {median(name, 'wall_s') / base:.2f}x |"
        )
    killed = rounds["two-nodes-kill"]
    lost = median("two-nodes-kill", "wall_s") - median("two-nodes", "wall_s")
    pause = statistics.median(t.pause_s for t in killed if t.pause_s is not None)
    lines += [
        "",
        f"Node kill: the killed trial stood still {pause:.1f} s (median; detection, a free CPU, restart "
        f"from its checkpoint) and redid {statistics.median(t.redone for t in killed):g} epochs; the "
        f"search's wall time changed by {lost:+.1f} s against the same two nodes unharmed.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rounds: dict[str, list[Timing]] = {name: [] for name in SETUPS}
    local_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with tempfile.TemporaryDirectory(prefix="cluster-scaling-") as tmp:
        root = Path(tmp)
        (root / "space.yaml").write_text(SPACE.format(**vars(args)), encoding="utf-8")
        for i in range(args.repeats):
            for name, setup in SETUPS.items():
                run = f"{name}-{i}"
                if name == "one-node":
                    timing = run_search(setup, run, args, root, local_env)
                    note = ""
                else:
                    started = time.monotonic()
                    with LoopbackCluster(num_workers=1, cpus_per_node=1) as cluster:
                        note = f" (cluster start {time.monotonic() - started:.1f} s, not counted)"
                        kill = name.endswith("kill")
                        timing = run_search(setup, run, args, root, cluster.env, cluster, kill)
                rounds[name].append(timing)
                print(f"[bench] round {i + 1}: {timing}{note}", flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{args.samples} trials x {args.epochs} epochs, builtin:tiny on {args.train_size} KorSTS pairs, "
        f"1 CPU per trial, FIFO, --max-concurrent-trials {args.max_concurrent_trials or 'unset'}; "
        f"medians of {args.repeats} rounds; {os.cpu_count()} cores, load average {load}.\n"
    )
    print(table(rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
