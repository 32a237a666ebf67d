"""A stage: one Ray Tune experiment under ``<storage>/<name>/<stage>/``, recorded in storage.

Every method is a sequence of stages. What a stage learns (its winner, where the winner came
from) is written to ``stage.json`` and read back from there by the next stage, the report and a
resumed run — never handed on in memory.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from ray.tune import Callback
from ray.tune.logger import TBXLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search.sample import Domain
from ray.tune.stopper import TimeoutStopper

from tuning import store
from tuning.methods._progress import Progress
from tuning.methods._warm import WarmPoints
from tuning.metrics import MODES
from tuning.ranking import ranked
from tuning.settings import ConfigError, ExperimentConfig
from tuning.spaces import grid_size, has_grid, in_domain, to_tune
from tuning.store import AshaBudget, StageRecord, StageStatus, TrialEnd, Winner
from tuning.trial_config import section_of, trial_config, trial_value, with_values


def read_stage(exp: ExperimentConfig, stage: str) -> StageRecord:
    """A started stage's record from storage."""
    record = store.read_stage(Path(exp.experiment_dir, stage))
    if record is None:
        raise StageInterrupted(f"stage {stage} has no record in {exp.experiment_dir}.")
    return record


def trial_data(splits: Any) -> Any:
    """Only what trials need (train, validation) travels to them."""
    from datasets import DatasetDict

    return DatasetDict({k: splits[k] for k in ("train", "validation")})


def recipe_point(base: dict[str, Any], searched: dict[str, Any]) -> dict[str, Any] | None:
    """The fixed config's value of every searched hyperparameter, if each lies in its domain,
    keyed as Ray's Optuna searcher names parameters (``training/learning_rate``)."""
    point = {}
    for key, domain in searched.items():
        value = trial_value(base, key)
        if key == "num_hidden_layers" and value is None:  # the recipe uses the whole encoder
            from tuning.model import encoder_depth

            value = encoder_depth(str(trial_value(base, "name_or_path")))
        if not in_domain(value, domain):
            return None
        point[f"{section_of(key)}/{key}"] = value  # as Ray's Optuna searcher names it (flattened)
    return point


def recipe_at_levels(start: dict[str, Any] | None, levels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recipe at every other cost level (depth, max length) the space reaches: with a cost
    objective each level starts from a known-good configuration, so the front has a point at
    every level however TPE samples the rest."""
    if not start:
        return []
    from tuning.cost import COST_KEYS

    out = []
    for level in levels:
        point = dict(start)
        point.update({f"model/{k}": level[k] for k in COST_KEYS if f"model/{k}" in start})
        if point != start and point not in out:
            out.append(point)
    return out


def optuna_searcher(
    exp: ExperimentConfig,
    stage: str,
    start: dict[str, Any] | None = None,
    warm: WarmPoints | None = None,
    also: list[dict[str, Any]] | None = None,
) -> Any:
    """Optuna's TPE or random sampler, seeded, as a Tune searcher; its study, named ``stage``, is
    kept in ``<experiment>/optuna.journal`` (``optuna-dashboard`` reads it, ``--resume`` goes on in it).

    With ``search.cost`` the study has two objectives, the metric and the cost (Optuna's TPE is
    multi-objective then). ``warm``: an earlier study's points (``tuning.methods._warm``);
    ``also``: points run after the recipe (:func:`recipe_at_levels`)."""
    import optuna
    from ray.tune.search import ConcurrencyLimiter

    from tuning.methods._study import stored_searcher

    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=exp.search.seed, n_startup_trials=startup_trials(exp)),
        "random": lambda: optuna.samplers.RandomSampler(seed=exp.search.seed),
    }
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_file = Path(exp.experiment_dir, store.STUDY_FILE).resolve()
    objectives = objectives_of(exp)
    mine = ([start] if start else []) + list(also or [])
    carried = [p for p in (warm.points if warm else []) if p not in mine]  # each point runs once
    points = carried + mine
    rewards = None
    if warm and warm.rewards:  # evaluated points: the recipe (not evaluated) is enqueued after them
        points, rewards = warm.points, warm.rewards
    searcher = stored_searcher(
        samplers[exp.search.searcher](),
        study_file,
        stage,
        points or None,
        metric=[m for m, _ in objectives] if len(objectives) > 1 else None,
        mode=[d for _, d in objectives] if len(objectives) > 1 else None,
        evaluated_rewards=rewards,
        then_enqueue=mine if rewards else None,
    )
    # Without a limiter Tune keeps one trial pending at a time for a searcher, so trials start one
    # after another. Allowing as many as fit now keeps every slot busy while TPE still suggests
    # each new configuration only when a slot frees, i.e. after seeing the results so far.
    return ConcurrencyLimiter(searcher, max_concurrent=exp.search.max_concurrent_trials or slots(exp))


def objectives_of(exp: ExperimentConfig) -> list[tuple[str, str]]:
    """The search's objectives and their directions: the metric, then the cost if one is set."""
    from tuning.cost import COST_MODES

    out: list[tuple[str, str]] = [(exp.search.metric, MODES[exp.search.metric])]
    if exp.search.cost:
        out.append((exp.search.cost, COST_MODES[exp.search.cost]))
    return out


def slots(exp: ExperimentConfig) -> int:
    """Trials the Ray cluster can run at once with the stage's per-trial resources (at least 1)."""
    import ray

    resources = ray.cluster_resources()
    fits = [resources.get("CPU", 1) / exp.search.cpus_per_trial]
    if exp.search.gpus_per_trial:
        fits.append(resources.get("GPU", 0) / exp.search.gpus_per_trial)
    return max(1, int(min(fits)))


def startup_trials(exp: ExperimentConfig) -> int:
    """Random trials before TPE starts modelling: the file's value, else ``default_startup_trials``."""
    if exp.search.startup_trials is not None:
        return exp.search.startup_trials
    return default_startup_trials(exp.search.num_samples)


def default_startup_trials(num_samples: int) -> int:
    """A third of the budget, between 2 and 10 (Optuna's own default is always 10)."""
    return min(10, max(2, num_samples // 3))


def asha_rungs(exp: ExperimentConfig, num_epochs: int, num_pairs: int) -> AshaBudget:
    """ASHA's budget in training pairs seen: grace period, largest budget and the rungs between.

    ``search.grace_period`` is in epochs (fractions allowed); a trial is judged at the first
    report at or past each rung, so rungs finer than ``training.eval_every_pairs`` add nothing.
    """
    max_t = num_epochs * num_pairs
    grace = max(1, min(round(exp.search.grace_period * num_pairs), max_t))
    rungs, t = [], grace
    while t < max_t:
        rungs.append(t)
        t *= exp.search.reduction_factor
    return AshaBudget(grace_period=grace, max_t=max_t, rungs=rungs, min_trials=exp.search.rung_min_trials)


def scheduler_for(
    exp: ExperimentConfig,
    kind: str,
    num_epochs: int,
    num_pairs: int,
    recipe: dict[str, Any] | None = None,
    groups: Sequence[str] = (),
    own_metric: bool = False,
) -> Any:
    """``asha`` (early stopping on the search metric, counted in training pairs seen) or ``fifo``.

    ``recipe``: the enqueued recipe point (:func:`recipe_point`); its trial is ASHA's control,
    never stopped early (:class:`FairASHA`). ``groups``: ``section/key`` settings whose values
    form a cost level; a trial is compared only with trials of its level. ``own_metric``: the
    scheduler is told the search metric itself (a multi-objective search gives Tune none).
    """
    if kind == "fifo":
        return FIFOScheduler()
    budget = asha_rungs(exp, num_epochs, num_pairs)
    return FairASHA(
        recipe=recipe,
        groups=groups,
        **({"metric": exp.search.metric, "mode": MODES[exp.search.metric]} if own_metric else {}),
        rungs=budget.rungs,
        min_trials=budget.min_trials,
        time_attr=store.PAIRS,
        max_t=budget.max_t,
        grace_period=budget.grace_period,
        reduction_factor=exp.search.reduction_factor,
    )


def rung_cutoff(values: Iterable[float], reduction_factor: float) -> float:
    """ASHA's cutoff at a rung (Ray's rule), larger values better: a trial below it stops, so
    about the top ``1/reduction_factor`` of the values recorded there go on."""
    return float(np.nanpercentile(list(values), (1 - 1 / reduction_factor) * 100))


class FairASHA(ASHAScheduler):
    """Ray Tune's ASHA with fair rungs and the recipe's trial as a control arm.

    Fair rungs: Ray's ASHA judges a trial at a rung against the results already there, so the
    first trial to reach a rung meets no cutoff and always continues; in a seeded search that
    made the search's outcome its first trial. Here a rung stops nothing until it holds
    ``min_trials`` results. A trial that arrived earlier trains on, and is judged at its next
    report by the value it had at the rung, against the cutoff of everything recorded there
    then (the top ``1/reduction_factor`` continue), as Optuna's ``bootstrap_count`` waits for
    a rung to fill. Each trial is judged once per rung.

    Control: the recipe's results still enter every rung, so each other trial meets the same
    cutoffs as without the protection; only the decision on the recipe's own trial turns from
    "stop" into "continue". The winner is then compared with the recipe at the same budget
    (``tuning.control``), not with a recipe stopped at its first rung.

    Cost levels: with ``groups`` (a search with a cost objective), each level (the values of
    those settings: depth, max length) has its own rungs, so a shallow model is judged against
    shallow models, not stopped for being less accurate than a deep one it is cheaper than.

    Args:
        recipe: the enqueued recipe point (``section/key`` -> value); ``None``: no control.
        rungs: the budgets (in ``time_attr``) trials are judged at, ascending, below ``max_t``.
        min_trials: results a rung holds before it stops a trial (1: Ray's ASHA).
        groups: ``section/key`` settings whose values make a trial's cost level; empty: one level.
        **kwargs: ``ASHAScheduler``'s.
    """

    def __init__(
        self,
        recipe: dict[str, Any] | None = None,
        rungs: Sequence[int] = (),
        min_trials: int = 1,
        groups: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._recipe = recipe or {}
        self._control: str | None = None
        self._min_trials = min_trials
        self._rungs: dict[int, dict[str, float]] | None = {t: {} for t in sorted(rungs)}
        self._judged: dict[int, set[str]] = {t: set() for t in rungs}
        self._groups = tuple(groups)
        self._levels: dict[tuple[Any, ...], tuple[dict[int, dict[str, float]], dict[int, set[str]]]] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A search started before 2026-12-04 pickled a ControlASHA that kept its rungs in Ray's
        # brackets: resumed, it goes on deciding as it did (Ray's ASHA and the control).
        state.setdefault("_rungs", None)
        state.setdefault("_groups", ())
        state.setdefault("_levels", {})
        self.__dict__.update(state)

    def _level(self, config: dict[str, Any]) -> tuple[dict[int, dict[str, float]], dict[int, set[str]]]:
        """The rungs (recorded values, judged trials) of the cost level of a trial's config."""
        assert self._rungs is not None
        if not self._groups:
            return self._rungs, self._judged
        key = tuple((config.get(g.split("/")[0]) or {}).get(g.split("/")[1]) for g in self._groups)
        if key not in self._levels:
            self._levels[key] = ({t: {} for t in self._rungs}, {t: set() for t in self._rungs})
        return self._levels[key]

    def is_control(self, trial: Any) -> bool:
        """Whether ``trial`` is the recipe's: the first trial with the recipe's values."""
        if self._control is None and self._recipe and _has_values(trial.config, self._recipe):
            self._control = trial.trial_id
        return trial.trial_id == self._control

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if self._rungs is None:
            action = super().on_trial_result(tune_controller, trial, result)
        elif self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        else:
            t, value = result[self._time_attr], self._metric_op * result[cast(str, self._metric)]
            stop = t >= self._max_t
            action = TrialScheduler.STOP if stop else self._judge(trial.trial_id, t, value, trial.config)
            self._num_stopped += action == TrialScheduler.STOP
        below_max = result.get(self._time_attr, 0) < self._max_t
        if action == TrialScheduler.STOP and below_max and self.is_control(trial):
            self._num_stopped -= 1
            return TrialScheduler.CONTINUE
        return action

    def _judge(self, trial_id: str, t: float, value: float, config: dict[str, Any] | None = None) -> str:
        rungs, judged_at = self._level(config or {})
        for milestone, recorded in rungs.items():
            if t < milestone:
                break
            recorded.setdefault(trial_id, value)  # its first report at or past the rung
            judged = judged_at[milestone]
            if trial_id in judged or len(recorded) < self._min_trials:
                continue
            judged.add(trial_id)
            if recorded[trial_id] < rung_cutoff(recorded.values(), self._reduction_factor):
                return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        if self._rungs is None:
            super().on_trial_complete(tune_controller, trial, result)
            return
        if self._time_attr in result and self._metric in result:
            value = self._metric_op * result[cast(str, self._metric)]
            for milestone, recorded in self._level(trial.config)[0].items():
                if result[self._time_attr] >= milestone:
                    recorded.setdefault(trial.trial_id, value)
        self._trial_info.pop(trial.trial_id, None)

    def rung_counts(self, config: dict[str, Any] | None = None) -> dict[int, int]:
        """Results recorded at each rung of a config's cost level (empty for a search resumed
        from before fair rungs)."""
        if self._rungs is None:
            return {}
        return {t: len(r) for t, r in self._level(config or {})[0].items()}


ControlASHA = FairASHA  # the name a search started before 2026-12-04 pickled


def _has_values(config: dict[str, Any], point: dict[str, Any]) -> bool:
    """Whether a Tune trial's nested config holds every ``section/key`` value of ``point``."""
    for flat, value in point.items():
        section, key = flat.split("/", 1)
        have = (config.get(section) or {}).get(key)
        numbers = isinstance(have, (int, float)) and isinstance(value, (int, float))
        if not (math.isclose(cast(float, have), value, rel_tol=1e-9) if numbers else have == value):
            return False
    return True


class TimeBudget(TimeoutStopper):
    """Ray Tune's time budget (``TimeoutStopper``, what ``time_budget_s`` builds) that remembers
    that it ended the search, so trials stopped by it are told from trials ASHA stopped.

    Its remaining budget is saved with the experiment: a resumed search gets what was left.
    """

    def __init__(self, seconds: float, stage_dir: Path) -> None:
        super().__init__(seconds)
        self.stage_dir = stage_dir
        self.fired = False

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Tuner.restore unpickles the stopper from tuner.pkl, pickled when the Tuner was created;
        # one pickled before 2026-11-30 kept the marker file's path instead of the stage folder.
        if "marker" in state:
            state["stage_dir"] = Path(state.pop("marker")).parent
        super().__setstate__(state)

    def stop_all(self) -> bool:
        if not self.fired and super().stop_all():
            self.fired = True
            store.mark_budget_ended(self.stage_dir, self._timeout_seconds, time.time())
        return self.fired


class TrialLog(Callback):
    """Prints one line per trial epoch and end, and records how each trial ended in storage.

    Ray's own tables print every trial's full config; this prints the searched values. The
    record, ``<stage>/trials.json``, is what tells a report "stopped early by the scheduler"
    from "interrupted" and counts retries after failures.
    """

    def __init__(
        self, stage_dir: Path, searched: list[str], num_epochs: int, budget: TimeBudget | None = None
    ) -> None:
        self.stage_dir = stage_dir
        self.stage, self.searched, self.num_epochs = stage_dir.name, searched, num_epochs
        self.budget = budget
        self.ended: dict[str, TrialEnd] = store.read_trial_ends(stage_dir)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Tuner.restore unpickles the callbacks from tuner.pkl, pickled when the Tuner was
        # created: what storage says now (trials.json) replaces the pickled copy, or a resumed
        # stage would rewrite trials.json without the trials that ended before the stop. One
        # pickled before 2026-11-30 kept the file's path instead of the stage folder.
        if "path" in state:
            state["stage_dir"] = Path(state.pop("path")).parent
        self.__dict__.update(state)
        self.ended = store.read_trial_ends(self.stage_dir)

    def _say(self, text: str) -> None:
        print(f"[{self.stage}] {text}", flush=True)

    def _record(self, trial: Any, **fields: Any) -> None:
        entry = self.ended.setdefault(trial.trial_id, TrialEnd())
        for key, value in fields.items():
            setattr(entry, key, value)
        store.write_trial_ends(self.stage_dir, self.ended)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        metrics = " ".join(f"{m} {result[m]:.4f}" for m in ("pearson", "f1") if m in result)
        params = ", ".join(f"{k}={_short(trial_value(trial.config, k))}" for k in self.searched)
        self._say(f"{trial.trial_id} epoch {result.get(store.EPOCH)}/{self.num_epochs}: {metrics} ({params})")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epochs = (trial.last_result or {}).get(store.EPOCH, 0)
        self._record(trial, status="completed", epochs=epochs)
        how = "finished" if epochs >= self.num_epochs else f"stopped early by the scheduler after {epochs}"
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        self._say(f"{trial.trial_id} {how}/{self.num_epochs} epochs ({done}/{len(trials)} trials ended)")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # Tune stops the trials running when its time budget ends without on_trial_complete.
        if self.budget is None or not self.budget.fired:
            return
        for trial in trials:
            if trial.trial_id in self.ended and self.ended[trial.trial_id].status is not None:
                continue
            epochs = (trial.last_result or {}).get(store.EPOCH, 0)
            self._record(trial, status="completed", epochs=epochs, ended_by="time_budget")
            self._say(f"{trial.trial_id} stopped by the time budget after {epochs}/{self.num_epochs} epochs")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        entry = self.ended.get(trial.trial_id, TrialEnd())
        self._record(trial, retries=entry.retries + 1)
        self._say(f"{trial.trial_id} failed and is retried from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial, status="error", epochs=(trial.last_result or {}).get(store.EPOCH, 0))
        self._say(f"{trial.trial_id} failed; see {trial.path}/{store.ERROR_FILE}")


class NoRayTensorBoard(TBXLoggerCallback):
    """A stand-in for Ray's TensorBoard logger that writes nothing.

    Tune adds its CSV, JSON and TensorBoard loggers unless one of each kind is among the run's
    callbacks. Its TensorBoard files (every reported number against ``training_iteration``, and
    an HParams set of its own) would sit in each trial folder beside the trial's own TensorBoard
    run in ``<experiment>/tensorboard/``: two HParams sets and two step units for one trial. The
    CSV and JSON loggers stay: ``result.json`` is what storage reads trials from. Preferred to
    ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``, which would drop those too and, being process-wide,
    would also reach a resumed experiment whose pickled callbacks predate it.
    """

    def __init__(self) -> None:  # Ray's opens a tensorboardX writer per trial; this opens none
        self._SAVED_FILE_TEMPLATES: list[str] = []  # no files of its own to restore with a trial

    def log_trial_start(self, trial: Any) -> None:
        pass

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        pass

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        pass


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _max_epochs(param_space: dict[str, Any], default: int) -> int:
    """The scheduler's horizon: the largest number of epochs any trial may train."""
    from ray.tune.search.sample import Categorical, Integer

    value = trial_value(param_space, "num_epochs", default)
    if isinstance(value, dict):  # a grid
        return int(max(value["grid_search"]))
    if isinstance(value, Categorical):
        return int(max(value.categories))
    if isinstance(value, Integer):
        return int(value.upper) - 1  # Tune's randint excludes its upper bound
    return int(value)


@dataclass
class StagePlan:
    """Everything one new Tuner of a stage is built from (see :func:`run_stage`)."""

    exp: ExperimentConfig
    record: StageRecord
    stage_dir: Path
    param_space: dict[str, Any]
    searcher: Any
    scheduler: str | Any
    samples: int
    keep_checkpoints: int
    recipe: dict[str, Any] | None = None
    """The enqueued recipe point: its trial is ASHA's control (:class:`FairASHA`)."""
    groups: Sequence[str] = ()
    """``section/key`` settings that make a cost level (``search.cost``): ASHA judges within one."""

    def tuner(self, trainable: Any) -> Any:
        """A new Tune experiment of the stage (a restored one comes from ``Tuner.restore``)."""
        from ray import tune

        exp, record, stage = self.exp, self.record, self.record.stage
        budget = TimeBudget(exp.search.time_budget, self.stage_dir) if exp.search.time_budget else None
        # A two-objective searcher holds its metrics itself: Tune is given none (it would
        # overwrite them), and the scheduler is told the search metric directly.
        multi = bool(record.cost) and self.searcher is not None
        scheduler = self.scheduler
        if isinstance(scheduler, str):
            scheduler = scheduler_for(
                exp, scheduler, record.num_epochs, record.train_pairs or 0, self.recipe, self.groups, multi
            )
        return tune.Tuner(
            trainable,
            param_space=self.param_space,
            tune_config=tune.TuneConfig(
                metric=None if multi else record.metric,
                mode=None if multi else record.mode,
                search_alg=self.searcher,
                scheduler=scheduler,
                num_samples=self.samples,
                max_concurrent_trials=exp.search.max_concurrent_trials,
                reuse_actors=True,  # a new trial skips the worker start-up and imports (seconds each)
                trial_name_creator=lambda trial: f"{stage}_{trial.trial_id}",
                trial_dirname_creator=lambda trial: f"{stage}_{trial.trial_id}",
            ),
            run_config=tune.RunConfig(
                name=stage,
                storage_path=str(self.stage_dir.parent),
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=self.keep_checkpoints,
                    checkpoint_score_attribute=record.metric,
                    checkpoint_score_order=record.mode,
                ),
                failure_config=tune.FailureConfig(max_failures=exp.search.max_failures),
                # Tune's own time budget: at the end running trials stop and keep their checkpoints.
                stop=budget,
                callbacks=[
                    TrialLog(self.stage_dir, record.searched, record.num_epochs, budget),
                    Progress(stage, record.metric, record.mode, record.num_epochs, exp.search.time_budget),
                    NoRayTensorBoard(),
                ],
                verbose=0,
            ),
        )


def run_stage(
    exp: ExperimentConfig,
    stage: str,
    space: dict[str, Any],
    data: Any,
    *,
    base: dict[str, Any] | None = None,
    num_samples: int | None = None,
    scheduler: str | Any | None = None,
    searcher: Any = "auto",
    extra: dict[str, Any] | None = None,
    keep_checkpoints: int = 1,
) -> Path:
    """Run one Ray Tune experiment, then record its winner in the stage's record.

    Args:
        exp: the experiment (search settings, storage).
        stage: the stage's folder name.
        space: hyperparameter -> fixed value or domain spec (``tuning.spaces``).
        data: the loaded splits, put once into Ray's object store for every trial.
        base: the fixed trial config; defaults to ``tuning.trial_config.trial_config(exp)``.
        num_samples: trials to sample (grids: repeats); default 1 for grids, else ``search.num_samples``.
        scheduler: ``asha``, ``fifo`` or a Tune scheduler object; default ``search.scheduler``.
        searcher: ``auto`` (Optuna for sampled spaces, none for grids), or a Tune searcher / None.
        extra: more fields of the stage's record (``StageRecord``: ``carried``, ``role``, ...).
        keep_checkpoints: checkpoints each trial keeps while the stage runs, the best by the
            metric (PBT needs more than one: other trials restore from them).

    Returns:
        The stage's folder in storage.
    """
    from ray import tune

    from tuning.trial import train_trial

    searched = to_tune(space, f"{exp.source_file}: {stage}: ")
    fixed = base or trial_config(exp)
    param_space = with_values(fixed, searched)
    num_epochs = _max_epochs(param_space, exp.training.num_epochs)
    metric = exp.search.metric
    grid = has_grid(param_space)
    samples = num_samples or (1 if grid else exp.search.num_samples)
    stage_dir = Path(exp.experiment_dir, stage).resolve()
    previous = store.read_stage(stage_dir)
    groups: list[str] = []
    levels: list[dict[str, Any]] = []
    if exp.search.cost:
        groups, levels = cost_objective(exp, stage, fixed, searched, param_space, data)
    start, warm, carried = None, None, None
    if searcher == "auto":
        sampled = any(isinstance(v, Domain) for v in searched.values())
        if sampled and not grid:
            start = recipe_point(fixed, searched) if exp.search.start_from_recipe else None
            if exp.search.warm_start and not previous:
                warm, carried = warm_start(exp, stage, searched, param_space, fixed)
            searcher = optuna_searcher(exp, stage, start, warm, recipe_at_levels(start, levels))
        else:
            searcher = None
    sched = scheduler or exp.search.scheduler
    if previous and previous.status == "done":
        shown = previous.winner.model_dump() if previous.winner else "no winner"
        print(f"[{stage}] already done (resumed run): {shown}", flush=True)
        return stage_dir
    every = trial_value(param_space, "eval_every_pairs")
    record = StageRecord(
        stage=stage,
        status="running",
        searched=sorted(k for k in space if isinstance(space[k], dict)),
        space=space,
        metric=metric,
        mode=MODES[metric],
        num_epochs=num_epochs,
        planned_trials=samples * grid_size(param_space),
        searcher="grid" if grid else f"optuna-{exp.search.searcher}" if searcher else "variants",
        scheduler=sched if isinstance(sched, str) else type(sched).__name__,
        train_pairs=len(data["train"]),
        eval_every_pairs=every if isinstance(every, int) else None,
        time_budget_s=exp.search.time_budget,
        # Resolved from `auto` before any stage runs (hardware.apply_resources): numbers here.
        cpus_per_trial=cast(float, exp.search.cpus_per_trial),
        gpus_per_trial=cast(float, exp.search.gpus_per_trial),
        started=time.time(),
        **(extra or {}),
    )
    if sched == "asha":
        record.asha = asha_rungs(exp, num_epochs, len(data["train"]))
    record.cost, record.warm_start = exp.search.cost, carried
    if previous:  # an interrupted or killed stage: keep its start, count the resume
        record.started, record.resumed = previous.started, previous.resumed + 1
        record.warm_start = previous.warm_start
    stage_dir.mkdir(parents=True, exist_ok=True)
    store.write_stage(stage_dir, record)

    try:  # a stop before Tune has saved any state: the record says so, not "running"
        resources = {"cpu": record.cpus_per_trial, "gpu": record.gpus_per_trial}
        trainable = tune.with_resources(tune.with_parameters(train_trial, data=data), resources)
        if previous and tune.Tuner.can_restore(str(stage_dir)):
            # Finished trials stay finished; unfinished and failed ones continue from their last
            # checkpoints; the searcher (Optuna's study) and scheduler come back from Tune's state.
            print(f"[{stage}] resuming from {stage_dir}", flush=True)
            for trial_id, why in from_scratch(stage_dir):
                print(f"[{stage}] {trial_id} runs again from scratch: {why}", flush=True)
            tuner = tune.Tuner.restore(str(stage_dir), trainable, resume_unfinished=True, resume_errored=True)
        else:
            plan = StagePlan(
                exp, record, stage_dir, param_space, searcher, sched, samples, keep_checkpoints, start, groups
            )
            tuner = plan.tuner(trainable)
        if STOP_REQUESTED.is_set():  # a stop signal came while an earlier stage ended
            raise StageInterrupted(f"stage {stage} was not started: the search was asked to stop.")
        results = tuner.fit()
    except (KeyboardInterrupt, StageInterrupted):
        record.status = "interrupted"
        store.write_stage(stage_dir, record)
        raise
    if threading.current_thread() is threading.main_thread():
        # Tune leaves its SIGUSR1 handler (its stop request) installed after fit(); put the
        # default back so a stop signal between stages is not sent to a finished run.
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    record.status = stage_status(results)
    record.ended = time.time()
    if store.budget_ended(stage_dir):
        record.ended_by = "time_budget"
        # Tune stops the running trials without telling the searcher: the study would show them
        # running forever. Pruned, as the scheduler's stops are: neither trained every epoch.
        study_file = Path(exp.experiment_dir, store.STUDY_FILE)
        if study_file.is_file():
            from tuning.methods._study import prune_running

            prune_running(study_file.resolve(), stage)
    record.winner = stage_winner(stage_dir, record)
    store.write_stage(stage_dir, record)
    return stage_dir


def cost_objective(
    exp: ExperimentConfig,
    stage: str,
    fixed: dict[str, Any],
    searched: dict[str, Any],
    param_space: dict[str, Any],
    data: Any,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Measure every cost level the stage can reach (``tuning.cost``), put the figures into the
    trials' config; return the ``section/key`` settings that make a level (ASHA's groups) and
    the levels (model sections)."""
    from tuning.cost import (
        COST_KEYS,
        SERVING_COST,
        CostSpaceError,
        cost_levels,
        cost_table,
        full_depth,
        level_key,
        measure_levels,
        probe_pairs,
    )

    try:
        # A level names its depth (None: the encoder's own): the whole model and the same depth
        # searched are one level, measured once, and the trial and the report find it by that name.
        levels = [full_depth(level) for level in cost_levels(fixed["model"], searched)]
    except CostSpaceError as err:
        raise ConfigError(f"{exp.source_file}: {err}") from None
    costs = measure_levels(
        exp.experiment_dir,
        levels,
        probe_pairs(data["validation"]),
        log=lambda m: print(f"[{stage}] {m}", flush=True),
    )
    param_space[SERVING_COST] = cost_table({level_key(lv): costs[level_key(lv)] for lv in levels})
    return [f"model/{k}" for k in COST_KEYS if k in searched], levels


def warm_start(
    exp: ExperimentConfig,
    stage: str,
    searched: dict[str, Any],
    param_space: dict[str, Any],
    fixed: dict[str, Any],
) -> tuple[Any, store.WarmStart]:
    """The earlier experiment's points for this stage's searcher, and what was carried over."""
    from tuning.cost import SERVING_COST
    from tuning.methods._warm import warm_points

    meta = store.read_meta(Path(exp.experiment_dir))
    sampled = {k: v for k, v in searched.items() if isinstance(v, Domain)}
    warm, carried = warm_points(
        exp,
        meta.data_fingerprint,
        sampled,
        param_space.get(SERVING_COST) if exp.search.cost else None,
        fixed["model"],
    )
    if carried.same_problem:
        print(
            f"[{stage}] warm start: {carried.evaluated} trials of {carried.source} given to the searcher as evaluated (the same problem)",
            flush=True,
        )
    else:
        print(
            f"[{stage}] warm start: the top {carried.enqueued} configurations of {carried.source} tried first "
            f"(another problem: {'; '.join(carried.differences)})",
            flush=True,
        )
    return warm, carried


def from_scratch(stage_dir: Path) -> list[tuple[str, str]]:
    """The trials a resumed stage will train again from the start, each with the reason.

    Read from Tune's newest ``experiment_state-*.json`` (what ``Tuner.restore`` restores): a
    trial Tune has not ended continues from the checkpoint its last report names, in its folder;
    when that folder was deleted, or the trial was cut before its first checkpoint, it starts
    over. Trials that never started are not listed. An unknown state format lists nothing: this
    only informs.
    """
    import json

    states = sorted(stage_dir.glob("experiment_state-*.json"))
    try:
        trial_data = json.loads(states[-1].read_text(encoding="utf-8"))["trial_data"] if states else []
        out = []
        for trial_json, run_json in trial_data:
            trial, run = json.loads(trial_json), json.loads(run_json)
            if trial["status"] == "TERMINATED":
                continue
            last = run.get("last_result") or {}
            folder = stage_dir / trial["relative_logdir"]
            if last and not folder.is_dir():
                out.append(
                    (
                        trial["trial_id"],
                        f"its folder {folder} was deleted (it had reached epoch {store.epoch_number(last.get(store.EPOCH, 0))})",
                    )
                )
            elif not last.get(store.CHECKPOINT_DIR_NAME) and trial["status"] != "PENDING":
                out.append((trial["trial_id"], "it was cut before it saved its first checkpoint"))
        return out
    except (OSError, ValueError, KeyError, TypeError):
        return []


def stage_winner(stage_dir: Path, record: StageRecord) -> Winner | None:
    """The stage's best trial by its metric, read back from storage; ties go to the lower trial id."""
    trials = store.read_stage_trials(stage_dir, record)
    rows = ranked(trials, record.metric)
    if not rows:
        return None
    best = rows[0]
    trial = next(t for t in trials if t.trial_id == best.trial_id)
    return Winner(
        trial_id=best.trial_id,
        params=best.params,
        metric=record.metric,
        value=best.metrics[record.metric],
        best_epoch=best.best_epoch,
        config_file=str(Path(trial.path, store.PARAMS_FILE)),
    )


# Set by the driver (run_search.py) when SIGINT or SIGTERM asks the search to stop. Tune's stop
# request ends fit() normally and its cleanup marks the running trials TERMINATED, so the
# trials' statuses alone cannot tell an interrupted stage from a finished one.
STOP_REQUESTED = threading.Event()


def stage_status(results: Any) -> StageStatus:
    """``done`` when every trial of the stage ended; ``interrupted`` when a stop signal came
    during it or trials are left to run (``--resume`` continues it)."""
    ended = results.num_terminated + results.num_errors
    if STOP_REQUESTED.is_set() or ended < len(results):
        return "interrupted"
    return "done"


class StageInterrupted(RuntimeError):
    """A stage ended before all its trials did (Ctrl-C): later stages must not start."""


def require_done(exp: ExperimentConfig, stage: str) -> StageRecord:
    """The stage's record if it finished with a winner; else stop the method."""
    record = read_stage(exp, stage)
    if record.status != "done":
        raise StageInterrupted(f"stage {stage} was interrupted; later stages were not started.")
    if not record.winner:
        raise StageInterrupted(f"stage {stage} has no trial with a {record.metric} result (all failed?).")
    return record
