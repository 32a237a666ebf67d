"""Parallel scaling on this machine: the same trials with 1 vs 2 running at once, 1 CPU each.

    python -m benchmarks scaling                    # 4 trials x 2 epochs, e5-small-ko (4 layers), 480 pairs (~10 min)
    python -m benchmarks scaling --quick            # builtin:tiny, 64 pairs (~2 min)
    python -m benchmarks scaling --concurrency 1 2 --trials 6
    python -m benchmarks scaling --gpu --concurrency 1 2 4 --trials 8 --train-size 5749   # trials packed on one GPU

``run_search.py --method grid`` over the same learning-rate grid (FIFO, 1 CPU and 1 torch thread
per trial, actors reused), once per ``--max-concurrent-trials`` value. The wall time is the
stage's (``stage.json``: Tuner created to ``fit`` returned), so ``run_search.py``'s start-up and
report, the same for every run, do not dilute the speed-up; it does hold the actors' start (a
worker process importing torch and transformers: one, or n at once). Speed-up = wall(1) / wall(n);
efficiency = speed-up / n. The trials' span (first ``run_training`` start to last report, placed
in time by the trials' TensorBoard runs) leaves the actors' start out: its speed-up is the steady
state's. Trials running side by side share the machine's cores and memory bandwidth (and here,
other people's jobs): the mean trial time shows how much each slows down.
Scaling over several Ray nodes is ``cluster_scaling``'s subject.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmarks/scaling.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import grid_experiment, header, markdown_table, model_parser, run_search, spread
from benchmarks.overhead import ray_trials

NAME = "scaling"


@dataclass
class Run:
    """The trials run with ``concurrency`` of them at once."""

    concurrency: int
    wall_s: float
    """The stage's wall time."""
    span_s: float
    """The first trial's ``run_training`` start to the last one's last report (no actor start-up)."""
    trial_s: list[float]
    """Each trial's own time (Ray's ``time_total_s``)."""


def table(runs: list[Run]) -> str:
    """The markdown table; speed-up and efficiency are against the first run (fewest at once)."""
    base = runs[0]
    base_trial = sum(base.trial_s) / len(base.trial_s)
    rows = []
    for r in runs:
        speedup = base.wall_s / r.wall_s
        mean_trial = sum(r.trial_s) / len(r.trial_s)
        rows.append(
            [
                str(r.concurrency),
                str(len(r.trial_s)),
                f"{r.wall_s:.1f}",
                f"{r.span_s:.1f}",
                f"{mean_trial:.1f}",
                f"{mean_trial / base_trial:.2f}x",
                f"{speedup:.2f}x",
                f"{speedup * base.concurrency / r.concurrency:.0%}",
                f"{base.span_s / r.span_s:.2f}x",
            ]
        )
    columns = [
        "trials at once",
        "trials",
        "wall (s)",
        "trials' span (s)",
        "mean trial time (s)",
        "trial slow-down",
        "speed-up",
        "efficiency",
        "speed-up of the span",
    ]
    return markdown_table(columns, rows, align="r" * len(columns))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = model_parser(NAME, __doc__)
    p.add_argument("--trials", type=int, default=4, help="configurations (default 4)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per trial (default 2)")
    p.add_argument("--train-size", type=int, default=480, help="KorSTS training pairs (default 480)")
    p.add_argument("--validation-size", type=int, default=160, help="validation pairs (default 160)")
    p.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 2],
        help="trials at once, one run each (default 1 2)",
    )
    p.add_argument("--timeout", type=float, default=1200, help="seconds per run at most (default 1200)")
    p.add_argument(
        "--gpu", action="store_true", help="share one GPU: with n trials at once each gets 1/n of it"
    )
    p.add_argument("--quick", action="store_true", help="builtin:tiny, 64 training / 32 validation pairs")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.train_size, args.validation_size = "tiny", 64, 32
    if args.gpu:
        from tuning.settings import gpu_names

        if not gpu_names():
            p.error("--gpu shares a CUDA GPU among the trials, and this machine has none: drop --gpu.")
    args.concurrency = sorted(set(args.concurrency))
    cpus = os.cpu_count() or 1
    wrong = [c for c in args.concurrency if not 1 <= c <= cpus]
    if wrong:
        p.error(f"--concurrency values must lie in 1..{cpus} (1 CPU per trial on {cpus} CPUs), got {wrong}.")
    return args


def main(argv: list[str] | None = None) -> int:
    from tuning.store import read_experiment

    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    rates = spread(2e-5, 1e-4, args.trials)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        for n in args.concurrency:
            gpus = 1 / n if args.gpu else 0
            config = grid_experiment(
                NAME, args.model, rates, args.epochs, args.train_size, args.validation_size, n, gpus
            )
            done = run_search(config, "grid", Path(tmp), f"concurrency-{n}", timeout=args.timeout)
            record = read_experiment(done.path)
            stage = record.stages[0]
            trials = ray_trials(record)
            span = max(t.end for t in trials) - min(t.start for t in trials)
            trial_s = [float(t.rows[-1]["time_total_s"]) for t in trials]
            runs.append(Run(n, (stage.ended or stage.started) - stage.started, span, trial_s))
            print(f"[{NAME}] {runs[-1]}", file=sys.stderr, flush=True)
    print(header("Parallel trials on one machine", NAME, argv))
    print(
        f"\n{args.trials} trials (learning rates {rates}) x {args.epochs} epochs, {args.model} on "
        f"{args.train_size} KorSTS training / {args.validation_size} validation pairs, batch 16; "
        f"1 CPU and 1 torch thread per trial{' and 1/n of the GPU (n at once)' if args.gpu else ''}, FIFO, actors reused; {os.cpu_count()} CPUs. "
        "Wall time is the stage's (Tuner created to `fit` returned).\n"
    )
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
