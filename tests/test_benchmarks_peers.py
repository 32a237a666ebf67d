"""The peers benchmark: its pure parts (curves, targets, the table, the shared search) and one
real quick run of every peer end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest

from benchmarks import BENCHMARKS, REPO, _peer_runs, _peer_trainers, peers
from tuning.settings import load_experiment, parse_experiment, validate


def row(peer: str, curve: list[list[float]], **extra):
    scores = {"korsts_test": {"pearson": 0.5, "f1": 0.6}, "klue_dev": {"pearson": 0.4, "f1": 0.3}}
    base = {"peer": peer, "wall_s": 10.0, "job_s": 9.0, "trials": 2, "trial_epochs": 3.0}
    return base | {"curve": curve, "scores": scores, "peak_pss": 2**30, "disk": 2**20} | extra


def cells(table: str) -> dict[str, list[str]]:
    lines = table.splitlines()[2:]
    split = ([c.strip() for c in line.strip("|").split("|")] for line in lines)
    return {c[0]: c for c in split}


def test_peers_is_registered():
    assert "peers" in BENCHMARKS and set(peers.PEERS) == set(_peer_runs.RUNS)


def test_best_so_far_and_time_to_target_follow_time_order():
    curve = [[30.0, 0.5], [10.0, 0.6], [20.0, 0.4]]
    assert peers.best_so_far(curve) == [(10.0, 0.6), (20.0, 0.6), (30.0, 0.6)]
    assert peers.time_to(curve, 0.55) == 10.0
    assert peers.time_to(curve, 0.7) is None


def test_target_is_the_lowest_best_of_each_architecture_and_skips_crashes():
    rows = [
        row("ours", [[1.0, 0.8]]),
        row("st-optuna", [[5.0, 0.7], [9.0, 0.75]]),
        row("hf-ray", [[3.0, 0.2]]),
        {"peer": "optuna-plain", "wall_s": 1.0, "error": "exited 1: boom"},
    ]
    assert peers.targets(rows) == {"bi": 0.75, "cross": 0.2}


def test_table_has_a_row_per_peer_and_a_crash_is_one_row_with_its_error():
    rows = [
        row("ours", [[4.0, 0.7], [8.0, 0.8]]),
        row("st-optuna", [[5.0, 0.75]], retrain_s=2.5, retrain_epochs=2),
        {"peer": "hf-ray", "wall_s": 3.0, "error": "exited 1: boom (log x.log)"},
    ]
    out = cells(peers.table(rows))
    ours, st, ray = (out[peers.PEERS[name].label] for name in ("ours", "st-optuna", "hf-ray"))
    assert ours[2:7] == ["9.0", "—", "2", "3.00", "0.8000"]
    assert ours[7:13] == ["0.5000 / 0.6000", "0.4000 / 0.3000", "1024", "1.0", "8.0", ""]
    assert st[3] == "2.5" and st[5] == "3.00 + 2" and st[11] == "5.0"  # target 0.75 reached at 5 s
    assert ray[2] == "3.0" and ray[-1] == "exited 1: boom (log x.log)"


def test_every_peer_runs_the_profiles_search():
    profile = load_experiment(peers.PROFILES["cpu"])
    exp = parse_experiment(peers.experiment(peers.PROFILES["cpu"], quick=False), "peers")
    validate(exp)
    for section in ("data", "model", "training", "search"):
        assert getattr(exp, section) == getattr(profile, section), section
    assert exp.space == profile.space
    quick = parse_experiment(peers.experiment(peers.PROFILES["cpu"], quick=True), "peers")
    assert (quick.data.train_size, quick.data.validation_size) == (64, 32)
    assert (quick.search.num_samples, quick.training.num_epochs, quick.search.time_budget) == (2, 2, None)
    assert quick.space == profile.space


def test_the_space_becomes_optuna_suggestions_named_as_training_arguments():
    import optuna

    space = peers.experiment(peers.PROFILES["cpu"], quick=True)["space"]
    values = {"learning_rate": 3e-5, "per_device_train_batch_size": 32, "weight_decay": 0.01}
    values["warmup_steps"] = 0.1  # the warm-up ratio: transformers 5 reads a float < 1 as one
    assert _peer_trainers.optuna_params(optuna.trial.FixedTrial(values), space) == values
    with pytest.raises(ValueError, match="peers search"):
        _peer_trainers.optuna_params(
            optuna.trial.FixedTrial({}), {"loss": {"type": "choice", "values": ["mse"]}}
        )


def test_a_kept_row_is_read_only_for_the_same_search_without_an_error(tmp_path):
    config = peers.experiment(REPO / "search_spaces" / "cpu" / "optuna.yaml", quick=True)
    kept = row("ours", [[1.0, 0.5]], measured_at="2026-11-30 08:00", load_before=0.1)
    peers.save_row(kept, config, tmp_path, gpu=False)
    assert peers.saved_row("ours", config, tmp_path, gpu=False) == kept
    assert peers.saved_row("ours", config, tmp_path, gpu=True) is None
    assert peers.saved_row("st-optuna", config, tmp_path, gpu=False) is None
    other = config | {"search": config["search"] | {"num_samples": 3}}
    assert peers.saved_row("ours", other, tmp_path, gpu=False) is None
    peers.save_row(kept | {"error": "exited 1: boom"}, config, tmp_path, gpu=False)
    assert peers.saved_row("ours", config, tmp_path, gpu=False) is None
    old = {k: v for k, v in kept.items() if k != "peak_pss"} | {"peak_rss": 2**30}  # before PSS
    peers.save_row(old, config, tmp_path, gpu=False)
    assert peers.saved_row("ours", config, tmp_path, gpu=False) is None


CHILD = "import sys, time; b = b'x' * (96 * 2**20); print('ready', flush=True); time.sleep(60)"
PARENT = (
    "import subprocess, sys, time; b = b'x' * (64 * 2**20); "
    f"c = subprocess.Popen([sys.executable, '-c', {CHILD!r}], stdout=subprocess.PIPE, text=True); "
    "print(c.stdout.readline().strip(), flush=True); time.sleep(60)"
)


def test_peak_memory_counts_a_process_and_its_children_once():
    """A parent holding 64 MiB whose child holds 96 MiB: the tree's PSS counts both, and the
    interpreter pages they share (mapped by both) are not counted twice."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert parent.stdout.readline().strip() == "ready"
        pss = peers.tree_pss(parent.pid)
        tree = [psutil.Process(parent.pid), *psutil.Process(parent.pid).children()]
        assert len(tree) == 2
        assert 160 * 2**20 <= pss < sum(p.memory_info().rss for p in tree)
        assert pss < 1024 * 2**20
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(10)
    assert peers.tree_pss(parent.pid) == 0  # gone: nothing to count


@pytest.mark.e2e
def test_quick_run_measures_every_peer(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "peers", "--quick", "--storage", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = cells(out.stdout[out.stdout.index("| peer |") :].split("\n\n")[0])
    assert sorted(table) == sorted(p.label for p in peers.PEERS.values())
    for name, peer in peers.PEERS.items():
        measured = table[peer.label][2:12]
        assert "—" not in measured[:1] + measured[2:], (name, table[peer.label])
        assert float(measured[4]) > -1 and float(measured[7]) > 0 and float(measured[8]) > 0
        assert (measured[1] == "—") == name.startswith(("ours", "hf-ray")), (name, measured)
    assert (tmp_path / "curves.json").is_file()
    # Run again on the same storage: every row is read, nothing trains, the same table prints.
    again = subprocess.run(
        [sys.executable, "-m", "benchmarks", "peers", "--quick", "--storage", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count(": read, measured ") == len(peers.PEERS), again.stderr[-3000:]
    assert cells(again.stdout[again.stdout.index("| peer |") :].split("\n\n")[0]) == table
