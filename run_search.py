"""Command line: run a tuning method on Ray Tune and write a ranked report.

    python run_search.py --method optuna                      # klue/roberta-base on KLUE-STS (Hub, GPUs)
    python run_search.py --method optuna --profile cpu        # e5-small-ko on KorSTS, offline CPU profile
    python run_search.py --method optuna --smoke-test         # a test-size model, seconds
    python run_search.py report runs/<name>                   # rebuild a report from storage

Precedence: dataclass defaults < search-space YAML (--space / --profile) < flags.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent
SPACES = REPO / "search_spaces"
PRESETS = ("korsts", "klue-sts")


def parse_args(argv: list[str]) -> argparse.Namespace:
    import inspect

    from tuning.config import SECTIONS, config_flags

    p = argparse.ArgumentParser(
        prog="run_search.py",
        # The generated usage would list every flag of every section.
        usage="%(prog)s [--method METHOD] [--profile PROFILE | --space FILE] [--smoke-test] [flags below]",
        description="Hyperparameter search for Korean STS fine-tuning on Ray Tune.\nPrecedence: defaults "
        "< search-space file < flags; a flag's value is read as in the file\n(3e-5, true, null, {a: b}).",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the epilog's lists stay lists
    )
    p.add_argument(
        "--method",
        default="optuna",
        metavar="METHOD",
        help="tuning method, see `methods` below (default: optuna)",
    )
    p.add_argument(
        "--space", help="search-space YAML file (default: search_spaces/[<profile>/]<method>.yaml)"
    )
    p.add_argument("--profile", help="a folder of search_spaces/ to take <method>.yaml from, e.g. `cpu`")
    p.add_argument(
        "--data", help=f"a preset ({', '.join(PRESETS)}) or a training file (KLUE JSON, KorSTS TSV, CSV)"
    )
    p.add_argument("--storage", default="runs", help="root folder of results (default: ./runs)")
    p.add_argument("--name", help="experiment folder under --storage (default: <space name>-<timestamp>)")
    p.add_argument(
        "--address", help="an existing Ray cluster (`auto`, `ray://host:10001`); default: start Ray here"
    )
    p.add_argument(
        "--resume", metavar="DIR", help="continue an interrupted experiment <storage>/<name> where it stopped"
    )
    p.add_argument(
        "--smoke-test",
        action="store_true",
        help="test-size model built in code, a few pairs, 2 trials (flags given with it still apply)",
    )

    def help_text(doc: str) -> str:  # a docstring as help: ``code`` as `code`; help is a %-format
        return doc.replace("``", "`").replace("`None`", "`null`").replace("%", "%%")

    # Every config field is a flag, generated from its dataclass: one group per section. A flag's
    # text is kept as typed; flag_overrides reads it as a YAML value of the field.
    groups: dict[str | None, Any] = {None: p}
    for section, cls in SECTIONS.items():
        doc = (inspect.getdoc(cls) or "").split("\n\n")[0]
        groups[section] = p.add_argument_group(
            f"{section} (overrides `{section}:` of the search-space file)", help_text(doc)
        )
    for flag in config_flags():
        switch = {"nargs": "?", "const": "true"} if flag.switch else {}
        groups[flag.section].add_argument(
            *flag.names, dest=flag.dest, metavar=flag.metavar, help=help_text(flag.help), **switch
        )
    args = p.parse_args(argv)
    args.from_experiment = getattr(args, "search.from_experiment")  # build_experiment checks --from
    return args


def epilog() -> str:
    """The methods, each with its line, and the subcommands, for ``--help``."""
    import inspect

    from tuning.methods import METHODS

    def line(text: str) -> str:
        return text.replace("``", "`").strip()

    methods = [
        f"  {name:<10} {line((inspect.getdoc(f) or '').splitlines()[0])}" for name, f in METHODS.items()
    ]
    return "\n".join(
        [
            "methods (--method):",
            *methods,
            "",
            "subcommands:",
            "  report DIR          rebuild <storage>/<name>/report.md from storage",
            "  serve DIR           serve an exported model (<storage>/<name>/best_model): JSON API and a page",
            "                      (`run_search.py serve --help` lists its flags)",
        ]
    )


def space_file(args: argparse.Namespace) -> Path:
    """The search-space file the flags name."""
    if args.space:
        return Path(args.space)
    folder = SPACES / args.profile if args.profile else SPACES
    return folder / f"{args.method}.yaml"


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags a user gave, as ``section.field`` overrides of the YAML file.

    Each value is read as the same text in the YAML file would be (``3e-5``, ``true``, ``20m``);
    the field rules are checked later, with the file's values, by ``validate``.

    Raises:
        ConfigError: naming each flag whose value is not of its field's type.
    """
    from tuning.config import ConfigError, config_flags, flag_value

    out: dict[str, Any] = {}
    if args.data:
        if args.data in PRESETS:
            out["data.source"] = args.data
        else:
            out.update(
                {"data.source": "files", "data.train": args.data, "data.validation": None, "data.test": None}
            )
            out["data.extra_test"] = {}
    problems: dict[str, None] = {}  # ordered and once: --seed reports its value once, not per field
    # Shared short flags (--seed) first, so a field's own flag (--training.seed) wins over them.
    for flag in sorted(config_flags(), key=lambda f: len(f.keys) == 1):
        text = getattr(args, flag.dest)
        if text is None:
            continue
        for key in flag.keys:
            value, problem = flag_value(key, text)
            if problem:  # "batch_size must be ..." -> "--training.batch_size must be ..."
                problems[flag.label + problem.removeprefix(key.partition(".")[2])] = None
            out[key] = value
    if problems:
        raise ConfigError("\n".join(problems))
    if out.get("search.from_experiment"):
        out["search.from_experiment"] = str(Path(out["search.from_experiment"]).resolve())
    return out


def build_experiment(args: argparse.Namespace) -> Any:
    """Defaults < YAML < flags, validated once (every problem in one message)."""
    from tuning import hardware
    from tuning.config import (
        ConfigError,
        apply_overrides,
        gpu_names,
        load_experiment,
        make_smoke,
        node_problems,
        resource_problems,
        validate,
    )
    from tuning.methods import METHODS
    from tuning.spaces import check_experiment, combination_problems

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
    problems += combination_problems(exp)
    # A trial asking for more than a node offers would wait forever ("No available node types
    # can fulfill resource request"): Ray starting here gets this machine; a cluster at --address
    # offers its alive nodes and the node types its autoscaler may start.
    cpus, gpus = hardware.cpu_count(), len(gpu_names())
    if not args.address:
        problems += resource_problems(exp.search, cpus, gpus)
    elif not problems:
        nodes, node_types = cluster_nodes(args.address)
        # `auto` resources follow the node with the most GPUs (else CPUs) the cluster has or may start.
        largest = max(nodes + node_types, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
        cpus, gpus = int(largest.get("CPU", 1)), int(largest.get("GPU", 0))
        if node_types:  # the autoscaler's node types are known: nothing it may start fits
            problems += node_problems(exp.search, nodes + node_types, args.address)
        else:  # Ray's v1 autoscaler does not publish its node types: say so, and let Ray wait
            for problem in node_problems(exp.search, nodes, args.address):
                print(
                    f"warning: {problem.replace('node or node type', 'node', 1)} Trials wait until "
                    "the cluster adds a node that fits (Ctrl-C stops the search, resumable).",
                    file=sys.stderr,
                    flush=True,
                )
    if problems:
        raise ConfigError("\n".join(problems))
    resources = hardware.apply_resources(exp.search, cpus, gpus)
    args.machine = (cpus, resources.reason)  # for the precision and fidelity plan (run)
    if Path(exp.experiment_dir).exists():
        raise ConfigError(
            f"{exp.experiment_dir} already exists; pass another --name (results are never overwritten)."
        )
    return exp


# Where `ray up` puts the cluster's config on the head node (the v1 autoscaler reads it there).
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")


def cluster_nodes(address: str) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Resources of each alive node of the cluster at ``address``, and of each node type its
    autoscaler may start: from the config an autoscaler reports to Ray's GCS, or, for `ray up`'s
    v1 autoscaler (which reports none), from the config `ray up` leaves on the head, where a
    submitted job's driver runs. Empty when neither is known (or a type's resources are not set)."""
    import ray
    import yaml
    from ray._private.state import state

    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        nodes = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
        config = state.get_cluster_config()
        types = [dict(group.resources) for group in config.node_group_configs] if config else []
    finally:
        ray.shutdown()
    bootstrap = BOOTSTRAP_CONFIG.expanduser()
    if not types and bootstrap.is_file():
        node_types = (yaml.safe_load(bootstrap.read_text(encoding="utf-8")) or {}).get(
            "available_node_types"
        ) or {}
        declared = [t.get("resources") for t in node_types.values()]
        types = declared if declared and all(isinstance(r, dict) for r in declared) else []
    return nodes, types


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
    from tuning import ray_session, store
    from tuning.config import ConfigError
    from tuning.data import fingerprint, load_splits
    from tuning.trial_config import trial_config

    started = time.time()
    if args.resume:
        return resume(args, started)
    exp = build_experiment(args)
    exp_dir = Path(exp.experiment_dir)
    print(f"[run_search] experiment {exp.name}: method {exp.method}, space {exp.source_file}", flush=True)
    splits = load_splits(exp.data)
    sizes = {name: len(split) for name, split in splits.items()}
    print(f"[run_search] data {exp.data.source}: {sizes}", flush=True)
    plan = machine_plan(exp, splits, args)
    try:  # no exist_ok: the folder is the lock, one of two runs started with one --name gets it
        exp_dir.mkdir(parents=True)
    except FileExistsError:
        holder = ray_session.running_driver(exp_dir)
        raise ConfigError(
            f"another run holds the name {exp.name}: it created {exp_dir} while this one was "
            f"starting{f' (process {holder})' if holder else ''}; pass another --name "
            "(results are never overwritten)."
        ) from None
    ray_session.claim(exp_dir)  # driver.json: `report` and `--resume` see the run is live
    meta = store.ExperimentMeta(
        config=exp.to_dict(),
        command=" ".join(["python", *sys.argv]),
        git_commit=git_commit(),
        versions=versions(),
        data_fingerprint=fingerprint(splits),
        data_sizes=sizes,
        machine=machine(),
        hardware=plan,
        started=time.strftime("%Y-%m-%d %H:%M:%S"),
        tensorboard_dir=trial_config(exp)["tensorboard_dir"],
    )
    store.write_meta(exp_dir, meta)
    try:  # from here on the experiment is on disk: a stop signal leaves it resumable
        print(f"[run_search] resolved config saved to {exp_dir / store.EXPERIMENT_FILE}", flush=True)
        return search(args, exp, splits, meta, started)
    except KeyboardInterrupt:  # a stop signal handled before search()'s own try
        return stopped(exp_dir, args)


def machine_plan(exp: Any, splits: Any, args: argparse.Namespace) -> Any:
    """Precision, resources and fidelity from this machine (``tuning.hardware``), printed with
    their reasons; a time budget too small for the first rung of a few trials is refused."""
    from tuning import hardware
    from tuning.config import ConfigError

    cpus, resources = args.machine
    try:
        plan = hardware.prepare(exp, splits, cpus, local=not args.address)
    except hardware.BudgetTooSmall as err:
        raise ConfigError(str(err)) from None
    plan.resources = resources
    print(
        f"[run_search] precision {plan.precision} ({plan.precision_reason}); resources per trial: "
        f"{plan.cpus_per_trial:g} CPU, {plan.gpus_per_trial:g} GPU ({resources})",
        flush=True,
    )
    if plan.precision_warning:
        print(f"warning: {plan.precision_warning}", file=sys.stderr, flush=True)
    if plan.fidelity:
        print(f"[run_search] {plan.fidelity}", flush=True)
    return plan


def resume(args: argparse.Namespace, started: float) -> int:
    """Continue ``--resume DIR`` from storage: done stages are skipped, the cut one restored."""
    from tuning import ray_session, store
    from tuning.config import ConfigError, experiment_from_dict
    from tuning.data import fingerprint, load_splits

    exp_dir = Path(args.resume).resolve()
    meta_file = exp_dir / store.EXPERIMENT_FILE
    if not meta_file.is_file():
        raise ConfigError(
            f"--resume {args.resume}: no {store.EXPERIMENT_FILE} there; pass an experiment folder <storage>/<name>."
        )
    # Every JSON file of the folder is read (and refused if torn or foreign) before Ray starts.
    meta = store.read_experiment(exp_dir).meta
    if meta.finished:
        print(
            f"[run_search] {exp_dir} already finished; nothing to resume (report: {exp_dir / 'report.md'})."
        )
        return 0
    driver = ray_session.running_driver(exp_dir)
    if driver:  # two drivers in one folder would write the same trials and records
        raise ConfigError(
            f"--resume {args.resume}: process {driver} is still running this experiment; "
            f"wait for it to end (or stop it: kill {driver}), then resume."
        )
    ray_session.claim(exp_dir)  # this process runs the experiment now (`report` waits for it)
    exp = experiment_from_dict(meta.config, str(meta_file))
    exp.storage, exp.name = str(exp_dir.parent), exp_dir.name
    splits = load_splits(exp.data)
    if fingerprint(splits) != meta.data_fingerprint:
        raise ConfigError(
            f"the data changed since {exp.name} started (fingerprint {fingerprint(splits)} != {meta.data_fingerprint}); "
            "resuming would mix results of different data. Start a new experiment instead."
        )
    meta.resumed.append(time.strftime("%Y-%m-%d %H:%M:%S"))
    print(f"[run_search] resuming {exp.name}: method {exp.method}", flush=True)
    spent = meta.search_wall_time_s or 0.0
    try:
        return search(args, exp, splits, meta, started - spent)
    except KeyboardInterrupt:  # a stop signal handled before search()'s own try
        return stopped(exp_dir, args)


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM stop a search cleanly; a second one stops it at once.

    The first signal during a Tune run asks Tune to stop (it saves its state, as on Ctrl-C);
    anywhere else it raises ``KeyboardInterrupt``. Either way the experiment stays unfinished,
    nothing unfinished is exported, and the exit status is 128 + the signal (130, 143).
    Tune's own SIGINT handler is turned off (``TUNE_DISABLE_SIGINT_HANDLER``): it would not see
    SIGTERM, and it leaves no trace that a stop was asked for.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> None:
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.handle)

    def handle(self, signum: int, frame: Any) -> None:
        from tuning.methods import request_stop

        if self.signum is not None:
            raise KeyboardInterrupt  # the second signal: stop now, skipping Tune's last save
        self.signum = signum
        request_stop()
        print(
            f"\n[run_search] {signal.Signals(signum).name}: stopping the search (saving its state); "
            "send it again to stop at once.",
            file=sys.stderr,
            flush=True,
        )
        tune_stop = signal.getsignal(signal.SIGUSR1)  # installed by Tune while a stage runs
        if callable(tune_stop):
            tune_stop(signum, frame)
        else:
            raise KeyboardInterrupt

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


STOP = StopSignals()


def resume_command(exp_dir: Path, args: argparse.Namespace) -> str:
    """The exact command that continues ``exp_dir``."""
    command = [sys.executable, str(REPO / "run_search.py"), "--resume", str(exp_dir)]
    if args.address:
        command += ["--address", args.address]
    return shlex.join(command)


def search(args: argparse.Namespace, exp: Any, splits: Any, meta: Any, started: float) -> int:
    """Run the method on Ray (started here, or the cluster at ``--address``), then conclude.

    A stop signal (see :class:`StopSignals`) leaves the experiment unfinished: no scoring, no
    export, the ``--resume`` command printed, exit 130 (SIGINT) or 143 (SIGTERM).
    """
    exp_dir = Path(exp.experiment_dir)
    interrupted = False
    try:  # a stop signal anywhere from here on leaves the experiment resumable
        import ray

        from tuning import ray_session, store
        from tuning.methods import StageInterrupted, quiet_ray, run_method, stop_requested

        quiet_ray(exp_dir / store.RAY_LOG_FILE)  # Ray's notices (e.g. snapshot timings) go to a file
        # On an existing cluster, this checkout's packages travel with the job (Ray's py_modules):
        # trials on every node import the driver's exact code, however the driver got there.
        code = {"py_modules": [str(REPO / "tuning"), str(REPO / "reports")]} if args.address else None
        temp_dir = None
        try:
            # Ray started here lives in ray_session.temp_root(); the processes a killed driver left
            # are stopped first, and their folders pruned. A cluster at --address is its own.
            temp_dir = None if args.address else str(stop_old_ray(exp_dir))
            ray.init(
                address=args.address,
                include_dashboard=False,
                log_to_driver=True,
                runtime_env=code,
                _temp_dir=temp_dir,
            )
            if temp_dir:
                ray_session.record(exp_dir)
            STOP.install()  # Ray's core worker replaces the SIGTERM handler with one that aborts
            meta.ray_resources = {
                k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")
            }
            run_method(exp, splits)
        except StageInterrupted as err:
            print(f"[run_search] {err}", file=sys.stderr, flush=True)
        finally:
            meta.search_wall_time_s = time.time() - started
            try:
                store.write_meta(exp_dir, meta)
            finally:
                ray.shutdown()
                if temp_dir:
                    ray_session.forget(exp_dir)  # shut down cleanly: nothing is left to stop
        interrupted = stop_requested()
    except KeyboardInterrupt:
        interrupted = True
    except SystemExit as err:  # ray.init's own SIGTERM handler, while Ray starts: sys.exit(15)
        if err.code != signal.SIGTERM:
            raise
        STOP.signum = STOP.signum or signal.SIGTERM
        interrupted = True
    if interrupted:
        return stopped(exp_dir, args)
    return conclude(exp, splits, meta, started)


def stopped(exp_dir: Path, args: argparse.Namespace) -> int:
    """After a stop signal: say that ``exp_dir`` is unfinished and how to continue it."""
    print(
        f"[run_search] stopped: {exp_dir} is unfinished (finished trials and checkpoints are kept; "
        f"nothing was exported). Continue it with:\n  {resume_command(exp_dir, args)}",
        file=sys.stderr,
        flush=True,
    )
    return STOP.exit_code


def stop_old_ray(exp_dir: Path) -> Path:
    """Before Ray starts here: stop what a killed driver of ``exp_dir`` (or of any dead session
    in Ray's temp folder) left running, prune old session folders; returns that temp folder."""
    from tuning import ray_session

    ended = ray_session.stop_leftovers(exp_dir / ray_session.RECORD_FILE)
    root = ray_session.temp_root()
    swept, removed = ray_session.sweep(root)
    ended = sorted({*ended, *swept})
    if ended:
        print(
            f"[run_search] stopped {len(ended)} Ray processes left by a killed run (PIDs {ended})",
            flush=True,
        )
    if removed:
        print(f"[run_search] removed {len(removed)} old Ray session folders from {root}", flush=True)
    return root


def conclude(exp: Any, splits: Any, meta: Any, started: float) -> int:
    """Score the winners on the test split(s), export the best, write the report."""
    import numpy as np
    import torch

    from reports import write_report
    from tuning import store
    from tuning.control import control
    from tuning.hardware import cpu_count
    from tuning.ranking import control_trial
    from tuning.trial_config import TrialSettings, trial_config
    from tuning.winners import export_best, prune_checkpoints, score_winners, untuned_start

    torch.set_num_threads(cpu_count())  # the trials are done: scoring has every core
    exp_dir = Path(exp.experiment_dir)
    record = store.read_experiment(exp_dir)
    metric = exp.search.metric
    failed = [t for t in record.trials if t.status == "failed"]
    if record.trials and len(failed) == len(record.trials):
        return all_failed(exp_dir, failed, meta, started)
    tests = [s for s in splits if s not in ("train", "validation")]
    recipe = control_trial(record)
    also = " and the recipe's trial" if recipe else ""
    print(f"[run_search] scoring the top {exp.search.top_k} (any seed repeats{also}) on {tests}", flush=True)
    predictions: dict[tuple[str, str], dict[str, Any]] = {}
    scores = score_winners(record, splits, metric, exp.search.top_k, recipe, predictions)
    store.write_scores(exp_dir, scores)
    labels = {name: np.asarray(splits[name]["label"]) for name in ("validation", *tests)}
    meta.control = control(record, scores, predictions, labels, recipe, seed=exp.search.seed)
    if meta.untuned is None:
        meta.untuned = untuned_start(TrialSettings.from_dict(trial_config(exp)), splits)
    freed = prune_checkpoints(record, scores, metric)
    if freed:
        print(
            f"[run_search] removed checkpoints no trial needs any more: {freed / 2**20:.0f} MiB freed",
            flush=True,
        )
    top = [s for s in scores if s.role == "top"]
    if top:
        meta.best_model = str(export_best(top[0], exp_dir))
    meta.wall_time_s = time.time() - started
    meta.finished = bool(top) and all(s.status == "done" for s in record.stages)
    store.write_meta(exp_dir, meta)
    report = write_report(exp_dir)
    print(f"[run_search] report: {report}", flush=True)
    if not top:
        print(f"[run_search] {no_model(record, meta)}", file=sys.stderr, flush=True)
        return 3
    interrupted = [s.stage for s in record.stages if s.status != "done"]
    if interrupted:
        print(
            f"[run_search] stage {interrupted[0]} did not finish: the report holds the results so far.",
            file=sys.stderr,
        )
        return 130
    if top:
        w = top[0]
        shown = ", ".join(f"{k}={v}" for k, v in w.params.items())
        print(
            f"[run_search] best {w.stage}/{w.trial_id}: validation pearson {w.validation.get('pearson', float('nan')):.4f} "
            f"f1 {w.validation.get('f1', float('nan')):.4f} ({shown})",
            flush=True,
        )
    if failed:
        print(
            f"[run_search] {len(failed)} of {len(record.trials)} trials failed; the first: "
            f"{first_error(failed)}",
            file=sys.stderr,
            flush=True,
        )
    return 0


def no_model(record: Any, meta: Any) -> str:
    """Why a search ended without any evaluated trial, with the measured figures and what to change."""
    budget = next((s.time_budget_s for s in record.stages if s.time_budget_s), None)
    ended = ", ".join(
        f"{n} {status}" for status, n in sorted(Counter(t.status for t in record.trials).items())
    )
    plan = meta.hardware
    measured = (
        f" Measured here: {plan.train_pairs_s:.1f} training pairs/s per trial in {plan.precision} "
        f"({plan.precision_reason}); the first evaluation comes after ~{plan.first_rung_s:.0f} s."
        if plan and plan.train_pairs_s
        else (f" Precision: {plan.precision} ({plan.precision_reason})." if plan else "")
    )
    fixes = ["a longer --time-budget" if budget else None, "a smaller --training.eval_every_pairs"]
    if plan and plan.precision == "bf16" and plan.precision_warning:
        fixes.append("--training.precision auto (fp32 on this CPU)")
    return (
        f"no model: the search ended with no evaluated trial ({len(record.trials)} trials: {ended or 'none started'}"
        + (f"; time budget {budget:.0f} s" if budget else "")
        + f").{measured} Nothing was exported; change: {', '.join(f for f in fixes if f)}."
    )


def first_error(failed: list[Any]) -> str:
    """The first failed trial's error message and where its full log is."""
    trial = failed[0]
    from tuning.store import ERROR_FILE

    return (
        f"{trial.stage}/{trial.trial_id}: {trial.error or 'no message'} (log: {Path(trial.path, ERROR_FILE)})"
    )


def all_failed(exp_dir: Path, failed: list[Any], meta: Any, started: float) -> int:
    """Every trial failed: write the report, say the first error and where its log is; exit 1.

    The experiment is left unfinished: once the cause is fixed (a full disk, a lost node),
    ``--resume`` retries the failed trials.
    """
    from reports import write_report
    from tuning import store

    meta.wall_time_s = time.time() - started
    store.write_meta(exp_dir, meta)
    report = write_report(exp_dir)
    print(
        f"[run_search] all {len(failed)} trials failed (report: {report}); the first: {first_error(failed)}",
        file=sys.stderr,
        flush=True,
    )
    return 1


def report_command(argv: list[str]) -> int:
    from reports import report_with_problems

    p = argparse.ArgumentParser(prog="run_search.py report", description="Rebuild report.md from storage.")
    p.add_argument("experiment", help="an experiment folder, <storage>/<name>")
    args = p.parse_args(argv)
    from tuning import ray_session, store
    from tuning.config import ConfigError

    exp_dir = Path(args.experiment).resolve()
    if not (exp_dir / store.EXPERIMENT_FILE).is_file():
        what = "does not exist" if not exp_dir.exists() else f"has no {store.EXPERIMENT_FILE}"
        raise ConfigError(
            f"report {args.experiment}: {exp_dir} {what}; pass an experiment folder <storage>/<name> "
            "as written by run_search.py."
        )
    driver = ray_session.running_driver(exp_dir)
    if driver:  # a report now would call a search that is still running finished
        raise ConfigError(
            f"report {args.experiment}: process {driver} is still running this experiment, and it "
            "writes the report itself when it ends; run `report` after that (or stop it: "
            f"kill {driver}; then `--resume` continues it)."
        )
    path, unreadable = report_with_problems(exp_dir)
    print(path)
    if unreadable:  # written, but not the whole truth: say what is missing, and fail
        print(
            f"error: {path} is written, but {len(unreadable)} file{'s' if len(unreadable) > 1 else ''} "
            f"could not be read (named at its top): {'; '.join(unreadable)}.",
            file=sys.stderr,
        )
        return 2
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
    from tuning.store import StorageError

    where = argv[1] if argv[:1] == ["report"] and len(argv) > 1 else None  # the folder in use
    try:
        if argv and argv[0] in COMMANDS:
            return COMMANDS[argv[0]](argv[1:])
        STOP.install()
        args = parse_args(argv)
        where = args.resume or args.storage
        return run(args)
    except (ConfigError, DataError, ModelError, StorageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {storage_problem(err, where)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a stop signal before the search started: nothing ran
        print("interrupted before the search started; nothing was run.", file=sys.stderr)
        return STOP.exit_code


# What to do about a file-system error, by errno.
STORAGE_FIXES = {
    errno.ENOSPC: "free space there, or pass --storage on a disk with room; --resume continues the run",
    errno.EDQUOT: "free space there, or pass --storage on a disk with room; --resume continues the run",
    errno.EROFS: "pass a --storage folder on a writable file system",
    errno.EACCES: "pass a --storage folder you may write to",
    errno.EPERM: "pass a --storage folder you may write to",
    errno.ENOTDIR: "--storage must name a folder, not a file",
    errno.EEXIST: "a file or folder of that name is in the way; pass another --storage or --name",
}


def storage_problem(err: OSError, where: str | None) -> str:
    """One line for a file-system error: what failed, on which path, and the fix.

    Errors raised inside Ray (a trial's checkpoint upload) name no file: ``where`` (the storage
    or experiment folder in use) is named instead.
    """
    if err.strerror is None and err.filename is None and str(err):  # a sentence of its own
        return str(err)
    path = err.filename or (f"under {Path(where).resolve()}" if where else None)
    fix = STORAGE_FIXES.get(err.errno or 0)
    what = (err.strerror or str(err).splitlines()[-1]).split(". Detail:")[0]
    return what + (f": {path}" if path else "") + (f" ({fix})." if fix else ".")


if __name__ == "__main__":
    sys.exit(main())
