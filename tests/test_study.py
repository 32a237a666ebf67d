"""A search seen through other tools and by a person watching it.

Optuna's study in ``<experiment>/optuna.journal`` (what ``optuna-dashboard`` reads) holds every
trial with its parameters, its true state (a trial ASHA stopped is ``PRUNED``, not ``COMPLETE``)
and intermediate values, and a resumed search goes on in it; TensorBoard finds one run per trial
(ours, stepped by training pairs) and none of Ray's; Ray Tune's own analysis reads a stage
folder; the terminal shows a progress line and none of Ray's notices, which go to
``<experiment>/ray.log``.
"""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.experiment import Trial

from tests.conftest import run_cli
from tests.killed_run import KilledRun
from tuning.methods._progress import PROGRESS_ENV, Progress
from tuning.methods._study import ENDED_BY_ATTR, TUNE_TRIAL_ATTR, journal, prune_running, trained_every_epoch
from tuning.store import RAY_LOG_FILE, STUDY_FILE, TENSORBOARD_DIR, read_results

SNAPSHOT_WARNING = "Experiment state snapshotting has been triggered multiple times"


def _trial(trial_id: str, status: str, pearsons: list[float], num_epochs: int = 3) -> Trial:
    """A real Tune trial record that reported one validation Pearson per epoch."""
    config = {"training": {"num_epochs": num_epochs}}  # a trial config (tuning.trial_config)
    trial = Trial("train_trial", config=config, trial_id=trial_id, stub=True)
    for epoch, value in enumerate(pearsons, 1):
        trial.update_last_result({"pearson": value, "epoch": float(epoch), "training_iteration": epoch})
    trial.set_status(status)
    return trial


def test_progress_line_counts_trials_by_how_they_ended_and_names_the_best():
    trials = [
        _trial("a", Trial.TERMINATED, [0.5, 0.7, 0.6]),  # all 3 epochs; its best epoch counts
        _trial("b", Trial.TERMINATED, [0.4]),  # stopped after 1 of 3
        _trial("c", Trial.RUNNING, [0.65]),
        _trial("d", Trial.ERROR, []),
        _trial("e", Trial.PENDING, []),
        _trial("f", Trial.TERMINATED, [0.3, 0.35], num_epochs=2),  # its own horizon: finished
    ]
    progress = Progress("optuna", "pearson", "max", num_epochs=3, time_budget_s=600)
    assert progress.status(trials, elapsed=75.0) == (
        "1m15s elapsed, 8m45s of the time budget left; trials: 2 finished, 1 stopped early, "
        "1 failed, 1 running, 1 waiting; best pearson 0.7000 (a)"
    )
    lower = Progress("optuna", "pearson", "min", num_epochs=3)
    assert lower.status(trials[:2], elapsed=3725).endswith("best pearson 0.4000 (b)")
    assert lower.status([], elapsed=3725) == (
        "1h02m elapsed; trials: 0 finished, 0 stopped early, 0 failed, 0 running; no pearson yet"
    )


@pytest.mark.parametrize(
    ("epoch", "num_epochs", "finished"),
    [(2.0, 2, True), (1.0, 2, False), (0.125, 1, False), (3.0, None, True)],
)
def test_a_trial_finished_when_its_last_result_is_its_last_epoch(epoch, num_epochs, finished):
    result = {"pearson": 0.5, "epoch": epoch}
    if num_epochs is not None:
        result["config/training/num_epochs"] = num_epochs  # Tune's flattened result
    assert trained_every_epoch(result) is finished


def _result(iteration: int, epoch: float, pearson: float) -> dict:
    """A flattened Tune result of a trial planned for 2 epochs."""
    return {
        "pearson": pearson,
        "training_iteration": iteration,
        "epoch": epoch,
        "config/training/num_epochs": 2,
    }


def test_the_searcher_tells_a_stopped_trial_pruned_and_a_finished_one_complete(tmp_path):
    """What Tune hands the searcher: a trial ASHA stopped ends on a result it never reported."""
    from optuna.distributions import FloatDistribution
    from optuna.samplers import RandomSampler

    from tuning.methods._study import StoredOptunaSearch

    path = tmp_path / STUDY_FILE
    searcher = StoredOptunaSearch(
        space={"training/learning_rate": FloatDistribution(1e-5, 1e-3, log=True)},
        metric="pearson",
        mode="max",
        sampler=RandomSampler(seed=0),
        study_name="optuna",
        storage=journal(path),
    )
    for trial_id in ("stopped", "finished", "failed"):
        searcher.suggest(trial_id)
    searcher.on_trial_complete("stopped", _result(1, 1.0, 0.4))
    searcher.on_trial_result("finished", _result(1, 1.0, 0.5))
    searcher.on_trial_complete("finished", _result(2, 2.0, 0.6))
    searcher.on_trial_complete("failed", error=True)

    study = optuna.load_study(study_name="optuna", storage=journal(path))
    trials = {t.user_attrs[TUNE_TRIAL_ATTR]: t for t in study.trials}
    stopped, finished, failed = trials["stopped"], trials["finished"], trials["failed"]
    assert (stopped.state, stopped.value, stopped.intermediate_values) == (TrialState.PRUNED, 0.4, {1: 0.4})
    assert stopped.user_attrs[ENDED_BY_ATTR] == "scheduler"
    assert (finished.state, finished.value) == (TrialState.COMPLETE, 0.6)
    assert finished.intermediate_values == {1: 0.5, 2: 0.6}
    assert failed.state == TrialState.FAIL
    assert study.best_trial.user_attrs[TUNE_TRIAL_ATTR] == "finished"


def test_trials_the_time_budget_cut_are_pruned_with_their_last_value(tmp_path):
    path = tmp_path / STUDY_FILE
    study = optuna.create_study(study_name="optuna", storage=journal(path), direction="maximize")
    done, cut, unstarted = study.ask(), study.ask(), study.ask()
    done.report(0.7, 1)
    study.tell(done, 0.7)
    cut.report(0.3, 1)
    cut.report(0.5, 2)
    assert prune_running(path, "optuna") == [cut.number, unstarted.number]
    assert prune_running(path, "grid") == []  # a stage without a study

    trials = optuna.load_study(study_name="optuna", storage=journal(path)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED]
    assert [t.value for t in trials] == [0.7, 0.5, None]
    assert [t.user_attrs.get(ENDED_BY_ATTR) for t in trials] == [None, "time_budget", "time_budget"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, shared):
    """A real smoke search with a progress line every second: (experiment folder, process).

    One trial at a time, so ASHA's decisions are the seeded run's, not the order two trials
    happen to report in: the recipe (at the top of the learning-rate range) trains both epochs
    (the first at a rung is never stopped); the next, TPE's seeded draw (lr 3.1e-5), scores below
    it at the first rung (Pearson 0.58228 against 0.58268, measured) and is stopped there.
    """
    storage = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(PROGRESS_ENV, "1")
        proc = run_cli(
            "--method", "optuna", "--profile", "cpu", "--smoke-test", "--storage", str(storage), "--name", "s",
            "--search.max_concurrent_trials", "1", "--training.learning_rate", "2e-4",
        )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return storage / "s", proc


@pytest.mark.e2e
def test_study_holds_every_trial_with_its_params_state_and_intermediate_values(smoke):
    exp, _ = smoke
    storage = journal(exp / STUDY_FILE)
    assert optuna.get_all_study_names(storage) == ["optuna"]
    study = optuna.load_study(study_name="optuna", storage=storage)
    folders = {d.name.removeprefix("optuna_"): d for d in (exp / "optuna").glob("optuna_*")}
    assert len(folders) == 2
    assert sorted(t.user_attrs[TUNE_TRIAL_ATTR] for t in study.trials) == sorted(folders)
    states = {}
    for trial in study.trials:
        folder = folders[trial.user_attrs[TUNE_TRIAL_ATTR]]
        params = json.loads((folder / "params.json").read_text())
        rows = read_results(folder)
        # Stopped early by ASHA: PRUNED, with what stopped it; trained every epoch: COMPLETE.
        finished = rows[-1]["epoch"] >= params["training"]["num_epochs"]
        states[trial.state] = trial
        if finished:
            assert trial.state == TrialState.COMPLETE
            assert ENDED_BY_ATTR not in trial.user_attrs
        else:
            assert trial.state == TrialState.PRUNED
            assert trial.user_attrs[ENDED_BY_ATTR] == "scheduler"
        # Ray's Optuna searcher flattens the nested trial config: training/<field>.
        searched = ("batch_size", "learning_rate", "warmup_ratio", "weight_decay")
        assert set(trial.params) == {f"training/{k}" for k in searched}
        assert trial.params == {f"training/{k}": pytest.approx(params["training"][k]) for k in searched}
        # Every evaluation, the last one (where the trial ended) included.
        assert trial.intermediate_values == {r["training_iteration"]: r["pearson"] for r in rows}
        assert trial.value == rows[-1]["pearson"]  # a pruned trial's: its last intermediate value
    assert set(states) == {TrialState.COMPLETE, TrialState.PRUNED}
    # optuna-dashboard's "best trial" is a finished one: Optuna ranks complete trials only.
    assert study.best_trial.number == states[TrialState.COMPLETE].number


@pytest.mark.e2e
def test_tensorboard_has_one_run_per_trial_stepped_in_training_pairs(smoke):
    """Ours in ``<experiment>/tensorboard/`` and no second one of Ray's in the trial folders."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    exp, _ = smoke
    folders = sorted((exp / "optuna").glob("optuna_*"))
    assert len(folders) == 2
    assert [
        p.relative_to(exp) for p in exp.rglob("events.out.tfevents*") if TENSORBOARD_DIR not in p.parts
    ] == []
    assert sorted(p.name for p in (exp / TENSORBOARD_DIR).iterdir()) == [f.name for f in folders]
    for folder in folders:
        events = EventAccumulator(str(exp / TENSORBOARD_DIR / folder.name))
        events.Reload()
        pairs = [r["pairs"] for r in read_results(folder)]
        assert [e.step for e in events.Scalars("validation/pearson")] == pairs
        train = [e.step for e in events.Scalars("train/loss")]
        assert train and max(train) <= pairs[-1] and pairs[-1] in train  # one x axis: pairs seen


@pytest.mark.e2e
def test_ray_tune_analysis_reads_a_stage_folder(smoke):
    from ray import tune

    from tuning.trial import train_trial

    exp, _ = smoke
    stage = exp / "optuna"
    ids = sorted(d.name.removeprefix("optuna_") for d in stage.glob("optuna_*"))
    last = {i: read_results(stage / f"optuna_{i}")[-1]["pearson"] for i in ids}
    frame = tune.ExperimentAnalysis(str(stage)).dataframe()
    assert sorted(frame["trial_id"]) == ids
    assert dict(zip(frame["trial_id"], frame["pearson"], strict=True)) == pytest.approx(last)
    assert {"f1", "spearman", "epoch", "config/training/learning_rate"} <= set(frame.columns)
    results = tune.Tuner.restore(str(stage), train_trial).get_results()
    assert sorted(results.get_dataframe()["trial_id"]) == ids
    assert results.get_best_result("pearson", "max").metrics["pearson"] == max(last.values())


@pytest.mark.e2e
def test_terminal_shows_progress_and_not_rays_notices(smoke):
    exp, proc = smoke
    progress = [line for line in proc.stdout.splitlines() if line.startswith("[optuna] progress ")]
    assert progress, proc.stdout[-3000:]
    assert "elapsed" in progress[-1] and "; trials: " in progress[-1]
    terminal = proc.stdout + proc.stderr
    for notice in (SNAPSHOT_WARNING, "Configuration for experiment", "Checkpoint successfully created"):
        assert notice not in terminal
    log = (exp / RAY_LOG_FILE).read_text()
    assert SNAPSHOT_WARNING in log
    assert "INFO ray.tune.tune: Wrote the latest version of all result files" in log


@pytest.mark.e2e
def test_resumed_search_goes_on_in_the_same_study(killed_run: KilledRun):
    """The driver was SIGKILLed after a trial ended and while the next trained (tests/killed_run.py)."""
    exp, stage = killed_run.exp, killed_run.stage
    before, ended_first = killed_run.folders_before, killed_run.study_complete
    assert ended_first
    resumed = killed_run.resumed
    assert resumed is not None
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    storage = journal(exp / STUDY_FILE)
    assert optuna.get_all_study_names(storage) == ["optuna"]  # the same study, not a second one
    study = optuna.load_study(study_name="optuna", storage=storage)
    folders = {d.name.removeprefix("optuna_") for d in stage.glob("optuna_*")}
    assert len(folders) == 4 and folders - before  # a trial that only the resumed run started
    complete = {t.user_attrs[TUNE_TRIAL_ATTR]: t for t in study.trials if t.state == TrialState.COMPLETE}
    assert set(complete) == folders and ended_first <= set(complete)
    # Nothing is left running: a trial the killed driver had asked for but Tune never saved is failed.
    assert all(t.state.is_finished() for t in study.trials)
    for tune_id, trial in complete.items():
        rows = read_results(stage / f"optuna_{tune_id}")
        assert sorted(trial.intermediate_values) == sorted({r["training_iteration"] for r in rows})
