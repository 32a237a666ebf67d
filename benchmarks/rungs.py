"""How well a trial's early validation Pearson predicts its full-budget one: what ASHA's rungs rest on.

    python -m benchmarks rungs --run                 # the demo's problem, 8 configurations, FIFO
    python -m benchmarks rungs --run --samples 10    # more configurations
    python -m benchmarks rungs runs/<name>           # a finished search with trials run to the end
    python -m benchmarks rungs --quick               # a smoke search (seconds; checks the script)

``--run`` searches the CPU profile's Optuna file (``make demo``'s problem) with random sampling
and no early stopping, so every configuration trains to the end. For each evaluation point (in
epochs) the table gives, over the trials that reached the end: Spearman's rank correlation of
the Pearson there with the final Pearson (and its 95% bootstrap interval over trials), whether
the final best is already the best there, and whether it is in the top ``1/reduction_factor``
there (the share ASHA lets continue). A rung belongs where the correlation is high enough that
ASHA rarely stops the eventual winner; ``search.grace_period`` sets the first one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python benchmarks/rungs.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import REPO, BenchmarkError, benchmark_parser, header, markdown_table

NAME = "rungs"


def search(storage: Path, samples: int, smoke: bool) -> Path:
    """The CPU profile's Optuna search with every configuration trained to the end."""
    command = [sys.executable, str(REPO / "run_search.py"), "--method", "optuna", "--profile", "cpu"]
    command += ["--storage", str(storage), "--name", "rungs", "--num-samples", str(samples)]
    command += ["--search.scheduler", "fifo", "--search.searcher", "random", "--search.time_budget", "null"]
    command += ["--search.soup", "false"]
    if smoke:
        command += ["--smoke-test", "--training.eval_every_pairs", "16"]
    log = storage / "rungs.log"
    with open(log, "w", encoding="utf-8") as out:
        done = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=4 * 3600)
    if done.returncode:
        tail = log.read_text(encoding="utf-8")[-3000:]
        raise BenchmarkError(f"the search failed (exit {done.returncode}); log {log}:\n{tail}")
    return storage / "rungs"


def curves(record: Any, metric: str) -> tuple[dict[str, dict[int, float]], int, int]:
    """Each trial's validation ``metric`` by training pairs seen, for the trials of ``record`` (a
    ``tuning.store.ExperimentRecord``) that reached the largest budget any trial reached; that
    budget; and the training pairs of one epoch."""
    from tuning import store

    by_trial = {
        f"{t.stage}/{t.trial_id}": {int(r[store.PAIRS]): float(r[metric]) for r in t.reports if metric in r}
        for t in record.trials
    }
    by_trial = {k: v for k, v in by_trial.items() if v}
    if not by_trial:
        raise BenchmarkError(f"{record.path}: no trial reported {metric}")
    end = max(max(v) for v in by_trial.values())
    epoch = max((s.train_pairs or 0) for s in record.stages)
    return {k: v for k, v in by_trial.items() if end in v}, end, epoch


def at_budget(curve: dict[int, float], t: int) -> float:
    """The value at the first report at or past ``t`` pairs: what ASHA records at a rung there
    (reports fall on whole optimizer steps, so trials of other batch sizes report elsewhere)."""
    return curve[min(p for p in curve if p >= t)]


def report_points(every: int | None, per_epoch: int, end: int) -> list[int]:
    """Where trials report, in pairs seen: every ``every`` pairs within each epoch and at each
    epoch's end (as the trainer reports), up to ``end``."""
    step = min(every or per_epoch, per_epoch)
    points: set[int] = set()
    for start in range(0, end, per_epoch):
        stop = min(start + per_epoch, end)
        points.update(range(start + step, stop, step))
        points.add(stop)
    return sorted(points)


def spearman_interval(
    x: list[float], y: list[float], draws: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Spearman's rho of ``x`` and ``y`` and a 95% percentile bootstrap interval over pairs."""
    import numpy as np
    from scipy.stats import spearmanr

    xs, ys = np.asarray(x), np.asarray(y)
    if len(set(xs)) < 2 or len(set(ys)) < 2:  # every trial scored the same: no ranking to compare
        return float("nan"), float("nan"), float("nan")
    rho = float(spearmanr(xs, ys).statistic)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(draws):
        i = rng.integers(0, len(xs), len(xs))
        if len(set(xs[i])) > 1 and len(set(ys[i])) > 1:
            boot.append(float(spearmanr(xs[i], ys[i]).statistic))
    low, high = np.percentile(boot, [2.5, 97.5]) if boot else (float("nan"), float("nan"))
    return rho, float(low), float(high)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = benchmark_parser(NAME, __doc__)
    p.add_argument("experiment", nargs="?", help="a finished experiment folder, <storage>/<name>")
    p.add_argument("--run", action="store_true", help="run the CPU profile's search first (about 40 min)")
    p.add_argument("--quick", action="store_true", help="run a smoke search first and read it")
    p.add_argument("--samples", type=int, default=8, help="configurations for --run (default 8)")
    p.add_argument(
        "--storage", type=Path, help="where --run keeps its experiment (default: a temporary folder)"
    )
    p.add_argument(
        "--reduction-factor", type=float, help="ASHA's, for the cutoff column (default: the experiment's)"
    )
    args: argparse.Namespace = p.parse_args(argv)
    if sum((bool(args.experiment), args.run, args.quick)) != 1:
        p.error("give an experiment folder, --run or --quick (one of them).")

    with tempfile.TemporaryDirectory() as tmp:
        if args.experiment:
            folder = Path(args.experiment)
        else:
            storage = args.storage or Path(tmp)
            storage.mkdir(parents=True, exist_ok=True)
            folder = search(storage, 2 if args.quick else args.samples, smoke=args.quick)
        from tuning import store
        from tuning.methods import rung_cutoff
        from tuning.metrics import MODES

        record = store.read_experiment(folder)
        meta = record.meta
        sign = 1.0 if MODES[meta.metric] == "max" else -1.0  # ASHA's metric_op
        factor = args.reduction_factor or meta.settings.search.reduction_factor
        by_trial, end, per_epoch = curves(record, meta.metric)
        if len(by_trial) < 2:
            raise BenchmarkError(
                f"{folder}: {len(by_trial)} trial(s) reached the end; a correlation needs 2+"
            )
        final = {k: v[end] for k, v in by_trial.items()}
        best = max(final, key=lambda k: sign * final[k])
        points = report_points(meta.settings.training.eval_every_pairs, per_epoch or end, end)
        rows = []
        for t in points:
            at = {k: at_budget(v, t) for k, v in by_trial.items()}
            names = sorted(at)
            rho, low, high = spearman_interval([at[k] for k in names], [final[k] for k in names])
            order = sorted(names, key=lambda k: -sign * at[k])
            cutoff = rung_cutoff((sign * v for v in at.values()), factor)
            kept = sum(sign * v >= cutoff for v in at.values())
            epochs = f"{t / per_epoch:.3g}" if per_epoch else "?"
            rows.append(
                [
                    f"{t:,}",
                    epochs,
                    f"{rho:+.2f} ({low:+.2f} to {high:+.2f})",
                    "yes" if order[0] == best else f"no (#{order.index(best) + 1})",
                    f"{'yes' if sign * at[best] >= cutoff else 'no'} ({kept} kept)",
                ]
            )
        print(header(f"Rank correlation of early and final validation {meta.metric}", NAME, argv))
        print()
        print(
            markdown_table(
                [
                    "pairs seen",
                    "epochs",
                    f"Spearman with final {meta.metric} (95% interval)",
                    "final best is best here",
                    f"final best above ASHA's cutoff (factor {factor:g}, all {len(by_trial)} at the rung)",
                ],
                rows,
            )
        )
        print()
        print(
            f"{len(by_trial)} configurations trained to {end:,} pairs ({folder}); the final best is `{best}` "
            f"({meta.metric} {final[best]:.4f}); finals range {min(final.values()):.4f}-{max(final.values()):.4f}."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
