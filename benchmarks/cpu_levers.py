"""CPU speed levers of the 12-layer profile: frozen token embeddings, bf16 autocast, frozen layers.

    python -m benchmarks cpu_levers              # 640 KorSTS pairs, e5-small-ko 12 layers, bi (~6 min)
    python -m benchmarks cpu_levers --quick      # builtin:tiny, 64 pairs (seconds; checks the script)
    python -m benchmarks cpu_levers --threads 2  # one trial on both cores

One epoch of ``run_training`` per lever on the same pairs, seed and model (the CPU profile's
e5-small-ko, all 12 layers, bi-encoder, batch 32), each run alone, one after the other. The
table gives training pairs per second (the validation pass and the set-up are left out: the
wall time to the epoch's report minus the Trainer's ``eval_runtime`` minus a two-pair run's
time), validation pairs per second, and the validation Pearson after the epoch, so a lever that
is fast but learns less shows it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python benchmarks/cpu_levers.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import header, markdown_table

NAME = "cpu_levers"
LEVERS: dict[str, dict[str, Any]] = {
    "fp32, everything trained (KLUE's recipe)": {"precision": "fp32"},
    "frozen token embeddings": {"freeze_embeddings": True, "precision": "fp32"},
    "frozen embeddings + bf16 autocast (the CPU profile)": {"freeze_embeddings": True, "precision": "bf16"},
    "... + first 6 layers frozen": {"freeze_embeddings": True, "precision": "bf16", "freeze_layers": 6},
}


def run(settings: Any, splits: Any) -> tuple[float, float, float]:
    """One epoch: (wall seconds to its report, the validation pass's seconds, validation Pearson)."""
    from benchmarks.throughput import epoch

    return epoch(settings, splits, pad_to=None)


def measure(args: argparse.Namespace) -> list[list[str]]:
    import datasets

    from tuning.data import load_splits
    from tuning.settings import DataConfig, ModelConfig, TrainingConfig, shared_dir
    from tuning.trial import TrialSettings

    data = DataConfig(source="korsts", train_size=args.train_size, validation_size=args.validation_size)
    splits = load_splits(data)
    splits = datasets.DatasetDict({k: splits[k] for k in ("train", "validation")})
    model = "builtin:tiny" if args.quick else str(shared_dir() / "models" / "e5-small-ko")
    cfg = ModelConfig(name_or_path=model, architecture="bi", max_length=64)

    def settings(batch_size: int = 32, **lever: Any) -> TrialSettings:
        training = TrainingConfig(num_epochs=1, batch_size=batch_size, seed=42, **lever)
        return TrialSettings(data=data, model=cfg, training=training, threads=args.threads)

    # Set-up (tokenizer, model load, Trainer, checkpoint): a run on two pairs, warm-up first.
    two = datasets.DatasetDict({k: v.select(range(2)) for k, v in splits.items()})
    for _ in range(2):
        wall, validation_s, _ = run(settings(batch_size=2), two)
    setup_s = wall - validation_s
    rows, base = [], None
    for name, lever in LEVERS.items():
        if args.quick and lever.get("freeze_layers", 0) > 2:
            lever = {**lever, "freeze_layers": 1}  # the tiny model has 2 layers
        print(f"[{NAME}] {name} ...", file=sys.stderr, flush=True)
        wall, validation_s, pearson = run(settings(**lever), splits)
        train_rate = len(splits["train"]) / max(wall - validation_s - setup_s, 1e-9)
        base = base or train_rate
        rows.append(
            [
                name,
                f"{train_rate:.1f}",
                f"{train_rate / base:.2f}x",
                f"{len(splits['validation']) / validation_s:.1f}",
                f"{pearson:.4f}",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog=f"python -m benchmarks {NAME}", description=__doc__.splitlines()[0])
    p.add_argument("--train-size", type=int, default=640, help="KorSTS training pairs (default 640)")
    p.add_argument("--validation-size", type=int, default=320, help="validation pairs (default 320)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as a 1-CPU trial)")
    p.add_argument("--quick", action="store_true", help="builtin:tiny, 64 training / 32 validation pairs")
    args = p.parse_args(argv)
    if args.quick:
        args.train_size, args.validation_size = 64, 32
    rows = measure(args)
    print(header("CPU speed levers: frozen embeddings, bf16 autocast, frozen layers", NAME, argv))
    model = "builtin:tiny" if args.quick else "e5-small-ko, 12 layers, bi"
    print(
        f"\n{model}; {args.train_size} training / {args.validation_size} validation pairs; {args.threads} thread(s).\n"
    )
    columns = ["lever", "train pairs/s", "speed-up", "validation pairs/s", "val pearson after 1 epoch"]
    print(markdown_table(columns, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
