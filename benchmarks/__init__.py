"""Repeatable benchmarks, each a script that prints one markdown table: ``python -m benchmarks NAME``.

Every benchmark module has ``main(argv) -> int``; the ones written as a package also take
``--quick`` (a shrunk run for development). Their tables carry a header line with the date, the
machine and its load, and the command, because the machine's cores may be shared: compare rows
of one run, not runs of different days.

Besides the registry this module holds what several benchmarks share: that header line, the
markdown table, running ``run_search.py`` as a child process on a generated search-space file,
and the pieces of those files (models, KorSTS subsets, a fixed grid of trials).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Benchmark:
    """One entry of the registry: what it measures and the flags that shrink it."""

    summary: str
    """One line for ``python -m benchmarks --help``."""
    quick: tuple[str, ...] = ("--quick",)
    """Flags ``python -m benchmarks all --quick`` passes to it."""


BENCHMARKS: dict[str, Benchmark] = {
    "throughput": Benchmark(
        "training throughput: padding to 512 vs per batch vs per batch grouped by length"
    ),
    "search_efficiency": Benchmark(
        "trial-epochs each method (grid, random, TPE, TPE + ASHA, PBT) needs to reach the grid's best"
    ),
    "overhead": Benchmark("Ray Tune's per-trial overhead vs the same trials in a plain process"),
    "scaling": Benchmark("1 vs 2 concurrent trials on this machine: speed-up and efficiency"),
    "cpu_levers": Benchmark(
        "frozen embeddings, bf16 autocast, frozen layers: training speed on the CPU profile"
    ),
    "precision": Benchmark("fp32 vs bf16 autocast on this CPU (the search's probe), and what `auto` chooses"),
    "objectives": Benchmark("losses and heads: MSE, correlation loss, multi-task, CoSENT, AnglE, over seeds"),
    "peers": Benchmark(
        "the same search through this tool, sentence-transformers, HF Trainer + Ray, plain Optuna (hours)"
    ),
    "rungs": Benchmark(
        "how well early validation Pearson ranks configurations as the full budget does (ASHA's rungs)"
    ),
    "warm_start": Benchmark(
        "a 12-layer search warm-started from a cheaper one vs the same search cold: time to the cold best"
    ),
    "soup": Benchmark("greedy soups of a finished search's checkpoints: validation vs held-out Pearson"),
    "serve_load": Benchmark("latency and throughput of `run_search.py serve`, with and without batching", ()),
    "cluster_scaling": Benchmark(
        "one node vs two loopback nodes, and the cost of a node failure",
        ("--samples", "2", "--epochs", "2", "--train-size", "200"),
    ),
}
"""Benchmark name -> entry; the module is ``benchmarks.<name>``."""


def header(title: str, name: str, argv: list[str]) -> str:
    """The line above a table: title, date, machine, load average and the command that ran.

    Args:
        title: what the table measures.
        name: the benchmark's name in ``BENCHMARKS``.
        argv: the benchmark's arguments.
    """
    from tuning.hardware import cpu_facts, cpu_model
    from tuning.settings import gpu_names

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    gpus = gpu_names()
    cpu = f"{cpu_model()} ({cpu_facts().describe()})"
    machine = f"{platform.machine()}, {cpu}, {os.cpu_count()} CPUs, load average {load}, " + (
        f"GPUs: {', '.join(gpus)}" if gpus else "no GPU"
    )
    command = shlex.join(["python", "-m", "benchmarks", name, *argv])
    return f"**{title}** — {time.strftime('%Y-%m-%d %H:%M')}, {machine} — `{command}`"


def benchmark_parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's argument parser: its usage line and its module docstring, kept as written."""
    return argparse.ArgumentParser(
        prog=f"python -m benchmarks {name}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def model_parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser every Ray-run benchmark starts from: its usage line, doc and ``--model``."""
    p = benchmark_parser(name, doc)
    p.add_argument(
        "--model", choices=sorted(MODELS), default="e5-small-ko-bi4", help="default e5-small-ko-bi4"
    )
    return p


def markdown_table(columns: list[str], rows: list[list[str]], align: str = "") -> str:
    """A markdown table; ``align`` holds one of ``l``/``r`` per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(columns) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [columns, rule, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


class BenchmarkError(RuntimeError):
    """A step of a benchmark failed; the message says which and where its log is."""


@dataclass
class SearchRun:
    """One ``run_search.py`` run: where it wrote its experiment and how long the process took."""

    path: Path
    """The experiment folder, ``<storage>/<name>``."""
    wall_s: float
    """The ``run_search.py`` process from start to exit (imports, Ray, search, report)."""


def run_search(
    config: dict[str, Any],
    method: str,
    storage: Path,
    name: str,
    flags: tuple[str, ...] = (),
    driver: tuple[str, ...] | None = None,
    timeout: float = 1800,
    reuse: bool = False,
) -> SearchRun:
    """Run ``run_search.py`` on ``config`` (written as ``<storage>/<name>.yaml``) in a child process.

    Ray starts in the child (``RAY_ADDRESS`` is dropped, so no cluster of someone else is joined).
    Its output goes to ``<storage>/<name>.log``.

    Args:
        config: the search-space file's content.
        method: ``--method``.
        storage: ``--storage``; the experiment is ``<storage>/<name>``.
        name: ``--name``.
        flags: more command-line flags.
        driver: the interpreter command to run instead of ``python run_search.py`` (it gets the
            same arguments), e.g. ``(python, -c, code)``.
        timeout: seconds before the run and its process group are killed.
        reuse: a run that finished in an earlier call (``<storage>/<name>/report.md`` exists) is
            returned as it is, not run again; one an earlier call left unfinished (killed,
            interrupted, timed out) is continued with ``run_search.py --resume``. Either way its
            ``wall_s`` is NaN (not one whole run's). Neither checks that ``config`` is the one the
            folder was started with: after changing a variant, use another ``storage``.
    """
    import yaml

    from tuning.store import EXPERIMENT_FILE, REPORT_FILE

    folder = storage / name
    if reuse and (folder / REPORT_FILE).is_file():
        print(f"[benchmarks] {name}: finished earlier in {folder}, read, not re-run", file=sys.stderr)
        return SearchRun(path=folder, wall_s=float("nan"))
    resume = reuse and (folder / EXPERIMENT_FILE).is_file()
    command = [*(driver or (sys.executable, str(REPO / "run_search.py")))]
    if resume:
        print(f"[benchmarks] {name}: left unfinished in {folder}, resumed", file=sys.stderr)
        command += ["--resume", str(folder)]
    else:
        space = storage / f"{name}.yaml"
        space.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        command += ["--method", method, "--space", str(space), "--storage", str(storage), "--name", name]
        command += flags
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONUNBUFFERED": "1"}
    log = storage / f"{name}.log"
    started = time.monotonic()
    with open(log, "a" if resume else "w", encoding="utf-8") as out:
        child = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if child.poll() is None:  # timed out or interrupted: stop it and Ray's processes
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(10)
    wall = time.monotonic() - started
    if child.returncode != 0:
        why = f"ran past {timeout:.0f} s" if wall >= timeout else f"exited {child.returncode}"
        tail = log.read_text(encoding="utf-8")[-3000:]
        raise BenchmarkError(f"run_search.py ({name}) {why}; log {log}:\n{tail}")
    return SearchRun(path=folder, wall_s=float("nan") if resume else wall)


MODELS: dict[str, dict[str, Any]] = {
    "e5-small-ko-bi4": {
        "name_or_path": "${SHARED}/models/e5-small-ko",
        "architecture": "bi",
        "num_hidden_layers": 4,
        "max_length": 64,
    },
    "tiny": {"name_or_path": "builtin:tiny", "architecture": "cross", "max_length": 64},
}
"""Model sections of generated search spaces: the CPU profile's model, and a 2-layer test model."""


def korsts_subset(train_size: int, validation_size: int) -> dict[str, Any]:
    """The data section: seeded subsets of KorSTS train and dev, the same pairs as the ``korsts``
    preset's, given as files so that there is no test split (scoring winners on it only slows a
    benchmark down)."""
    return {
        "source": "files",
        "train": "${SHARED}/data/korsts/sts-train.tsv",
        "validation": "${SHARED}/data/korsts/sts-dev.tsv",
        "train_size": train_size,
        "validation_size": validation_size,
    }


def grid_experiment(
    name: str,
    model: str,
    learning_rates: list[float],
    epochs: int,
    train_size: int,
    validation_size: int,
    max_concurrent_trials: int,
    gpus_per_trial: float = 0,
) -> dict[str, Any]:
    """A fixed set of trials as a search-space file for ``--method grid``: one FIFO stage over
    ``learning_rates``, 1 CPU (and ``gpus_per_trial``) per trial, nothing retried."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}. Got: {model!r}.")
    return {
        "name": name,
        "data": korsts_subset(train_size, validation_size),
        "model": dict(MODELS[model]),
        "training": {"num_epochs": epochs, "batch_size": 16, "seed": 42},
        "search": {
            "scheduler": "fifo",
            "cpus_per_trial": 1,
            "gpus_per_trial": gpus_per_trial,
            "max_concurrent_trials": max_concurrent_trials,
            "max_failures": 0,
            "top_k": 1,
        },
        "stages": [
            {
                "name": "trials",
                "scheduler": "fifo",
                "space": {"learning_rate": {"type": "grid", "values": list(learning_rates)}},
            }
        ],
    }


def spread(low: float, high: float, n: int) -> list[float]:
    """``n`` values spaced evenly in log scale from ``low`` to ``high``, to 3 significant digits."""
    if n == 1:
        return [low]
    return [float(f"{low * (high / low) ** (i / (n - 1)):.3g}") for i in range(n)]
