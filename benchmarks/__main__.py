"""``python -m benchmarks NAME [flags]`` runs one benchmark; ``all`` runs every one in turn.

python -m benchmarks --help              # the list
python -m benchmarks throughput --quick  # one, shrunk for development
python -m benchmarks all                 # every one at its default size (make bench)
python -m benchmarks all --quick         # every one, shrunk
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

from benchmarks import BENCHMARKS, REPO, BenchmarkError


def parse_args(argv: list[str]) -> argparse.Namespace:
    listing = "\n".join(f"  {name:<18} {b.summary}" for name, b in BENCHMARKS.items())
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run a benchmark; each prints one markdown table.",
        epilog=f"benchmarks:\n{listing}\n  {'all':<18} every one in turn, each in its own process\n\n"
        "`python -m benchmarks NAME --help` lists a benchmark's flags.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", choices=[*BENCHMARKS, "all"], metavar="NAME", help="a benchmark, or `all`")
    p.add_argument(
        "args",
        nargs=argparse.REMAINDER,
        help="the benchmark's flags; `all` takes only --quick (each benchmark's own shrinking flags)",
    )
    return p.parse_args(argv)


def run_all(args: list[str]) -> int:
    """Each benchmark in a fresh interpreter (Ray and torch settings do not leak between them)."""
    if args not in ([], ["--quick"]):
        print(f"error: `all` takes only --quick, got {args}.", file=sys.stderr)
        return 2
    failed = []
    for name, bench in BENCHMARKS.items():
        flags = list(bench.quick) if args else []
        print(f"\n## {name}\n", flush=True)
        rc = subprocess.run([sys.executable, "-m", "benchmarks", name, *flags], cwd=REPO).returncode
        if rc:
            failed.append(f"{name} (exit {rc})")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.name == "all":
        return run_all(args.args)
    try:
        return importlib.import_module(f"benchmarks.{args.name}").main(args.args)
    except BenchmarkError as err:  # a run it started failed: say which and where its log is
        print(f"error: {args.name}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
