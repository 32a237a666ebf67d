"""Latency and throughput of `run_search.py serve`, with and without dynamic batching.

    python benchmarks/serve_load.py                      # a builtin:tiny model built here (seconds)
    python benchmarks/serve_load.py e5-small-ko-bi4      # the CPU profile's model: the number to record
    python benchmarks/serve_load.py runs/<name>/best_model

For each server setting it starts the real server in a child process (stopped by its PID),
measures p50/p99 latency of sequential single requests, then throughput and latency under
``--clients`` concurrent clients, and prints one markdown table. Sentence pairs are KorSTS test
pairs. Clients and server share this machine's cores, as they would on a small host.
Model names build an untrained model in the ``best_model`` layout (latency does not depend on
training): ``tiny`` (2-layer, 32-hidden cross-encoder) or ``e5-small-ko-bi4`` (the CPU profile's
e5-small-ko cut to 4 layers, bi-encoder, max_length 64).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tuning.data import read_pairs
from tuning.serving import export_untrained
from tuning.serving.launcher import ServerProcess
from tuning.settings import ModelConfig, shared_dir

Pair = tuple[str, str]
MODELS: dict[str, Callable[[], ModelConfig]] = {
    "tiny": lambda: ModelConfig(name_or_path="builtin:tiny", architecture="cross", max_length=64),
    "e5-small-ko-bi4": lambda: ModelConfig(
        name_or_path=str(shared_dir() / "models" / "e5-small-ko"),
        architecture="bi",
        num_hidden_layers=4,
        max_length=64,
    ),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", default="tiny", help=f"a model folder or one of {sorted(MODELS)}")
    p.add_argument("--data", help="sentence pairs (default: KorSTS test of the shared folder)")
    p.add_argument("--sequential", type=int, default=100, help="sequential requests (default 100)")
    p.add_argument("--requests", type=int, default=400, help="requests under concurrent load (default 400)")
    p.add_argument("--clients", type=int, default=16, help="concurrent client threads (default 16)")
    p.add_argument("--max-batch-size", type=int, default=32, help="batching server's max batch (default 32)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="batching server's max wait (default 5)")
    p.add_argument("--time-limit", type=float, default=120.0, help="seconds per phase at most (default 120)")
    return p.parse_args(argv)


def model_folder(name: str, texts: list[str], scratch: Path) -> Path:
    """``name``'s folder: as given, or an untrained model of ``MODELS`` built in ``scratch``."""
    if name not in MODELS:
        return Path(name)
    return export_untrained(scratch / name, MODELS[name](), texts)


def sequential(url: str, pairs: list[Pair], n: int, limit: float) -> list[float]:
    """Latencies (s) of ``n`` single requests, one after the other."""
    latencies = []
    deadline = time.monotonic() + limit
    with httpx.Client(base_url=url, timeout=60) as client:
        for pair in itertools.islice(itertools.cycle(pairs), n):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            client.post("/similarity", json={"sentence1": pair[0], "sentence2": pair[1]}).raise_for_status()
            latencies.append(time.perf_counter() - started)
    return latencies


def concurrent(url: str, pairs: list[Pair], n: int, clients: int, limit: float) -> tuple[list[float], float]:
    """Latencies (s) of ``n`` requests shared by ``clients`` threads, and the wall time (s)."""
    jobs = iter(range(n))
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[BaseException] = []
    deadline = time.monotonic() + limit

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while time.monotonic() < deadline:
                with lock:
                    i = next(jobs, None)
                if i is None:
                    return
                a, b = pairs[i % len(pairs)]
                started = time.perf_counter()
                try:
                    client.post("/similarity", json={"sentence1": a, "sentence2": b}).raise_for_status()
                except httpx.HTTPError as err:
                    failures.append(err)
                    return
                with lock:
                    latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed under load; first: {failures[0]}")
    return latencies, time.perf_counter() - started


def measure(
    folder: Path, flags: tuple[str, ...], pairs: list[Pair], args: argparse.Namespace
) -> dict[str, float]:
    """One server setting: sequential latency, then throughput under concurrent load."""
    with ServerProcess(folder, flags) as server:
        sequential(server.url, pairs, 10, args.time_limit)  # warm-up
        seq = np.array(sequential(server.url, pairs, args.sequential, args.time_limit)) * 1000
        before = httpx.get(f"{server.url}/stats").json()
        lat, wall = concurrent(server.url, pairs, args.requests, args.clients, args.time_limit)
        after = httpx.get(f"{server.url}/stats").json()
    lat_ms = np.array(lat) * 1000
    batches = after["batches"] - before["batches"]
    return {
        "seq_p50": float(np.percentile(seq, 50)),
        "seq_p99": float(np.percentile(seq, 99)),
        "throughput": len(lat) / wall,
        "conc_p50": float(np.percentile(lat_ms, 50)),
        "conc_p99": float(np.percentile(lat_ms, 99)),
        "per_pass": (after["requests"] - before["requests"]) / max(batches, 1),
        "largest": after["largest_batch_requests"],
        "done": len(lat),
    }


def table(rows: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    lines = [
        f"| server | sequential p50 (ms) | sequential p99 (ms) | {args.clients} clients: req/s "
        "| p50 (ms) | p99 (ms) | requests per forward pass (mean / max) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['seq_p50']:.1f} | {r['seq_p99']:.1f} | {r['throughput']:.1f} "
            f"| {r['conc_p50']:.1f} | {r['conc_p99']:.1f} | {r['per_pass']:.1f} / {r['largest']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    records = read_pairs(args.data or shared_dir() / "data" / "korsts" / "sts-test.tsv")
    pairs = [(r["sentence1"], r["sentence2"]) for r in records]
    settings = {
        "no batching (`--max-wait-ms 0`)": ("--max-wait-ms", "0"),
        f"dynamic batching (`--max-batch-size {args.max_batch_size} --max-wait-ms {args.max_wait_ms:g}`)": (
            "--max-batch-size",
            str(args.max_batch_size),
            "--max-wait-ms",
            str(args.max_wait_ms),
        ),
    }
    with tempfile.TemporaryDirectory() as scratch:
        folder = model_folder(args.model, [t for pair in pairs for t in pair], Path(scratch))
        rows = {}
        for name, flags in settings.items():
            print(f"[serve_load] {name} ...", file=sys.stderr, flush=True)
            rows[name] = measure(folder, flags, pairs, args)
    print(
        f"Model `{args.model}`; {len(pairs)} KorSTS pairs cycled; {args.sequential} sequential requests, "
        f"{args.requests} under load from {args.clients} client threads; {os.cpu_count()} CPUs shared by "
        "server and clients.\n"
    )
    print(table(rows, args))
    short = [name for name, r in rows.items() if r["done"] < args.requests]
    if short:
        print(f"\nstopped by --time-limit before all requests: {short}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
