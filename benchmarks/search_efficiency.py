"""Search efficiency: the compute (trial-epochs) each method needs to come within 0.005 of the best
validation Pearson the full grid finds.

    python -m benchmarks search_efficiency                  # CPU profile model, 400 pairs, 3 epochs (~17 min)
    python -m benchmarks search_efficiency --quick          # builtin:tiny, 64 pairs (~4 min)
    python -m benchmarks search_efficiency --seeds 1 2 3    # random/TPE/ASHA/PBT once per searcher seed
    python -m benchmarks search_efficiency --methods grid tpe_asha

Every method runs through the real ``run_search.py`` on a generated search-space file, with the
same model, data, epochs and training seed, so one configuration gives one result whichever
method tries it:

- ``grid``: the full grid (``--method grid --full-grid``) over learning rate x batch size x
  warm-up (default 4 x 3 x 2 = 24 trials, every one to the last epoch);
- ``random``, ``tpe``: Optuna's random / TPE sampler (``--method optuna``, FIFO) over the ranges
  the grid spans (log-uniform learning rate, the grid's batch sizes, uniform warm-up);
- ``tpe_asha``: TPE with ASHA stopping (grace 1 epoch, reduction factor 2: rungs at epochs 1 and 2
  of 3): the project's default;
- ``pbt``: population-based training (``--method pbt``) of a small population over the same ranges.

Results are read back from storage (``tuning.store.read_experiment``). Every epoch result of a run, in
the order Ray recorded them (its result timestamps, 1 s resolution), counts one trial-epoch; a
method's cost is the trial-epochs spent up to its first result within the tolerance of the grid's
best. The grid's own cost is all its trial-epochs: it knows its best only when every trial has
run. The goal: TPE + ASHA at <= 25% of the grid's compute. With trials running side by side, the
epochs still in progress when the target is reached are not counted (at most one per other
running trial).

TPE draws its first trials at random (``search.startup_trials``; by default a third of the
budget, 2 to 10, where Optuna's own default is always 10) and models the results after that.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python benchmarks/search_efficiency.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import MODELS, header, korsts_subset, markdown_table, model_parser, run_search

NAME = "search_efficiency"
GOAL = 0.25
"""TPE + ASHA's cost to reach the target, as a share of the grid's compute, at most."""
GOAL_METHOD = "tpe_asha"


@dataclass(frozen=True)
class Method:
    """How one tuning method is run."""

    label: str
    cli: str
    """``run_search.py --method``."""
    search: dict[str, Any] = field(default_factory=dict)
    """The ``search:`` settings it runs with."""
    flags: tuple[str, ...] = ()
    seeded: bool = True
    """Its trials depend on the searcher seed (the grid's do not)."""


METHODS: dict[str, Method] = {
    "grid": Method("full grid", "grid", {"scheduler": "fifo"}, ("--full-grid",), seeded=False),
    "random": Method("random search", "optuna", {"searcher": "random", "scheduler": "fifo"}),
    "tpe": Method("TPE", "optuna", {"searcher": "tpe", "scheduler": "fifo"}),
    "tpe_asha": Method(
        "TPE + ASHA",
        "optuna",
        {"searcher": "tpe", "scheduler": "asha", "grace_period": 1, "reduction_factor": 2},
    ),
    "pbt": Method("PBT", "pbt", {"perturbation_interval": 1}),
}
"""Method name -> how it runs; ``grid`` runs first (the others' target comes from it)."""


@dataclass
class Outcome:
    """One method run, read back from storage."""

    method: str
    seed: int | None
    trials: int
    results: list[tuple[float, float]]
    """(time, validation Pearson) of every epoch result, in any order."""

    @property
    def trial_epochs(self) -> int:
        return len(self.results)

    @property
    def best(self) -> float:
        return max((v for _, v in self.results if not math.isnan(v)), default=math.nan)


def to_target(results: Iterable[tuple[float, float]], target: float) -> int | None:
    """Trial-epochs spent, in time order, up to and including the first result >= ``target``.

    Ties in time keep their given order. ``None`` when no result reaches it (NaN never does).
    """
    ordered = sorted(results, key=lambda r: r[0])
    return next((n for n, (_, value) in enumerate(ordered, 1) if value >= target), None)


def table(outcomes: list[Outcome], tolerance: float, goal: float = GOAL) -> str:
    """The markdown table. The first outcome is the grid, whose best sets the target and whose
    trial-epochs are the denominator of every share."""
    grid = outcomes[0]
    target = grid.best - tolerance
    rows = []
    for o in outcomes:
        reached = to_target(o.results, target)
        if o is grid:
            spent, share = grid.trial_epochs, 1.0
            note = f"needs all to know its best (first within target: result {reached})"
        elif reached is None:
            spent, share = None, None
            note = f"not reached in {o.trial_epochs} trial-epochs"
        else:
            spent, share = reached, reached / grid.trial_epochs
            note = ""
        if o.method == GOAL_METHOD:
            verdict = "met" if share is not None and share <= goal else "not met"
            note = "; ".join(filter(None, [f"goal <= {goal:.0%}: {verdict}", note]))
        rows.append(
            [
                METHODS[o.method].label,
                "—" if o.seed is None else str(o.seed),
                str(o.trials),
                str(o.trial_epochs),
                f"{o.best:.4f}",
                "—" if spent is None else str(spent),
                "—" if share is None else f"{share:.0%}",
                note,
            ]
        )
    columns = [
        "method",
        "searcher seed",
        "trials",
        "trial-epochs run",
        "best val Pearson",
        "trial-epochs to target",
        "vs grid",
        "notes",
    ]
    return markdown_table(columns, rows, align="llrrrrrl")


def experiment(key: str, args: argparse.Namespace, seed: int | None) -> dict[str, Any]:
    """The search-space file of method ``key`` (every method on the same model, data and epochs)."""
    method = METHODS[key]
    search = {
        "metric": "pearson",
        "cpus_per_trial": 1,
        "max_concurrent_trials": args.concurrency,
        "max_failures": 1,
        "top_k": 1,
        "num_samples": args.population if key == "pbt" else args.samples,
        **({"seed": seed} if seed is not None else {}),
        **method.search,
    }
    config: dict[str, Any] = {
        "name": f"{NAME}-{key}",
        "data": korsts_subset(args.train_size, args.validation_size),
        "model": dict(MODELS[args.model]),
        "training": {"num_epochs": args.epochs, "seed": 42, "weight_decay": 0.0, "lr_schedule": "linear"},
        "search": search,
    }
    grid = {
        "learning_rate": args.learning_rates,
        "batch_size": args.batch_sizes,
        "warmup_ratio": args.warmups,
    }
    if key == "grid":
        config["stages"] = [
            {"name": name, "scheduler": "fifo", "space": {name: {"type": "grid", "values": list(values)}}}
            for name, values in grid.items()
        ]
    else:
        config["space"] = {
            "learning_rate": {
                "type": "loguniform",
                "low": min(args.learning_rates),
                "high": max(args.learning_rates),
            },
            "batch_size": {"type": "choice", "values": list(args.batch_sizes)},
            "warmup_ratio": {"type": "uniform", "low": min(args.warmups), "high": max(args.warmups)},
        }
    return config


def outcome(key: str, seed: int | None, path: Path) -> Outcome:
    """A finished run's epoch results, read back from storage."""
    from tuning.store import read_experiment

    record = read_experiment(path)
    results = [
        (float(row["timestamp"]), float(row.get("pearson", math.nan)))
        for trial in record.trials
        for row in trial.reports
    ]
    return Outcome(key, seed, len(record.trials), results)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = model_parser(NAME, __doc__)
    p.add_argument("--train-size", type=int, default=400, help="KorSTS training pairs (default 400)")
    p.add_argument("--validation-size", type=int, default=200, help="validation pairs (default 200)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3)")
    p.add_argument(
        "--learning-rates",
        type=float,
        nargs="+",
        default=[1e-5, 3e-5, 1e-4, 3e-4],
        help="grid (default 1e-5 3e-5 1e-4 3e-4)",
    )
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32], help="grid (default 8 16 32)")
    p.add_argument(
        "--warmups", type=float, nargs="+", default=[0.0, 0.1], help="grid of warm-up ratios (default 0 0.1)"
    )
    p.add_argument(
        "--samples", type=int, default=10, help="trials of random, TPE and TPE + ASHA (default 10)"
    )
    p.add_argument("--population", type=int, default=4, help="PBT's population (default 4)")
    p.add_argument(
        "--methods",
        nargs="+",
        choices=list(METHODS),
        default=list(METHODS),
        help="methods to run; grid always runs (default: all)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[42], help="searcher seeds (default 42)")
    p.add_argument("--concurrency", type=int, default=2, help="trials at once, 1 CPU each (default 2)")
    p.add_argument(
        "--tolerance", type=float, default=0.005, help="distance to the grid's best (default 0.005)"
    )
    p.add_argument(
        "--storage",
        help="keep the runs in this folder (default: a temporary one, removed); runs already finished "
        "there are read, not re-run",
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run at most (default 1800)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="builtin:tiny, 64/32 pairs, 2 epochs, a 2 x 1 x 2 grid, 3 samples, population 2",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.train_size, args.validation_size, args.epochs = "tiny", 64, 32, 2
        args.learning_rates, args.batch_sizes, args.samples, args.population = [1e-4, 1e-3], [16], 3, 2
    args.methods = ["grid", *(m for m in dict.fromkeys(args.methods) if m != "grid")]
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="bench-search-") as scratch:
        tmp = Path(args.storage).resolve() if args.storage else Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        for key in args.methods:
            method = METHODS[key]
            for seed in args.seeds if method.seeded else [None]:
                name = key if seed is None else f"{key}-seed{seed}"
                print(f"[{NAME}] {name} ...", file=sys.stderr, flush=True)
                flags = method.flags
                done = run_search(
                    experiment(key, args, seed),
                    method.cli,
                    tmp,
                    name,
                    flags,
                    timeout=args.timeout,
                    reuse=True,
                )
                outcomes.append(outcome(key, seed, done.path))
                o = outcomes[-1]
                print(
                    f"[{NAME}] {name}: {o.trials} trials, {o.trial_epochs} trial-epochs, best {o.best:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
    grid = outcomes[0]
    print(header("Search efficiency: compute to reach the full grid's best", NAME, argv))
    print(
        f"\n{args.model} on {args.train_size} KorSTS training / {args.validation_size} validation "
        f"pairs, {args.epochs} epochs per trial, training seed 42; grid learning rate "
        f"{args.learning_rates} x batch {args.batch_sizes} x warm-up {args.warmups} = {grid.trials} "
        f"trials; random/TPE/TPE + ASHA {args.samples} trials, PBT population {args.population}, "
        f"over the grid's ranges; {args.concurrency} trials at once, 1 CPU each. Target: the grid's "
        f"best validation Pearson {grid.best:.4f} - {args.tolerance:g} = {grid.best - args.tolerance:.4f}.\n"
    )
    print(table(outcomes, args.tolerance))
    from tuning.methods import default_startup_trials

    print(
        f"\nTPE's first {default_startup_trials(args.samples)} of {args.samples} trials are drawn at random "
        "(`search.startup_trials`, a third of the budget); it models the results from then on."
    )
    shares = [
        spent / grid.trial_epochs
        for o in outcomes
        if o.method == GOAL_METHOD and (spent := to_target(o.results, grid.best - args.tolerance))
    ]
    runs = sum(o.method == GOAL_METHOD for o in outcomes)
    if runs > 1:
        median = (
            f"{statistics.median(shares):.0%}" if len(shares) == runs else "n/a (not every seed reached it)"
        )
        print(f"\nTPE + ASHA over {runs} seeds: median {median} of the grid's compute (goal <= {GOAL:.0%}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
