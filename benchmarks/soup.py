"""Soups of a finished search's scored checkpoints on validation and every held-out split.

    python -m benchmarks soup runs/<name>          # the checkpoints test_scores.json names
    python -m benchmarks soup --quick              # a smoke search first (seconds; checks the script)

The search exports a greedy soup (``tuning.soup``): checkpoints, best first by validation, are
averaged in only while validation improves. This table shows what that rule chose and what it
left: every prefix of the same order (the best alone, the best two averaged, ...), each with
its validation Pearson (what the rule sees) and its held-out Pearson (what a user gets), with
the held-out gap to the best alone and its paired bootstrap 95% interval. The experiment's data
are loaded as the search loaded them (its saved config).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmarks/soup.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import REPO, BenchmarkError, benchmark_parser, header, markdown_table

NAME = "soup"


def smoke(storage: Path) -> Path:
    """A smoke optuna search of the CPU profile (the tiny model): an experiment to read."""
    import subprocess

    command = [sys.executable, str(REPO / "run_search.py"), "--method", "optuna", "--profile", "cpu"]
    command += ["--smoke-test", "--storage", str(storage), "--name", "soup"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise BenchmarkError(f"the smoke search failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return storage / "soup"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = benchmark_parser(NAME, __doc__)
    p.add_argument("experiment", nargs="?", help="a finished experiment folder, <storage>/<name>")
    p.add_argument("--quick", action="store_true", help="run a smoke search first and read it")
    args: argparse.Namespace = p.parse_args(argv)
    if bool(args.experiment) == args.quick:
        p.error("give an experiment folder, or --quick (not both).")

    import numpy as np
    import torch

    from tuning import store
    from tuning.control import paired_gap
    from tuning.data import load_splits
    from tuning.hardware import cpu_count
    from tuning.metrics import MODES, compute_all
    from tuning.model import STSModel, predict
    from tuning.soup import average, best_config
    from tuning.trial_config import TrialSettings
    from tuning.winners import load_checkpoint, test_splits

    torch.set_num_threads(cpu_count())
    with tempfile.TemporaryDirectory() as tmp:
        folder = smoke(Path(tmp)) if args.quick else Path(args.experiment)
        record = store.read_experiment(folder)
        metric = record.meta.metric
        sign = 1.0 if MODES[metric] == "max" else -1.0
        scored = sorted(
            (
                s
                for s in record.test_scores
                if s.role in ("top", "recipe") and s.checkpoint and metric in s.validation
            ),
            key=lambda s: -sign * s.validation[metric],
        )
        if not scored:
            raise BenchmarkError(f"{folder}: no scored checkpoint to average (test_scores.json)")
        splits = load_splits(record.meta.settings.data)
        names = ["validation", *test_splits(splits)]
        max_length = TrialSettings.from_dict(best_config(scored[0])).model.max_length
        model, tokenizer = load_checkpoint(scored[0].checkpoint or "")
        first = {k: v.clone() for k, v in model.state_dict().items()}  # loading below writes into model
        states = [first, *(STSModel.from_checkpoint(s.checkpoint or "").state_dict() for s in scored[1:])]
        rows, first = [], {}
        for k in range(1, len(scored) + 1):
            model.load_state_dict(average(states[:k]))
            scores = {}
            for name in names:
                pairs = list(zip(splits[name]["sentence1"], splits[name]["sentence2"]))
                scores[name] = predict(model, tokenizer, pairs, max_length)
            first = first or scores
            row = [" + ".join(f"`{s.stage}/{s.trial_id}`" for s in scored[:k])]
            for name in names:
                labels = np.asarray(splits[name]["label"])
                value = compute_all(scores[name], labels)["pearson"]
                if k == 1 or name == "validation":
                    row.append(f"{value:.4f}")
                else:
                    gap = paired_gap(labels, scores[name], first[name])
                    row.append(f"{value:.4f} ({gap.gap:+.4f}, {gap.low:+.4f} to {gap.high:+.4f})")
            rows.append(row)
        exported = record.meta.soup.ingredients if record.meta.soup else None
        print(header("Soups of the scored checkpoints, best first by validation", NAME, argv))
        print()
        print(markdown_table(["averaged", *(f"{n} Pearson" for n in names)], rows))
        print()
        print(
            f"Exported by the search: {' + '.join(exported) if exported else 'no soup record (search.soup off)'}. "
            "Held-out cells: Pearson (gap to the best alone, paired bootstrap 95% interval)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
