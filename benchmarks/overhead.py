"""Orchestration overhead: the same trials through Ray Tune vs one after another in a plain process.

    python -m benchmarks overhead            # 4 trials x 1 epoch, e5-small-ko (4 layers), 256 pairs (~6 min)
    python -m benchmarks overhead --quick    # builtin:tiny, 64 pairs (~3 min)
    python -m benchmarks overhead --trials 8 --train-size 500

The same N configurations (a learning-rate grid, 1 CPU and 1 torch thread each) run three ways:

1. a plain process calling ``run_training`` in a loop (this process, data loaded once);
2. ``run_search.py --method grid``, one trial at a time, trial actors reused (the project's
   setting, ``reuse_actors=True``);
3. the same with a new actor per trial: ``run_search.py`` in a driver that forces
   ``reuse_actors=False`` into ``TuneConfig`` (``tuning/methods/_stage.py`` has no setting for
   it; a ``search.reuse_actors`` field would make this a plain flag).

Ray's wall time is its stage's, from ``stage.json`` (Tuner created to ``fit`` returned): the
driver's imports, data loading and ``ray.init`` (timed apart, each in a fresh process) are not in
it. It splits, on one clock, into ``run_training``'s own time (``elapsed_s`` at each trial's last
report, placed in time by the trial's first validation point in TensorBoard), the time before the
first trial (the Tuner's start, the first actor: a new worker process and its imports), the gaps
between trials (the Trainer's end, the trial function's return, the actor's reset or a new actor,
scheduling, the next trial's set-up), and the time after the last one. Ray's ``time_total_s``
tells which part of that happens inside a trial (data from the object store, checkpoints copied
to storage).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python benchmarks/overhead.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import (
    REPO,
    BenchmarkError,
    grid_experiment,
    header,
    markdown_table,
    model_parser,
    run_search,
    spread,
)
from tuning.store import StageRecord

NAME = "overhead"
# Runs run_search.py with every TuneConfig built with reuse_actors=False (argv as run_search.py's).
NO_REUSE_DRIVER = (
    "import runpy, sys\n"
    "from ray import tune\n"
    "_config = tune.TuneConfig\n"
    "tune.TuneConfig = lambda **kwargs: _config(**{**kwargs, 'reuse_actors': False})\n"
    f"sys.argv[0] = {str(REPO / 'run_search.py')!r}\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)
RAY_PROBE = (
    "import json, time\n"
    "t0 = time.perf_counter()\n"
    "import ray\n"
    "t1 = time.perf_counter()\n"
    "ray.init(include_dashboard=False, log_to_driver=False)\n"
    "t2 = time.perf_counter()\n"
    "ray.shutdown()\n"
    "t3 = time.perf_counter()\n"
    "print(json.dumps({'import ray': t1 - t0, 'ray.init()': t2 - t1, 'ray.shutdown()': t3 - t2}))\n"
)
IMPORT_PROBE = (
    "import json, time\n"
    "t0 = time.perf_counter()\n"
    "import tuning.trial\n"
    "print(json.dumps({'import tuning.trial': time.perf_counter() - t0}))\n"
)


@dataclass
class Timing:
    """N trials run one way; durations in seconds, summed over the trials unless said otherwise."""

    run: str
    trials: int
    wall_s: float
    """Plain: the ``run_training`` calls; Ray: the stage, Tuner created to ``fit`` returned."""
    training_s: float
    """``run_training``'s own clock at each trial's last report."""
    between_s: float
    """Plain: each call after its last report (the Trainer's end). Ray: from each trial's last
    report to the next trial's ``run_training`` start."""
    in_trial_s: float | None = None
    """Ray: inside the trials' ``train()`` calls but outside ``run_training``'s clock."""
    first_s: float | None = None
    """Ray: the stage's start to the first ``run_training`` start."""
    last_s: float | None = None
    """Ray: the last report to the stage's end."""
    processes: int | None = None
    """Ray: worker processes the trials ran in."""


@dataclass
class RayTrial:
    """One Ray trial, as its results and its TensorBoard run tell it."""

    first_eval: float
    """``time.time()`` of its first validation point (TensorBoard wall time)."""
    rows: list[dict[str, Any]]
    """Ray's result rows, one per epoch (``elapsed_s``, ``time_total_s``, ``pid``)."""

    @property
    def start(self) -> float:
        """When ``run_training`` started (its clock read ``elapsed_s`` at the first result)."""
        return self.first_eval - float(self.rows[0]["elapsed_s"])

    @property
    def end(self) -> float:
        """When the last result was reported."""
        return self.start + float(self.rows[-1]["elapsed_s"])


def ray_trials(record: Any) -> list[RayTrial]:
    """The trials of an experiment record (``tuning.store.read_experiment``) that reported, placed in
    time by their TensorBoard runs (``<experiment>/tensorboard/<trial>``)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trials = []
    for t in record.trials:
        if not t.reports:
            continue
        events = EventAccumulator(str(Path(record.path, "tensorboard", Path(t.path).name)))
        events.Reload()
        trials.append(RayTrial(events.Scalars("validation/pearson")[0].wall_time, t.reports))
    return trials


def ray_timing(run: str, stage: StageRecord, trials: list[RayTrial]) -> Timing:
    """A one-trial-at-a-time Ray stage's timing; training, before, between and after add up to
    the stage's wall time.

    Args:
        run: the row's name.
        stage: the stage's record (``started``/``ended``, ``time.time()``).
        trials: its trials (any order).
    """
    trials = sorted(trials, key=lambda t: t.start)
    started, ended = stage.started, stage.ended or stage.started
    return Timing(
        run=run,
        trials=len(trials),
        wall_s=ended - started,
        training_s=sum(float(t.rows[-1]["elapsed_s"]) for t in trials),
        between_s=sum(b.start - a.end for a, b in itertools.pairwise(trials)),
        in_trial_s=sum(float(t.rows[-1]["time_total_s"]) - float(t.rows[-1]["elapsed_s"]) for t in trials),
        first_s=trials[0].start - started,
        last_s=ended - trials[-1].end,
        processes=len({row["pid"] for t in trials for row in t.rows}),
    )


def table(timings: list[Timing]) -> str:
    """The markdown table; the first timing is the plain process every other is compared with."""
    plain = timings[0]

    def cell(value: float | None, n: int = 1) -> str:
        return "—" if value is None else f"{value / n:.2f}"

    rows = []
    for t in timings:
        n = t.trials
        gaps = n if t is plain else max(n - 1, 1)
        rows.append(
            [
                t.run,
                str(n),
                "—" if t.processes is None else str(t.processes),
                f"{t.wall_s:.1f}",
                f"{t.wall_s / plain.wall_s:.2f}x",
                "—" if t is plain else f"{(t.wall_s - plain.wall_s) / n:+.2f}",
                cell(t.training_s, n),
                cell(t.first_s),
                cell(t.between_s, gaps),
                cell(t.last_s),
                cell(t.in_trial_s, n),
            ]
        )
    columns = [
        "run",
        "trials",
        "worker processes",
        "wall (s)",
        "vs plain",
        "overhead per trial (s)",
        "run_training (s/trial)",
        "before 1st trial (s)",
        "between trials (s/gap)",
        "after last (s)",
        "in trial, outside run_training (s/trial)",
    ]
    return markdown_table(columns, rows)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = model_parser(NAME, __doc__)
    p.add_argument("--trials", type=int, default=4, help="configurations (default 4)")
    p.add_argument("--epochs", type=int, default=1, help="epochs per trial (default 1)")
    p.add_argument("--train-size", type=int, default=256, help="KorSTS training pairs (default 256)")
    p.add_argument("--validation-size", type=int, default=128, help="validation pairs (default 128)")
    p.add_argument("--reuse-only", action="store_true", help="skip the run with a new actor per trial")
    p.add_argument("--timeout", type=float, default=900, help="seconds per Ray run at most (default 900)")
    p.add_argument("--quick", action="store_true", help="builtin:tiny, 64 training / 32 validation pairs")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.train_size, args.validation_size = "tiny", 64, 32
    if args.trials < 2:
        p.error(f"--trials must be at least 2 (gaps between trials are measured), got {args.trials}.")
    return args


def probe(code: str) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter in the repository; it prints one JSON object."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    if out.returncode:
        raise BenchmarkError(f"probe failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def plain(config: dict[str, Any], scratch: Path) -> tuple[Timing, int]:
    """The trials one after another in this process; also the pickled size of the data (bytes)."""
    from tuning.data import load_splits
    from tuning.methods import trial_data
    from tuning.settings import parse_experiment
    from tuning.trial import TrialSettings, run_training
    from tuning.trial_config import trial_config, with_values

    exp = parse_experiment(config, "overhead")
    exp.storage, exp.name = str(scratch), "plain"
    data = trial_data(load_splits(exp.data))
    base = trial_config(exp)
    wall = training = 0.0
    rates = config["stages"][0]["space"]["learning_rate"]["values"]
    for i, rate in enumerate(rates):
        settings = TrialSettings.from_dict(with_values(base, {"learning_rate": rate}))
        settings.tensorboard_dir = str(scratch / "plain" / "tensorboard" / f"trial{i}")
        reports: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="overhead-") as out:
            started = time.perf_counter()
            run_training(settings, data, out, lambda metrics, _, seen=reports: seen.append(metrics))
            wall += time.perf_counter() - started
        training += float(reports[-1]["elapsed_s"])
    timing = Timing("plain process, `run_training` in a loop", len(rates), wall, training, wall - training)
    return timing, len(pickle.dumps(data))


def ray(
    run: str, config: dict[str, Any], scratch: Path, name: str, timeout: float, driver: tuple[str, ...] | None
) -> tuple[Timing, float, int]:
    """The trials through ``run_search.py``; also its process wall time and one checkpoint's size."""
    from tuning.store import read_experiment

    done = run_search(config, "grid", scratch, name, driver=driver, timeout=timeout)
    record = read_experiment(done.path)
    trials = ray_trials(record)
    checkpoints = [c for t in record.trials for c in Path(t.path).glob("checkpoint_*")]
    size = sum(f.stat().st_size for f in checkpoints[0].rglob("*") if f.is_file()) if checkpoints else 0
    return ray_timing(run, record.stages[0], trials), done.wall_s, size


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    rates = spread(2e-5, 1e-4, args.trials)
    config = grid_experiment(NAME, args.model, rates, args.epochs, args.train_size, args.validation_size, 1)
    # 1. Start-up costs, each in a fresh process.
    startup = probe(RAY_PROBE) | probe(IMPORT_PROBE)
    print(f"[{NAME}] fresh-process start-up: {startup}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        scratch = Path(tmp)
        # 2. The plain loop, then Ray with and without actor reuse.
        timing, data_bytes = plain(config, scratch)
        timings = [timing]
        print(f"[{NAME}] {timing}", file=sys.stderr, flush=True)
        runs = [("Ray Tune, trial actors reused", "reuse", None)]
        if not args.reuse_only:
            runs.append(
                ("Ray Tune, a new actor per trial", "no-reuse", (sys.executable, "-c", NO_REUSE_DRIVER))
            )
        process_wall = checkpoint_bytes = 0.0
        for run, name, driver in runs:
            timing, wall, size = ray(run, config, scratch, name, args.timeout, driver)
            process_wall, checkpoint_bytes = (
                (wall, size) if driver is None else (process_wall, checkpoint_bytes)
            )
            timings.append(timing)
            print(f"[{NAME}] {timing}", file=sys.stderr, flush=True)
    print(header("Ray Tune's orchestration overhead", NAME, argv))
    print(
        f"\n{args.trials} trials (learning rates {rates}) x {args.epochs} epoch(s), {args.model} on "
        f"{args.train_size} KorSTS training / {args.validation_size} validation pairs, batch 16; "
        "1 CPU and 1 torch thread per trial, one trial at a time, FIFO. Ray's wall time is its "
        "stage's (Tuner created to `fit` returned).\n"
    )
    print(table(timings))
    print(
        "\n- Start-up, each in a fresh process: "
        + ", ".join(f"`{k}` {v:.2f} s" for k, v in startup.items())
        + " (a new trial actor's worker imports `tuning.trial`: torch, transformers, datasets)."
    )
    print(
        "- `run_search.py` as a whole (imports, data, `ray.init`, the search, best-model export, report): "
        f"{process_wall:.1f} s for the reused-actor run, whose stage took {timings[1].wall_s:.1f} s."
    )
    print(
        f"- Data each trial fetches from the object store: {data_bytes / 1e3:.0f} kB pickled; "
        f"checkpoint copied to storage per epoch: {checkpoint_bytes / 1e6:.1f} MB."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
