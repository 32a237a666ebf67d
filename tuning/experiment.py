"""The driver of one experiment: build → (resume) → search → conclude.

- :func:`resolve` reads a search-space file with a method and overrides and runs every check on
  the result; :func:`build` adds the storage folder, the name and the machine (its resources, or
  a cluster's). The command line builds with it, and ``compare`` builds its sub-experiments with
  :func:`resolve`, so both are checked alike.
- :meth:`Experiment.start` loads the data, plans precision and fidelity from this machine and
  writes ``experiment.json``; :meth:`Experiment.resume` takes an unfinished one back from storage.
- :meth:`Experiment.run` runs the method on Ray (started here, or the cluster at ``address``),
  scores the winners and the recipe on the held-out splits, exports the best and writes the report.

A stop (:func:`tuning.methods.request_stop`, e.g. from a signal handler) leaves the experiment
unfinished and resumable and raises :class:`Stopped`. The report is written by a function the
caller passes (``reports.write_report`` from the command line): ``tuning`` does not import
``reports``. Messages go to the ``tuning.experiment`` logger; the command line prints them.
"""

from __future__ import annotations

import logging
import os
import platform
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuning import hardware, ray_session, store
from tuning.data import fingerprint, load_splits
from tuning.metrics import MODES
from tuning.settings import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    experiment_from_dict,
    gpu_names,
    load_experiment,
    make_smoke,
    node_problems,
    resource_problems,
    validate,
)
from tuning.store import ExperimentMeta, ExperimentRecord, MachinePlan, TestScore, TrialRecord

if TYPE_CHECKING:
    from datasets import DatasetDict

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
# On an existing cluster these packages travel with the job (Ray's py_modules): trials on every
# node import the driver's exact code, however the driver got there.
PACKAGES = (ROOT / "tuning", ROOT / "reports")

ReportWriter = Callable[[Path], Path]


class Stopped(Exception):
    """A stop was asked for while the experiment ran: it is unfinished, kept and resumable.

    ``signum`` is the signal that stopped Ray while it started (its own SIGTERM handler exits),
    where the caller's handler could not see it; otherwise None.
    """

    def __init__(self, exp_dir: Path, signum: int | None = None) -> None:
        super().__init__(f"{exp_dir} stopped")
        self.exp_dir, self.signum = exp_dir, signum


@dataclass
class Machine:
    """Where the trials run: the CPUs of the node that sets ``auto`` resources, how those were
    resolved, and whether Ray starts here (else a cluster at an address)."""

    cpus: int
    resources: str
    local: bool = True


# --- build -----------------------------------------------------------------------------------------


def resolve(
    path: Path, method: str, overrides: dict[str, Any], smoke: bool, name: str | None = None
) -> ExperimentConfig:
    """The file at ``path`` run by ``method``, with ``overrides`` (``section.field`` -> value),
    smoke mode and ``name`` (default: the file's ``name``, ``smoke-`` first in smoke mode, and a
    timestamp) applied, every field rule, space and combination checked.

    Raises:
        ConfigError: every problem found, one per line.
    """
    exp, problems = _resolve(path, method, overrides, smoke, name)
    if problems:
        raise ConfigError("\n".join(problems))
    return exp


def _resolve(
    path: Path, method: str, overrides: dict[str, Any], smoke: bool, name: str | None
) -> tuple[ExperimentConfig, list[str]]:
    """:func:`resolve`'s experiment and its problems (the caller adds its own to one message)."""
    from tuning.methods import METHODS
    from tuning.spaces import check_experiment, combination_problems

    if method not in METHODS:
        raise ConfigError(f"--method must be one of {sorted(METHODS)}. Got: {method!r}.")
    exp = load_experiment(path)
    exp.method = method
    exp.overrides = dict(overrides)
    apply_overrides(exp, exp.overrides)
    if smoke:
        make_smoke(exp)
    stem = f"smoke-{exp.name}" if smoke else exp.name
    exp.name = name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    problems = []
    for check in (lambda: validate(exp), lambda: check_experiment(exp.space, exp.stages, str(path))):
        try:
            check()
        except ConfigError as err:
            problems.append(str(err))
    return exp, problems + combination_problems(exp)


def build(
    path: Path,
    method: str,
    overrides: dict[str, Any],
    *,
    smoke: bool = False,
    storage: str = "runs",
    name: str | None = None,
    address: str | None = None,
) -> tuple[ExperimentConfig, Machine]:
    """A new experiment: :func:`resolve`, then its folder ``storage/name`` (never an existing one)
    and resources that fit this machine, or the cluster at ``address``.

    Raises:
        ConfigError: every problem found, one per line.
    """
    if "://" in storage:
        raise ConfigError(
            f"--storage {storage}: object-store URIs are not supported; pass a folder, on a cluster "
            "one that every node mounts at the same path (NFS/EFS, see docs/cluster.md)."
        )
    exp, problems = _resolve(path, method, overrides, smoke, name)
    # A trial asking for more than a node offers would wait forever ("No available node types
    # can fulfill resource request"): Ray starting here gets this machine; a cluster at an
    # address offers its alive nodes and the node types its autoscaler may start.
    cpus, gpus = hardware.cpu_count(), len(gpu_names())
    if not address:
        problems += resource_problems(exp.search, cpus, gpus)
    elif not problems:
        nodes, node_types = cluster_nodes(address)
        # `auto` resources follow the node with the most GPUs (else CPUs) the cluster has or may start.
        largest = max(nodes + node_types, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
        cpus, gpus = int(largest.get("CPU", 1)), int(largest.get("GPU", 0))
        if node_types:  # the autoscaler's node types are known: nothing it may start fits
            problems += node_problems(exp.search, nodes + node_types, address)
        else:  # Ray's v1 autoscaler does not publish its node types: say so, and let Ray wait
            for problem in node_problems(exp.search, nodes, address):
                log.warning(
                    "%s Trials wait until the cluster adds a node that fits (Ctrl-C stops the "
                    "search, resumable).",
                    problem.replace("node or node type", "node", 1),
                )
    if problems:
        raise ConfigError("\n".join(problems))
    exp.storage = str(Path(storage).resolve())
    resources = hardware.apply_resources(exp.search, cpus, gpus)
    if Path(exp.experiment_dir).exists():
        raise ConfigError(
            f"{exp.experiment_dir} already exists; pass another --name (results are never overwritten)."
        )
    return exp, Machine(cpus, resources.reason, local=not address)


# Where `ray up` puts the cluster's config on the head node (the v1 autoscaler reads it there).
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")


def cluster_nodes(address: str) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Resources of each alive node of the cluster at ``address``, and of each node type its
    autoscaler may start: from the config an autoscaler reports to Ray's GCS, or, for `ray up`'s
    v1 autoscaler (which reports none), from the config `ray up` leaves on the head, where a
    submitted job's driver runs. Empty when neither is known (or a type's resources are not set)."""
    import ray
    import yaml

    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        nodes = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
        types = ray_session.autoscaler_node_types()
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


# --- provenance ------------------------------------------------------------------------------------


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
    """The checkout's commit, marked when it has uncommitted changes; None outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def machine_line() -> str:
    gpus = gpu_names()
    return f"{platform.machine()}, {os.cpu_count()} CPUs, " + (
        f"GPUs: {', '.join(gpus)}" if gpus else "no GPU"
    )


def plan_machine(exp: ExperimentConfig, splits: DatasetDict, machine: Machine) -> MachinePlan:
    """Precision, resources and fidelity from this machine (``tuning.hardware``), logged with
    their reasons; a time budget too small for the first rung of a few trials is refused."""
    try:
        plan = hardware.prepare(exp, splits, machine.cpus, local=machine.local)
    except hardware.BudgetTooSmall as err:
        raise ConfigError(str(err)) from None
    plan.resources = machine.resources
    log.info(
        "precision %s (%s); resources per trial: %g CPU, %g GPU (%s)",
        plan.precision,
        plan.precision_reason,
        plan.cpus_per_trial,
        plan.gpus_per_trial,
        machine.resources,
    )
    if plan.precision_warning:
        log.warning("%s", plan.precision_warning)
    if plan.fidelity:
        log.info("%s", plan.fidelity)
    return plan


# --- an experiment on disk -------------------------------------------------------------------------


@dataclass
class Experiment:
    """An experiment whose folder and ``experiment.json`` exist: its config, data and record.

    ``started`` is the wall clock its search time counts from (earlier than now when resumed,
    by the time already spent).
    """

    config: ExperimentConfig
    splits: DatasetDict
    meta: ExperimentMeta
    started: float

    @property
    def dir(self) -> Path:
        return Path(self.config.experiment_dir)

    @classmethod
    def start(cls, exp: ExperimentConfig, machine: Machine, command: str) -> Experiment:
        """Load the data, plan for the machine, take the folder and write ``experiment.json``."""
        started = time.time()
        exp_dir = Path(exp.experiment_dir)
        log.info("experiment %s: method %s, space %s", exp.name, exp.method, exp.source_file)
        splits = load_splits(exp.data)
        sizes = {name: len(split) for name, split in splits.items()}
        log.info("data %s: %s", exp.data.source, sizes)
        plan = plan_machine(exp, splits, machine)
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
        from tuning.trial_config import trial_config

        meta = ExperimentMeta(
            config=exp.to_dict(),
            command=command,
            git_commit=git_commit(),
            versions=versions(),
            data_fingerprint=fingerprint(splits),
            data_sizes=sizes,
            machine=machine_line(),
            hardware=plan,
            started=time.strftime("%Y-%m-%d %H:%M:%S"),
            tensorboard_dir=trial_config(exp)["tensorboard_dir"],
        )
        store.write_meta(exp_dir, meta)
        log.info("resolved config saved to %s", exp_dir / store.EXPERIMENT_FILE)
        return cls(exp, splits, meta, started)

    @classmethod
    def resume(cls, exp_dir: Path, shown: str | None = None) -> Experiment | None:
        """The unfinished experiment in ``exp_dir``, taken over by this process; None (and a
        message) when it already finished. ``shown`` is how the user named the folder.

        Raises:
            ConfigError: no experiment there, another process runs it, or its data changed.
            StorageError: a record there is torn or not one of ours (before Ray starts).
        """
        started = time.time()
        shown = shown or str(exp_dir)
        exp_dir = exp_dir.resolve()
        meta_file = exp_dir / store.EXPERIMENT_FILE
        if not meta_file.is_file():
            raise ConfigError(
                f"--resume {shown}: no {store.EXPERIMENT_FILE} there; pass an experiment folder <storage>/<name>."
            )
        # Every JSON file of the folder is read (and refused if torn or foreign) before Ray starts.
        meta = store.read_experiment(exp_dir).meta
        if meta.finished:
            log.info(
                "%s already finished; nothing to resume (report: %s).", exp_dir, exp_dir / store.REPORT_FILE
            )
            return None
        driver = ray_session.running_driver(exp_dir)
        if driver:  # two drivers in one folder would write the same trials and records
            raise ConfigError(
                f"--resume {shown}: process {driver} is still running this experiment; "
                f"wait for it to end (or stop it: kill {driver}), then resume."
            )
        ray_session.claim(exp_dir)  # this process runs the experiment now (`report` waits for it)
        exp = experiment_from_dict(meta.config, str(meta_file))
        exp.storage, exp.name = str(exp_dir.parent), exp_dir.name
        splits = load_splits(exp.data)
        if fingerprint(splits) != meta.data_fingerprint:
            raise ConfigError(
                f"the data changed since {exp.name} started (fingerprint {fingerprint(splits)} != "
                f"{meta.data_fingerprint}); resuming would mix results of different data. Start a new "
                "experiment instead."
            )
        meta.resumed.append(time.strftime("%Y-%m-%d %H:%M:%S"))
        log.info("resuming %s: method %s", exp.name, exp.method)
        return cls(exp, splits, meta, started - (meta.search_wall_time_s or 0.0))

    def run(
        self,
        report: ReportWriter,
        address: str | None = None,
        on_ray_started: Callable[[], None] | None = None,
    ) -> int:
        """Search, then conclude; the exit status (see :meth:`conclude`).

        ``on_ray_started`` is called once Ray runs (the command line installs its stop-signal
        handlers there: Ray's core worker replaces the SIGTERM handler while it starts).

        Raises:
            Stopped: a stop was asked for; nothing was scored or exported.
        """
        self.search(address, on_ray_started)
        return self.conclude(report)

    def search(self, address: str | None = None, on_ray_started: Callable[[], None] | None = None) -> None:
        """Run the method on Ray: started here (in ``ray_session.temp_root()``, after stopping
        what a killed run left), or the cluster at ``address``.

        Raises:
            Stopped: a stop was asked for (the stage saved its state), or Ray's own SIGTERM
            handler exited while Ray started.
        """
        exp_dir = self.dir
        try:  # a stop signal anywhere from here on leaves the experiment resumable
            import ray

            from tuning.methods import StageInterrupted, quiet_ray, run_method, stop_requested

            quiet_ray(exp_dir / store.RAY_LOG_FILE)  # Ray's notices (e.g. snapshot timings) go to a file
            code = {"py_modules": [str(p) for p in PACKAGES]} if address else None
            temp_dir = None
            try:
                temp_dir = None if address else str(stop_old_ray(exp_dir))
                ray.init(
                    address=address,
                    include_dashboard=False,
                    log_to_driver=True,
                    runtime_env=code,
                    _temp_dir=temp_dir,
                )
                if temp_dir:
                    ray_session.record(exp_dir)
                if on_ray_started:
                    on_ray_started()
                self.meta.ray_resources = {
                    k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")
                }
                run_method(self.config, self.splits)
            except StageInterrupted as err:
                log.error("%s", err)
            finally:
                self.meta.search_wall_time_s = time.time() - self.started
                try:
                    store.write_meta(exp_dir, self.meta)
                finally:
                    ray.shutdown()
                    if temp_dir:
                        ray_session.forget(exp_dir)  # shut down cleanly: nothing is left to stop
            if stop_requested():
                raise Stopped(exp_dir)
        except KeyboardInterrupt:
            raise Stopped(exp_dir) from None
        except SystemExit as err:  # ray.init's own SIGTERM handler, while Ray starts: sys.exit(15)
            if err.code != signal.SIGTERM:
                raise
            raise Stopped(exp_dir, signal.SIGTERM) from None

    def select(self, scores: list[TestScore], top: list[TestScore], cost: str | None) -> TestScore | None:
        """The scored model ``search.select`` exports (recorded in ``meta.selection``); ``None``:
        the best (and its soup), as without a rule."""
        from tuning.cost import select
        from tuning.settings.rules import parse_select

        rule = self.config.search.select
        gap = parse_select(rule) or 0.0
        if not top or not cost or gap <= 0:
            if gap > 0:
                log.warning("--select %r needs a cost objective (search.cost): the best is exported", rule)
            return None
        metric = self.config.search.metric
        pool = [
            s
            for s in scores
            if s.role in ("top", "front", "recipe") and cost in s.cost and metric in s.validation
        ]
        if top[0] not in pool:
            return None
        picked = pool[select([(s.validation[metric], s.cost[cost]) for s in pool], gap, MODES[metric], cost)]
        self.meta.selection = store.Selection(
            rule=rule,
            chosen=f"{picked.stage}/{picked.trial_id}",
            best=f"{top[0].stage}/{top[0].trial_id}",
            cost=cost,
        )
        if picked is not top[0]:
            log.info(
                "--select %s: exporting %s/%s (%s %.1f, validation %s %.4f) instead of the best %s/%s (%.1f, %.4f)",
                rule, picked.stage, picked.trial_id, cost, picked.cost[cost], metric, picked.validation[metric],
                top[0].stage, top[0].trial_id, top[0].cost[cost], top[0].validation[metric],
            )  # fmt: skip
        return picked

    def conclude(self, report: ReportWriter) -> int:
        """Score the winners (and the recipe's trial) on the held-out splits, compare the winner
        with the recipe, export the best, write the report.

        Returns:
            0, or 1 (every trial failed), 3 (no evaluated trial: nothing exported) or 130 (a stage
            was cut: the report holds the results so far).
        """
        import numpy as np
        import torch

        from tuning.control import control
        from tuning.ranking import control_trial
        from tuning.soup import cook
        from tuning.trial_config import TrialSettings, trial_config
        from tuning.winners import export_best, prune_checkpoints, score_front, score_winners, untuned_start

        exp, splits, meta, exp_dir = self.config, self.splits, self.meta, self.dir
        torch.set_num_threads(hardware.cpu_count())  # the trials are done: scoring has every core
        record = store.read_experiment(exp_dir)
        metric = exp.search.metric
        failed = [t for t in record.trials if t.status == "failed"]
        if record.trials and len(failed) == len(record.trials):
            meta.wall_time_s = time.time() - self.started
            store.write_meta(exp_dir, meta)
            log.error(
                "all %d trials failed (report: %s); the first: %s",
                len(failed),
                report(exp_dir),
                first_error(failed),
            )
            return 1
        tests = [s for s in splits if s not in ("train", "validation")]
        recipe = control_trial(record)
        also = " and the recipe's trial" if recipe else ""
        log.info("scoring the top %d (any seed repeats%s) on %s", exp.search.top_k, also, tests)
        predictions: dict[tuple[str, str], dict[str, Any]] = {}
        scores = score_winners(record, splits, metric, exp.search.top_k, recipe, predictions)
        cost = next((s.cost for s in record.stages if s.cost), None)
        if cost:
            from tuning.cost import full_depth, measure_levels, probe_pairs

            # The untuned model's level (the experiment's fixed model) for the report's front: a
            # level the search measured already (its depth) is read, not measured again.
            untuned = [full_depth(asdict(exp.model))]
            measure_levels(
                exp_dir, untuned, probe_pairs(splits["validation"]), log=lambda m: log.info("%s", m)
            )
            log.info("scoring the front of validation %s against %s on %s", metric, cost, tests)
            scores += score_front(record, splits, metric, cost, scores, predictions)
        store.write_scores(exp_dir, scores)
        labels = {name: np.asarray(splits[name]["label"]) for name in ("validation", *tests)}
        top = [s for s in scores if s.role == "top"]
        chosen = self.select(scores, top, cost)
        soup, exported = None, None
        if chosen is not None and top and chosen is not top[0]:
            exported = (f"{chosen.stage}/{chosen.trial_id}", predictions[(chosen.stage, chosen.trial_id)])
        elif exp.search.soup and top:
            # A soup averages weights: only checkpoints of the winner's cost level can mix.
            level = top[0].cost
            candidates = [s for s in scores if s.role in ("top", "recipe", "front") and s.cost == level]
            cooked = cook(candidates, splits, metric, predictions, seed=exp.search.seed)
            meta.soup = cooked.record if cooked else None
            if cooked and len(cooked.record.ingredients) > 1:
                soup = (cooked.model, cooked.record)
                exported = (f"greedy soup of {', '.join(cooked.record.ingredients)}", cooked.predictions)
                log.info(
                    "exporting a greedy soup of %s: validation %s %.4f (the best trial alone: %.4f)",
                    ", ".join(cooked.record.ingredients),
                    metric,
                    cooked.record.validation[metric],
                    top[0].validation[metric],
                )
        meta.control = control(
            record, scores, predictions, labels, recipe, seed=exp.search.seed, exported=exported
        )
        if meta.untuned is None:
            meta.untuned = untuned_start(TrialSettings.from_dict(trial_config(exp)), splits)
        freed = prune_checkpoints(record, scores, metric)
        if freed:
            log.info("removed checkpoints no trial needs any more: %.0f MiB freed", freed / 2**20)
        if top:
            meta.best_model = str(export_best(chosen or top[0], exp_dir, soup))
        meta.wall_time_s = time.time() - self.started
        meta.finished = bool(top) and all(s.status == "done" for s in record.stages)
        store.write_meta(exp_dir, meta)
        log.info("report: %s", report(exp_dir))
        if not top:
            log.error("%s", no_model(record, meta))
            return 3
        interrupted = [s.stage for s in record.stages if s.status != "done"]
        if interrupted:
            log.error("stage %s did not finish: the report holds the results so far.", interrupted[0])
            return 130
        w = chosen or top[0]
        shown = ", ".join(f"{k}={v}" for k, v in w.params.items())
        log.info(
            "%s %s/%s: validation pearson %.4f f1 %.4f (%s)",
            "best" if w is top[0] else "exported",
            w.stage,
            w.trial_id,
            w.validation.get("pearson", float("nan")),
            w.validation.get("f1", float("nan")),
            shown,
        )
        if failed:
            log.error(
                "%d of %d trials failed; the first: %s", len(failed), len(record.trials), first_error(failed)
            )
        return 0


def stop_old_ray(exp_dir: Path) -> Path:
    """Before Ray starts here: stop what a killed driver of ``exp_dir`` (or of any dead session
    in Ray's temp folder) left running, prune old session folders; returns that temp folder."""
    ended = ray_session.stop_leftovers(exp_dir / ray_session.RECORD_FILE)
    root = ray_session.temp_root()
    swept, removed = ray_session.sweep(root)
    ended = sorted({*ended, *swept})
    if ended:
        log.info("stopped %d Ray processes left by a killed run (PIDs %s)", len(ended), ended)
    if removed:
        log.info("removed %d old Ray session folders from %s", len(removed), root)
    return root


def no_model(record: ExperimentRecord, meta: ExperimentMeta) -> str:
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


def first_error(failed: list[TrialRecord]) -> str:
    """The first failed trial's error message and where its full log is."""
    trial = failed[0]
    log_file = Path(trial.path, store.ERROR_FILE)
    return f"{trial.stage}/{trial.trial_id}: {trial.error or 'no message'} (log: {log_file})"
