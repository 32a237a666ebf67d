"""fp32 against bf16 autocast on this CPU, and what ``precision: auto`` chooses here.

    python -m benchmarks precision            # the CPU profile's model (e5-small-ko, 12 layers, bi), ~1 min
    python -m benchmarks precision --quick    # builtin:tiny (seconds; checks the script)

    # an AVX2-only CPU imitated on an AVX-512 one (torch's kernels and oneDNN both lowered):
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python -m benchmarks precision

Each precision is measured by ``tuning.hardware.probe_throughput``, the probe a search runs
before it starts: optimizer steps of the CPU profile's model on real KorSTS training pairs
(batch 32, max length 64, frozen token embeddings, 1 thread as a 1-CPU trial), then a validation
pass; the rows are taken one after the other in one process. The last lines give
``resolve_precision('auto')``'s choice and its sub-second measurement.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmarks/precision.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import benchmark_parser, header, markdown_table

NAME = "precision"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = benchmark_parser(NAME, __doc__)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as a 1-CPU trial)")
    p.add_argument("--steps", type=int, default=4, help="timed optimizer steps per precision (default 4)")
    p.add_argument("--quick", action="store_true", help="builtin:tiny instead of e5-small-ko")
    args: argparse.Namespace = p.parse_args(argv)

    from tuning.data import load_splits
    from tuning.hardware import cpu_facts, measure_cpu_bf16_speedup, probe_throughput, resolve_precision
    from tuning.settings import DataConfig, ModelConfig, TrainingConfig, shared_dir
    from tuning.trial_config import TrialSettings

    data = DataConfig(source="korsts", train_size=640, validation_size=128)
    splits = load_splits(data)
    model = "builtin:tiny" if args.quick else str(shared_dir() / "models" / "e5-small-ko")
    cfg = ModelConfig(name_or_path=model, architecture="bi", max_length=64)
    rows, base = [], None
    for precision in ("fp32", "bf16"):
        training = TrainingConfig(batch_size=32, freeze_embeddings=True, precision=precision)
        settings = TrialSettings(data=data, model=cfg, training=training, threads=args.threads)
        print(f"[{NAME}] {precision} ...", file=sys.stderr, flush=True)
        t = probe_throughput(settings, splits, steps=args.steps)
        base = base or t.train_pairs_s
        rows.append(
            [precision, f"{t.train_pairs_s:.2f}", f"{t.train_pairs_s / base:.2f}x", f"{t.eval_pairs_s:.1f}"]
        )
    choice = resolve_precision("auto", cuda=False)
    print(header("fp32 vs bf16 autocast on this CPU, and what `auto` chooses", NAME, argv))
    facts = cpu_facts()
    print(
        f"\n{'builtin:tiny' if args.quick else 'e5-small-ko, 12 layers, bi'}; batch 32, max length 64, frozen "
        f"token embeddings; {args.threads} thread(s). torch: {facts}.\n"
    )
    print(markdown_table(["precision", "train pairs/s", "vs fp32", "validation pairs/s"], rows))
    print(
        f"\n`precision: auto` -> **{choice.precision}** ({choice.reason}); the probe's MLP: bf16 "
        f"{measure_cpu_bf16_speedup(args.threads):.2f}x fp32."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
