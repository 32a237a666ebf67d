"""The Optuna study of a search, kept in the experiment folder as Optuna's journal file.

``optuna-dashboard <experiment>/optuna.journal`` shows every Optuna stage as one study (named
after the stage), live while it runs: each trial's parameters, its validation metric after every
evaluation (intermediate values, step = Tune's ``training_iteration``) and how it ended:
``COMPLETE`` for a trial that trained every epoch, ``PRUNED`` for one ASHA stopped or the time
budget cut (its user attribute ``ended_by`` says which; its value is its last intermediate
value, Optuna's rule for pruned trials), ``FAIL`` for one that failed.
``optuna.load_study(study_name=<stage>, storage=journal(path))`` reads it back.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal, cast

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from tuning.store import EPOCH

TUNE_TRIAL_ATTR = "tune_trial_id"
"""User attribute of each Optuna trial: its Tune trial id (the folder is ``<stage>_<id>``)."""
ENDED_BY_ATTR = "ended_by"
"""User attribute of a pruned trial: what stopped it, ``scheduler`` or ``time_budget``."""
EndedBy = Literal["scheduler", "time_budget"]


def trained_every_epoch(result: dict[str, Any]) -> bool:
    """Whether the (flattened) result a trial ended on is its last planned epoch's.

    Tune reports a trial ASHA stopped and one that finished the same way (ASHA stops a trial at
    its largest budget too, and both results say ``done``): only the epoch tells them apart.
    A result without the trial's ``num_epochs`` counts as finished (what Ray records).
    """
    planned = result.get("config/training/num_epochs")
    return planned is None or float(result.get(EPOCH, 0)) >= float(planned)


def journal(path: str | Path) -> JournalStorage:
    """Optuna's storage on a journal file (append-only; readable while a search writes it)."""
    return JournalStorage(JournalFileBackend(str(path)))


class StoredOptunaSearch(OptunaSearch):
    """Ray's ``OptunaSearch`` on a journal file, made safe to resume after the driver was killed.

    Ray reports results to the study (``trial.report(metric, training_iteration)``) and tells it
    how each trial ended; its saved state keeps the storage, so a resumed search writes on in the
    same study. This adds:

    - the result each trial ended on as its last intermediate value (Ray reports it to
      ``on_trial_complete`` only);
    - a trial that ended before its last epoch (ASHA stopped it) told ``PRUNED``, not
      ``COMPLETE`` (Ray tells every trial with a result complete);
    - each trial's Tune id as a user attribute, to find its folder from the dashboard;
    - on restore, trials the killed driver had asked for after Tune's last saved state are
      marked failed (no Tune trial will ever end them: they would show as running forever);
    - results of a trial whose end the study already holds (it ended after Tune's last saved
      state and Tune re-runs its last epochs) are dropped: Optuna refuses to change a finished
      trial, and the study keeps the values it saw first.
    """

    then_enqueue: tuple[dict, ...] = ()
    """Points enqueued once the study exists, after any evaluated ones (:func:`stored_searcher`)."""

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)
        for point in self.then_enqueue:
            cast(optuna.Study, self._ot_study).enqueue_trial(point)
        self.then_enqueue = ()

    def add_evaluated_point(self, parameters: dict, value: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(value, (list, tuple)):
            super().add_evaluated_point(parameters, value, *args, **kwargs)
            return
        # Ray gives Optuna one ``value``; a two-objective study takes ``values``.
        trial = optuna.trial.create_trial(
            state=TrialState.COMPLETE,
            values=[float(v) for v in value],
            params=parameters,
            distributions=cast(dict, self._space),
        )
        cast(optuna.Study, self._ot_study).add_trial(trial)

    def suggest(self, trial_id: str) -> dict | None:
        params = super().suggest(trial_id)
        self._ot_trials[trial_id].set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        return params

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        with contextlib.suppress(UpdateFinishedTrialError):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # Tune hands the result a trial ends on (its last epoch, or the rung ASHA stopped it at)
        # to on_trial_complete only: without this the study would miss every trial's last value.
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        has_metrics = bool(result) and all(m in cast(dict, result) for m in metrics)
        if result and not error and has_metrics and trial_id not in self._completed_trials:
            self.on_trial_result(trial_id, result)
            if not trained_every_epoch(result):
                # Ray tells a trial without a result PRUNED (Optuna then keeps its last
                # intermediate value as its value): the same call, minus the result.
                with contextlib.suppress(UpdateFinishedTrialError):  # its end is already told
                    self._ot_trials[trial_id].set_user_attr(ENDED_BY_ATTR, "scheduler")
                result = None
        super().on_trial_complete(trial_id, result, error)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        known = {t.number for t in self._ot_trials.values()}
        study = cast(optuna.Study, self._ot_study)  # restored by super().restore
        for orphan in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if orphan.number not in known:
                study.tell(orphan.number, state=TrialState.FAIL, skip_if_finished=True)


def prune_running(path: str | Path, study_name: str, ended_by: EndedBy = "time_budget") -> list[int]:
    """Tell every trial of the study still running ``PRUNED``; returns their numbers.

    Tune stops the trials running when its time budget ends without telling the searcher (no
    ``on_trial_complete``): without this they would stay ``RUNNING`` in the journal forever.
    A trial that reported keeps its intermediate values, the last one as its value.
    """
    storage = journal(path)
    if study_name not in optuna.get_all_study_names(storage):
        return []  # a stage without Optuna (a grid, variants)
    study = optuna.load_study(study_name=study_name, storage=storage)
    study_id = storage.get_study_id_from_name(study_name)
    pruned = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, ENDED_BY_ATTR, ended_by)
        study.tell(trial.number, state=TrialState.PRUNED, skip_if_finished=True)
        pruned.append(trial.number)
    return pruned


def stored_searcher(
    sampler: Any,
    path: Path,
    study_name: str,
    points_to_evaluate: list[dict] | None = None,
    metric: list[str] | None = None,
    mode: list[str] | None = None,
    evaluated_rewards: list[Any] | None = None,
    then_enqueue: list[dict] | None = None,
) -> StoredOptunaSearch:
    """An Optuna searcher whose study ``study_name`` lives in the journal at ``path``.

    Args:
        points_to_evaluate: its first trials; with ``evaluated_rewards`` (one per point), trials
            already evaluated, added to the study with their values (nothing is run).
        metric, mode: two objectives (a list each); ``None``: Tune's one metric.
        then_enqueue: points run first after the evaluated ones (the recipe).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    searcher = StoredOptunaSearch(
        sampler=sampler,
        storage=journal(path),
        study_name=study_name,
        points_to_evaluate=points_to_evaluate,
        evaluated_rewards=evaluated_rewards,
        metric=metric,
        mode=mode,
    )
    searcher.then_enqueue = tuple(then_enqueue or ())
    return searcher
