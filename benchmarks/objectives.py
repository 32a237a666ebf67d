"""Which loss wins? MSE vs correlation loss (alpha 0.1, 0.3) vs multi-task vs CoSENT and AnglE.

Each variant is the CPU profile's baseline configuration (the 12-layer model on all KorSTS pairs)
trained for one epoch with one change, trained to the end over
the same seeds through the real search (`run_search.py --method seeds`), scored on validation and
on the test splits. Prints one table: mean ± std over seeds, and the epochs each variant needed
to reach a fixed validation Pearson (the first epoch at or above it, averaged over seeds that did).

    python -m benchmarks objectives               # CPU profile, 3 seeds (~1 h alone on 2 cores, estimated)
    python -m benchmarks objectives --quick       # builtin:tiny smoke, a minute
    python -m benchmarks objectives --seeds 5 --storage runs/bench-objectives   # issue 12's table

Figures recorded before 2026-11-30 were measured on the 4-layer, 1,000-pair profile of that time
(docs/benchmarks.md says which).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmarks/objectives.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import REPO, header, markdown_table, run_search

NAME = "objectives"
VARIANTS = {
    "mse": {"loss": "mse"},
    "corr_mae α=0.1": {"loss": "corr_mae", "alpha": 0.1},
    "corr_mae α=0.3": {"loss": "corr_mae", "alpha": 0.3},
    "multitask (mse + 0.5·BCE)": {"loss": "mse", "head": "multitask", "lambda": 0.5},
    "CoSENT": {"loss": "cosent"},
    "AnglE": {"loss": "angle"},
}
KEYS = dict(zip(("mse", "corr0.1", "corr0.3", "multitask", "cosent", "angle"), VARIANTS, strict=True))
"""Short names of the variants, for ``--only``."""
EPOCHS = 1
"""Every variant trains one epoch (the profile's baseline trains 4: too long for 5 seeds x 6 variants)."""


def epochs_to(trial_epochs: list[dict], target: float) -> int | None:
    """The first report's epoch (fractional with sub-epoch reports) whose validation Pearson
    reaches ``target`` (None if none did)."""
    return next((float(e["epoch"]) for e in trial_epochs if e.get("pearson", -1) >= target), None)


def summarize(record, target: float) -> dict:
    """Seed spread of validation/test Pearson and F1, and epochs to the target, of one run."""
    from reports.summary import mean_std, seed_spread

    stage = record.stages[0].stage
    spread = seed_spread(stage, record)
    reached = [epochs_to(t.reports, target) for t in record.trials]
    hits = [e for e in reached if e is not None]
    first = [float(t.reports[0]["pearson"]) for t in record.trials if t.reports]
    return {
        "spread": spread,
        "epoch1": mean_std(first),
        "epochs_to_target": mean_std([float(e) for e in hits]),
        "reached": f"{len(hits)}/{len(reached)}",
    }


def fmt(stat: tuple[float, float, int]) -> str:
    mean, std, n = stat
    return "-" if not n else f"{mean:.4f} ± {std:.4f}"


def table(rows: dict[str, dict], target: float) -> str:
    """The markdown table: one row per variant, mean ± std over seeds."""
    splits = sorted({s for r in rows.values() for s in r["spread"]["test"]})
    columns = ["variant", "val pearson", "val f1", *[f"{s} {m}" for s in splits for m in ("pearson", "f1")]]
    columns += ["val pearson after epoch 1", f"epochs to val pearson {target}", "seeds reaching it"]
    body = []
    for name, r in rows.items():
        sp = r["spread"]
        cells = [name, fmt(sp["validation"]["pearson"]), fmt(sp["validation"]["f1"])]
        cells += [fmt(sp["test"][s][m]) for s in splits for m in ("pearson", "f1")]
        mean, std, n = r["epochs_to_target"]
        cells += [fmt(r["epoch1"]), "-" if not n else f"{mean:.2f} ± {std:.2f}", r["reached"]]
        body.append(cells)
    return markdown_table(columns, body, align="l" + "r" * (len(columns) - 1))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog=f"python -m benchmarks {NAME}", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3, help="training seeds per variant (default 3)")
    p.add_argument("--target", type=float, default=0.85, help="validation Pearson to reach (default 0.85)")
    p.add_argument(
        "--quick", action="store_true", help="builtin:tiny smoke run (checks the script, not the ideas)"
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=list(KEYS),
        metavar="VARIANT",
        help=f"run only these variants, in this order (default: all): {', '.join(KEYS)}",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="keep the runs here (default: a temporary folder); variants finished there are read, "
        "unfinished ones resumed",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=4 * 3600,
        help="seconds per variant at most (default 4 h; 5 seeds of the 12-layer profile take ~35 min on 2 cores)",
    )
    args = p.parse_args(argv)
    from tuning.store import read_experiment

    storage = Path(args.storage or tempfile.mkdtemp(prefix="bench-objectives-")).resolve()
    storage.mkdir(parents=True, exist_ok=True)
    started = time.time()
    rows = {}
    flags = ("--seeds", str(args.seeds), *(["--smoke-test"] if args.quick else []))
    index = {name: i for i, name in enumerate(VARIANTS)}  # folder v<i> stays the variant's own
    for name in [KEYS[k] for k in args.only] if args.only else list(VARIANTS):
        i, change = index[name], VARIANTS[name]
        config = {
            "base": str(REPO / "search_spaces" / "cpu" / "baseline.yaml"),
            "name": f"v{i}",
            "training": {"num_epochs": EPOCHS, **change},
        }
        print(f"[{NAME}] {name} ...", file=sys.stderr, flush=True)
        done = run_search(config, "seeds", storage, f"v{i}", flags, timeout=args.timeout, reuse=True)
        rows[name] = summarize(read_experiment(done.path), args.target)
    profile = (
        "builtin:tiny smoke"
        if args.quick
        else f"CPU profile (e5-small-ko 12 layers, bi, all 5,749 KorSTS pairs, {EPOCHS} epoch)"
    )
    print(header("Losses and heads: MSE, correlation loss, multi-task, CoSENT, AnglE", NAME, argv))
    print(f"\n{profile}, {args.seeds} seeds per variant, {time.time() - started:.0f} s; runs in {storage}.\n")
    print(table(rows, args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
