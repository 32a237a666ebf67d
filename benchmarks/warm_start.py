"""A search warm-started from a cheaper one against the same search cold: time to the cold best.

    python -m benchmarks warm_start --run                  # the CPU profile's search (12 layers), ~30 min
    python -m benchmarks warm_start --run --cheap-layers 4 --budget 8m --cheap-budget 4m
    python -m benchmarks warm_start COLD WARM [CHEAP]      # finished experiment folders
    python -m benchmarks warm_start --quick                # smoke searches (checks the script)

``--run`` runs three searches of the CPU profile's Optuna file one after another: the search
**cold** (12 layers, ``--budget``); a **cheap** one (the bottom ``--cheap-layers`` layers,
``--cheap-budget``); and the 12-layer search again, **warm**-started from the cheap one
(``--warm-start``: another problem, so the cheap search's top configurations are tried first).
For each: the best validation metric over time (from each report's wall-clock time, counted
from the search's start), and the time it first reached the cold search's best. The goal of
issue 26: the warm search reaches it in at most half the cold search's time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python benchmarks/warm_start.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import REPO, BenchmarkError, benchmark_parser, header, markdown_table, run_search

NAME = "warm_start"


def search(storage: Path, name: str, budget: str, extra: list[str], smoke: bool) -> Path:
    """One search of the CPU profile's Optuna file (``benchmarks.run_search``: a child process,
    its output in ``<storage>/<name>.log``)."""
    flags = ("--time-budget", budget, *extra, *(("--smoke-test", "--num-samples", "3") if smoke else ()))
    profile = {"base": str(REPO / "search_spaces" / "cpu" / "optuna.yaml")}
    return run_search(profile, "optuna", storage, name, flags, timeout=4 * 3600).path


def timeline(record: Any, metric: str) -> list[tuple[float, float, str]]:
    """Every report of every trial as (seconds since the search started, value, trial), in time order."""
    from tuning import store

    start = min(s.started for s in record.stages)
    out = []
    for t in record.trials:
        for r in t.reports:
            if metric not in r:
                continue
            if store.STARTED_AT in r and store.ELAPSED_S in r:
                when = float(r[store.STARTED_AT]) + float(r[store.ELAPSED_S])
            else:  # a search before started_at: Ray's timestamp, whole seconds
                when = float(r[store.TIMESTAMP])
            out.append((when - start, float(r[metric]), f"{t.stage}/{t.trial_id}"))
    return sorted(out)


def first_reaching(
    points: list[tuple[float, float, str]], target: float, sign: float
) -> tuple[float, str] | None:
    """The time and trial of the first report at or past ``target`` (``sign``: the metric's direction)."""
    for when, value, trial in points:
        if sign * value >= sign * target - 1e-12:
            return when, trial
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = benchmark_parser(NAME, __doc__)
    p.add_argument("folders", nargs="*", help="COLD WARM [CHEAP]: finished experiment folders")
    p.add_argument("--run", action="store_true", help="run the three searches first")
    p.add_argument("--quick", action="store_true", help="run smoke searches first and read them")
    p.add_argument("--budget", default="8m", help="time budget of the cold and the warm search (default 8m)")
    p.add_argument("--cheap-budget", default="4m", help="time budget of the cheap search (default 4m)")
    p.add_argument(
        "--cheap-layers", type=int, default=4, help="encoder layers of the cheap search (default 4)"
    )
    p.add_argument(
        "--storage", type=Path, help="where --run keeps its experiments (default: a temporary folder)"
    )
    args: argparse.Namespace = p.parse_args(argv)
    if sum((bool(args.folders), args.run, args.quick)) != 1:
        p.error("give COLD WARM folders, --run or --quick (one of them).")
    if args.folders and len(args.folders) not in (2, 3):
        p.error("give two folders (COLD WARM) or three (COLD WARM CHEAP).")

    with tempfile.TemporaryDirectory() as tmp:
        if args.folders:
            cold, warm = Path(args.folders[0]), Path(args.folders[1])
            cheap = Path(args.folders[2]) if len(args.folders) == 3 else None
        else:
            storage = args.storage or Path(tmp)
            storage.mkdir(parents=True, exist_ok=True)
            smoke = args.quick
            budget, cheap_budget = ("2m", "1m") if smoke else (args.budget, args.cheap_budget)
            cold = search(storage, "cold", budget, [], smoke)
            layers = (
                ["--model.num_hidden_layers", str(args.cheap_layers)]
                if not smoke
                else ["--training.num_epochs", "1"]
            )
            cheap = search(storage, "cheap", cheap_budget, layers, smoke)
            warm = search(storage, "warm", budget, ["--warm-start", str(cheap)], smoke)
        from tuning import store
        from tuning.metrics import MODES

        records = {"cold": store.read_experiment(cold), "warm": store.read_experiment(warm)}
        if cheap is not None:
            records["cheap"] = store.read_experiment(cheap)
        metric = records["cold"].meta.metric
        sign = 1.0 if MODES[metric] == "max" else -1.0
        lines = {k: timeline(r, metric) for k, r in records.items()}
        if not lines["cold"]:
            raise BenchmarkError(f"{cold}: no trial reported {metric}")
        target = max((v for _, v, _ in lines["cold"]), key=lambda v: sign * v)
        reached = {k: first_reaching(v, target, sign) for k, v in lines.items()}
        cold_at = reached["cold"][0] if reached["cold"] else float("nan")
        cheap_meta = records["cheap"].meta if "cheap" in records else None
        cheap_s = (cheap_meta.search_wall_time_s or cheap_meta.wall_time_s) if cheap_meta else None
        rows = []
        for k in ("cheap", "cold", "warm"):
            if k not in records:
                continue
            rec, pts = records[k], lines[k]
            best = max((v for _, v, _ in pts), key=lambda v: sign * v) if pts else float("nan")
            span = max((w for w, _, _ in pts), default=float("nan"))
            hit = reached[k]
            warm_from = next((s.warm_start for s in rec.stages if s.warm_start), None)
            rows.append(
                [
                    k,
                    str(rec.path),
                    str(len(rec.trials)),
                    f"{best:.4f}",
                    f"{span / 60:.1f}",
                    f"{hit[0] / 60:.1f} (`{hit[1]}`)" if hit else "not reached",
                    f"{hit[0] / cold_at:.2f}" if hit and k != "cheap" else "-",
                    f"{(hit[0] + cheap_s) / cold_at:.2f}" if hit and k == "warm" and cheap_s else "-",
                    (
                        f"{'evaluated' if warm_from.same_problem else 'enqueued'} "
                        f"{warm_from.evaluated or warm_from.enqueued} from {Path(warm_from.source).name}"
                    )
                    if warm_from
                    else "-",
                ]
            )
        print(header(f"Time to the cold search's best validation {metric}", NAME, argv))
        print()
        print(
            markdown_table(
                [
                    "search",
                    "folder",
                    "trials",
                    f"best validation {metric}",
                    "last report (min)",
                    f"reached {target:.4f} at (min)",
                    "time / cold's",
                    "with the cheap search's wall time / cold's",
                    "warm start",
                ],
                rows,
            )
        )
        print()
        print(
            f"Target: the cold search's best validation {metric}, {target:.4f}; times count from each "
            "search's first stage start (the cheap search's own time is not in the warm row)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
