"""Command line: run a tuning method on Ray Tune and write a ranked report.

    python run_search.py --method optuna                      # klue/roberta-base on KLUE-STS (Hub, GPUs)
    python run_search.py --method optuna --profile cpu        # e5-small-ko on KorSTS, offline CPU profile
    python run_search.py --method optuna --smoke-test         # a test-size model, seconds
    python run_search.py report runs/<name>                   # rebuild a report from storage

Precedence: dataclass defaults < search-space YAML (--space / --profile) < flags.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent
SPACES = REPO / "search_spaces"
PRESETS = ("korsts", "klue-sts")


def parse_args(argv: list[str]) -> argparse.Namespace:
    from tuning.methods import METHODS

    p = argparse.ArgumentParser(
        prog="run_search.py",
        description="Hyperparameter search for Korean STS fine-tuning on Ray Tune.",
        epilog="Subcommand: `run_search.py report <storage>/<name>` rebuilds a report from storage.",
    )
    p.add_argument(
        "--method", default="optuna", help=f"tuning method, one of {sorted(METHODS)} (default: optuna)"
    )
    p.add_argument(
        "--space", help="search-space YAML file (default: search_spaces/[<profile>/]<method>.yaml)"
    )
    p.add_argument("--profile", help="a folder of search_spaces/ to take <method>.yaml from, e.g. `cpu`")
    p.add_argument(
        "--data", help=f"a preset ({', '.join(PRESETS)}) or a training file (KLUE JSON, KorSTS TSV, CSV)"
    )
    p.add_argument("--model", help="Hub id or local Hugging Face folder of the pretrained encoder")
    p.add_argument("--num-samples", type=int, help="trials to sample")
    p.add_argument("--storage", default="runs", help="root folder of results (default: ./runs)")
    p.add_argument("--name", help="experiment folder under --storage (default: <space name>-<timestamp>)")
    p.add_argument("--seed", type=int, help="seed of trials and of the searcher")
    p.add_argument("--cpus-per-trial", type=float, help="CPU cores per trial (its torch threads)")
    p.add_argument(
        "--gpus-per-trial", type=float, help="GPUs per trial; fractions (0.5) pack trials on one GPU"
    )
    p.add_argument("--max-concurrent-trials", type=int, help="cap on trials running at once")
    p.add_argument("--top-k", type=int, help="best configurations scored on the test split(s) (default 3)")
    p.add_argument(
        "--address", help="an existing Ray cluster (`auto`, `ray://host:10001`); default: start Ray here"
    )
    p.add_argument(
        "--resume", metavar="DIR", help="continue an interrupted experiment <storage>/<name> where it stopped"
    )
    p.add_argument(
        "--full-grid", action="store_true", help="grid: one stage over every stage's values at once"
    )
    p.add_argument("--seeds", type=int, help="seeds/compare: training seeds per repeated configuration")
    p.add_argument(
        "--from", dest="from_experiment", help="seeds: repeat the top-k configurations of this experiment"
    )
    p.add_argument(
        "--smoke-test", action="store_true", help="test-size model built in code, a few pairs, 2 trials"
    )
    return p.parse_args(argv)


def space_file(args: argparse.Namespace) -> Path:
    """The search-space file the flags name."""
    if args.space:
        return Path(args.space)
    folder = SPACES / args.profile if args.profile else SPACES
    return folder / f"{args.method}.yaml"


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags a user gave, as ``section.field`` overrides of the YAML file."""
    out: dict[str, Any] = {}
    if args.data:
        if args.data in PRESETS:
            out["data.source"] = args.data
        else:
            out.update(
                {"data.source": "files", "data.train": args.data, "data.validation": None, "data.test": None}
            )
            out["data.extra_test"] = {}
    if args.model:
        out["model.name_or_path"] = args.model
    if args.seed is not None:
        out["training.seed"] = out["search.seed"] = args.seed
    for flag in (
        "num_samples",
        "cpus_per_trial",
        "gpus_per_trial",
        "max_concurrent_trials",
        "top_k",
        "seeds",
    ):
        if getattr(args, flag) is not None:
            out[f"search.{flag}"] = getattr(args, flag)
    if args.full_grid:
        out["search.full_grid"] = True
    if args.from_experiment:
        out["search.from_experiment"] = str(Path(args.from_experiment).resolve())
    return out


def build_experiment(args: argparse.Namespace) -> Any:
    """Defaults < YAML < flags, validated once (every problem in one message)."""
    from tuning.config import ConfigError, apply_overrides, load_experiment, make_smoke, validate
    from tuning.methods import METHODS
    from tuning.spaces import check_experiment

    if args.method not in METHODS:
        raise ConfigError(f"--method must be one of {sorted(METHODS)}. Got: {args.method!r}.")
    if args.from_experiment and args.method != "seeds":
        raise ConfigError(
            f"--from repeats a finished experiment's top configurations: use it with --method seeds, not {args.method}."
        )
    path = space_file(args)
    if args.profile and not path.is_file():
        profiles = sorted(d.name for d in SPACES.iterdir() if d.is_dir())
        raise ConfigError(f"no {path.name} in profile {args.profile!r} ({path}); profiles: {profiles}.")
    exp = load_experiment(path)
    exp.method = args.method
    exp.overrides = flag_overrides(args)
    apply_overrides(exp, exp.overrides)
    if args.smoke_test:
        make_smoke(exp)
    if "://" in args.storage:
        raise ConfigError(
            f"--storage {args.storage}: object-store URIs are not supported; pass a folder, on a cluster "
            "one that every node mounts at the same path (NFS/EFS, see docs/cluster.md)."
        )
    exp.storage = str(Path(args.storage).resolve())
    stem = f"smoke-{exp.name}" if args.smoke_test else exp.name
    exp.name = args.name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    problems = []
    for check in (lambda: validate(exp), lambda: check_experiment(exp.space, exp.stages, str(path))):
        try:
            check()
        except ConfigError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError("\n".join(problems))
    if Path(exp.experiment_dir).exists():
        raise ConfigError(
            f"{exp.experiment_dir} already exists; pass another --name (results are never overwritten)."
        )
    return exp


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "ray", "optuna", "datasets", "accelerate"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def machine() -> str:
    from tuning.config import gpu_names

    gpus = gpu_names()
    return f"{platform.machine()}, {os.cpu_count()} CPUs, " + (
        f"GPUs: {', '.join(gpus)}" if gpus else "no GPU"
    )


def run(args: argparse.Namespace) -> int:
    from tuning.data import fingerprint, load_splits
    from tuning.methods import fixed_config, write_json

    started = time.time()
    if args.resume:
        return resume(args, started)
    exp = build_experiment(args)
    exp_dir = Path(exp.experiment_dir)
    print(f"[run_search] experiment {exp.name}: method {exp.method}, space {exp.source_file}", flush=True)
    splits = load_splits(exp.data)
    sizes = {name: len(split) for name, split in splits.items()}
    print(f"[run_search] data {exp.data.source}: {sizes}", flush=True)
    exp_dir.mkdir(parents=True)
    meta: dict[str, Any] = {
        "config": exp.to_dict(),
        "command": " ".join(["python", *sys.argv]),
        "git_commit": git_commit(),
        "versions": versions(),
        "data_fingerprint": fingerprint(splits),
        "data_sizes": sizes,
        "machine": machine(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "tensorboard_dir": fixed_config(exp)["tensorboard_dir"],
    }
    write_json(exp_dir / "experiment.json", meta)
    print(f"[run_search] resolved config saved to {exp_dir / 'experiment.json'}", flush=True)
    return search(args, exp, splits, meta, started)


def resume(args: argparse.Namespace, started: float) -> int:
    """Continue ``--resume DIR`` from storage: done stages are skipped, the cut one restored."""
    from reports.records import EXPERIMENT_FILE
    from tuning.config import ConfigError, experiment_from_dict
    from tuning.data import fingerprint, load_splits

    exp_dir = Path(args.resume).resolve()
    meta_file = exp_dir / EXPERIMENT_FILE
    if not meta_file.is_file():
        raise ConfigError(
            f"--resume {args.resume}: no {EXPERIMENT_FILE} there; pass an experiment folder <storage>/<name>."
        )
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if meta.get("finished"):
        print(
            f"[run_search] {exp_dir} already finished; nothing to resume (report: {exp_dir / 'report.md'})."
        )
        return 0
    exp = experiment_from_dict(meta["config"])
    exp.storage, exp.name = str(exp_dir.parent), exp_dir.name
    splits = load_splits(exp.data)
    if fingerprint(splits) != meta["data_fingerprint"]:
        raise ConfigError(
            f"the data changed since {exp.name} started (fingerprint {fingerprint(splits)} != {meta['data_fingerprint']}); "
            "resuming would mix results of different data. Start a new experiment instead."
        )
    meta.setdefault("resumed", []).append(time.strftime("%Y-%m-%d %H:%M:%S"))
    print(f"[run_search] resuming {exp.name}: method {exp.method}", flush=True)
    spent = meta.get("search_wall_time_s", 0.0)
    return search(args, exp, splits, meta, started - spent)


def search(args: argparse.Namespace, exp: Any, splits: Any, meta: dict[str, Any], started: float) -> int:
    """Run the method on Ray (started here, or the cluster at ``--address``), then conclude."""
    import ray

    from tuning.methods import StageInterrupted, run_method, write_json

    exp_dir = Path(exp.experiment_dir)

    # On an existing cluster, this checkout's packages travel with the job (Ray's py_modules):
    # trials on every node import the driver's exact code, however the driver got there.
    code = {"py_modules": [str(REPO / "tuning"), str(REPO / "reports")]} if args.address else None
    ray.init(address=args.address, include_dashboard=False, log_to_driver=True, runtime_env=code)
    meta["ray_resources"] = {
        k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")
    }
    try:
        run_method(exp, splits)
    except StageInterrupted as err:
        print(f"[run_search] {err}", file=sys.stderr, flush=True)
    finally:
        meta["search_wall_time_s"] = time.time() - started
        write_json(exp_dir / "experiment.json", meta)
        ray.shutdown()
    return conclude(exp, splits, meta, started)


def conclude(exp: Any, splits: Any, meta: dict[str, Any], started: float) -> int:
    """Score the winners on the test split(s), export the best, write the report."""
    from reports import write_report
    from reports.records import read_experiment
    from tuning.methods import fixed_config, write_json
    from tuning.metrics import MODES
    from tuning.trial import TrialSettings
    from tuning.winners import export_best, prune_checkpoints, score_winners, untuned_start, write_scores

    exp_dir = Path(exp.experiment_dir)
    record = read_experiment(exp_dir)
    metric, mode = exp.search.metric, MODES[exp.search.metric]
    tests = [s for s in splits if s not in ("train", "validation")]
    print(f"[run_search] scoring the top {exp.search.top_k} (and any seed repeats) on {tests}", flush=True)
    scores = score_winners(record, splits, metric, mode, exp.search.top_k)
    write_scores(scores, exp_dir)
    if "untuned" not in meta:
        meta["untuned"] = untuned_start(TrialSettings.from_dict(fixed_config(exp)), splits)
    freed = prune_checkpoints(record, scores, metric, mode)
    if freed:
        print(
            f"[run_search] removed checkpoints no trial needs any more: {freed / 2**20:.0f} MiB freed",
            flush=True,
        )
    top = [s for s in scores if s["role"] == "top"]
    if top:
        meta["best_model"] = str(export_best(top[0], exp_dir))
    meta["wall_time_s"] = time.time() - started
    meta["finished"] = all(s.get("status") == "done" for s in record.stages)
    write_json(exp_dir / "experiment.json", meta)
    report = write_report(exp_dir)
    print(f"[run_search] report: {report}", flush=True)
    interrupted = [s["stage"] for s in record.stages if s.get("status") != "done"]
    if interrupted:
        print(
            f"[run_search] stage {interrupted[0]} did not finish: the report holds the results so far.",
            file=sys.stderr,
        )
        return 130
    if top:
        w = top[0]
        shown = ", ".join(f"{k}={v}" for k, v in w["params"].items())
        print(
            f"[run_search] best {w['stage']}/{w['trial_id']}: validation pearson {w['validation'].get('pearson', float('nan')):.4f} "
            f"f1 {w['validation'].get('f1', float('nan')):.4f} ({shown})",
            flush=True,
        )
    return 0


def report_command(argv: list[str]) -> int:
    from reports import write_report

    p = argparse.ArgumentParser(prog="run_search.py report", description="Rebuild report.md from storage.")
    p.add_argument("experiment", help="an experiment folder, <storage>/<name>")
    args = p.parse_args(argv)
    print(write_report(args.experiment))
    return 0


def serve_command(argv: list[str]) -> int:
    from tuning.serving import ServeSettings, serve

    d = ServeSettings()
    p = argparse.ArgumentParser(
        prog="run_search.py serve",
        description="Serve an exported best model: a similarity JSON API and a web page.",
    )
    p.add_argument("model_dir", nargs="?", help="the model folder, <storage>/<name>/best_model")
    p.add_argument("--model", help="the model folder (instead of the positional argument)")
    p.add_argument("--host", default=d.host, help=f"interface to listen on (default: {d.host})")
    p.add_argument("--port", type=int, default=d.port, help=f"TCP port (default: {d.port})")
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=d.max_batch_size,
        help=f"most pairs per forward pass; 1 disables dynamic batching (default: {d.max_batch_size})",
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=d.max_wait_ms,
        help=f"longest wait (ms) for requests to share a forward pass; 0 disables batching (default: {d.max_wait_ms:g})",
    )
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N (default: auto)")
    args = p.parse_args(argv)
    if bool(args.model_dir) == bool(args.model):
        p.error("give the model folder once: `serve DIR` or `serve --model DIR`.")
    settings = ServeSettings(
        host=args.host,
        port=args.port,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        device=args.device,
    )
    return serve(args.model_dir or args.model, settings)


COMMANDS = {"report": report_command, "serve": serve_command}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from tuning.config import ConfigError
    from tuning.data import DataError
    from tuning.model import ModelError

    try:
        if argv and argv[0] in COMMANDS:
            return COMMANDS[argv[0]](argv[1:])
        return run(parse_args(argv))
    except (ConfigError, DataError, ModelError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: results so far stay in storage.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
