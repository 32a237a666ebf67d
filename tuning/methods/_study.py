"""The Optuna study of a search, kept in the experiment folder as Optuna's journal file.

``optuna-dashboard <experiment>/optuna.journal`` shows every Optuna stage as one study (named
after the stage), live while it runs: each trial's parameters, its validation metric after every
evaluation (intermediate values, step = Tune's ``training_iteration``) and how it ended.
``optuna.load_study(study_name=<stage>, storage=journal(path))`` reads it back.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

TUNE_TRIAL_ATTR = "tune_trial_id"
"""User attribute of each Optuna trial: its Tune trial id (the folder is ``<stage>_<id>``)."""


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
    - each trial's Tune id as a user attribute, to find its folder from the dashboard;
    - on restore, trials the killed driver had asked for after Tune's last saved state are
      marked failed (no Tune trial will ever end them: they would show as running forever);
    - results of a trial whose end the study already holds (it ended after Tune's last saved
      state and Tune re-runs its last epochs) are dropped: Optuna refuses to change a finished
      trial, and the study keeps the values it saw first.
    """

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
        if result and not error and self.metric in result and trial_id not in self._completed_trials:
            self.on_trial_result(trial_id, result)
        super().on_trial_complete(trial_id, result, error)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        known = {t.number for t in self._ot_trials.values()}
        for orphan in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if orphan.number not in known:
                self._ot_study.tell(orphan.number, state=TrialState.FAIL, skip_if_finished=True)


def stored_searcher(
    sampler: Any, path: Path, study_name: str, points_to_evaluate: list[dict] | None = None
) -> StoredOptunaSearch:
    """An Optuna searcher whose study ``study_name`` lives in the journal at ``path``; the
    ``points_to_evaluate`` are its first trials."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return StoredOptunaSearch(
        sampler=sampler, storage=journal(path), study_name=study_name, points_to_evaluate=points_to_evaluate
    )
