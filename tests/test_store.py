"""What a run stores (tuning/store.py): a folder in a released format loads as typed records; a
file of another version, with a wrong value, or torn by a crash is refused naming the file and
the field; writes are atomic; a trial read back knows its best report and checkpoint."""

from __future__ import annotations

import json
import resource
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tuning import store
from tuning.ranking import best_trials, ranked
from tuning.settings import TrainingConfig
from tuning.store import (
    BEST_FILE,
    AshaBudget,
    Best,
    Carried,
    CompareRecord,
    ExperimentMeta,
    StageRecord,
    StorageError,
    TestScore,
    TrialEnd,
    TrialRecord,
    Untuned,
    Winner,
    portable,
    read_best,
    read_experiment,
    read_record,
    read_stage,
    read_stage_trials,
    read_trial_ends,
    write_best,
    write_json,
    write_scores,
    write_stage,
)

FIXTURE = Path(__file__).parent / "fixtures" / "store-2026-11-30"
"""The JSON files of a real ``run_search.py --method compare --smoke-test`` run of 2026-11-30
(see its README.md): a grid stage, an ASHA grid stage carrying the first one's winner, and that
winner over two seeds. Frozen: files written by this version must keep loading."""
STAGE_DIR = "grid-batch_size"
RECORD_OF: dict[str, Callable[[Any], dict[str, Any]]] = {
    "experiment.json": lambda data: data,
    f"{STAGE_DIR}/stage.json": lambda data: data,
    f"{STAGE_DIR}/trials.json": lambda data: data["d44ae_00000"],
    "test_scores.json": lambda data: data[0],
    "compare.json": lambda data: data,
}
"""Each stored file -> its (first) record inside the file's JSON."""
FILES = list(RECORD_OF)


def epoch(n: int, pearson: float | None, f1: float | None, **more: Any) -> dict[str, Any]:
    return {"epoch": n, "pearson": pearson, "f1": f1, **more}


# --- a stored folder of 2026-11-30 loads ------------------------------------------------------


def test_the_stored_experiment_meta_loads_typed() -> None:
    meta = read_experiment(FIXTURE).meta
    assert isinstance(meta, ExperimentMeta)
    assert meta.config["method"] == "compare" and meta.config["methods"] == ["grid"]
    assert meta.metric == "pearson"
    assert meta.data_sizes == {
        "train": 64,
        "validation": 32,
        "test": 1379,
        "korsts_dev": 1500,
        "klue_dev": 519,
    }
    assert meta.finished is True
    assert isinstance(meta.untuned, Untuned)
    assert set(meta.untuned.test) == {"test", "korsts_dev", "klue_dev"}
    assert isinstance(meta.untuned.validation["pearson"], float)
    assert meta.best_model is not None and meta.best_model.endswith("/best_model")
    assert meta.ray_resources is not None and meta.ray_resources["CPU"] > 0


def test_the_stored_stages_load_typed_in_run_order() -> None:
    record = read_experiment(FIXTURE)
    assert [s.stage for s in record.stages] == ["grid-learning_rate", "grid-batch_size", "seeds-grid"]
    assert all(isinstance(s, StageRecord) and s.status == "done" for s in record.stages)
    lr, batch, seeds = record.stages
    assert lr.scheduler == "fifo" and lr.asha is None and lr.carried == {}
    assert batch.scheduler == "asha"
    # 64 training pairs, 2 epochs, grace period 1 epoch, reduction factor 2.
    assert batch.asha == AshaBudget(grace_period=64, max_t=128, rungs=[64])
    assert lr.winner is not None
    assert batch.carried == {
        "learning_rate": Carried(
            value=lr.winner.params["learning_rate"],
            from_stage="grid-learning_rate",
            trial_id=lr.winner.trial_id,
        )
    }
    assert isinstance(batch.winner, Winner)
    assert batch.winner.params == {"batch_size": 16} and batch.winner.metric == "pearson"
    assert batch.winner.config_file.endswith(f"grid-batch_size_{batch.winner.trial_id}/params.json")
    assert (seeds.role, seeds.repeats, seeds.method) == ("seeds", "grid winner", "grid")
    assert seeds.searched == ["seed"]


def test_the_stored_trials_load_with_how_each_ended() -> None:
    record = read_experiment(FIXTURE)
    ends = read_trial_ends(FIXTURE / STAGE_DIR)
    assert all(isinstance(e, TrialEnd) for e in ends.values())
    assert {k: (e.status, e.epochs) for k, e in ends.items()} == {
        "d44ae_00000": ("completed", 2.0),
        "d44ae_00001": ("completed", 1.0),
    }
    got = {(t.stage, t.trial_id): (t.status, len(t.reports), t.planned_epochs) for t in record.trials}
    assert got == {
        ("grid-learning_rate", "c8318_00000"): ("finished", 2, 2),
        ("grid-learning_rate", "c8318_00001"): ("finished", 2, 2),
        ("grid-batch_size", "d44ae_00000"): ("finished", 2, 2),
        ("grid-batch_size", "d44ae_00001"): ("stopped", 1, 2),  # ASHA at its 64-pair rung
        ("seeds-grid", "e704a_00000"): ("finished", 2, 2),
        ("seeds-grid", "e704a_00001"): ("finished", 2, 2),
    }
    assert [t.params for t in record.stage_trials("grid-batch_size")] == [
        {"batch_size": 16},
        {"batch_size": 32},
    ]


def test_the_stored_test_scores_and_comparison_load_typed() -> None:
    record = read_experiment(FIXTURE)
    assert all(isinstance(s, TestScore) for s in record.test_scores)
    assert [s.role for s in record.test_scores].count("seeds") == 2
    assert {s.stage for s in record.test_scores if s.role == "seeds"} == {"seeds-grid"}
    for score in record.test_scores:
        assert set(score.test) == {"test", "korsts_dev", "klue_dev"}
        assert isinstance(score.test["klue_dev"]["pearson"], float)
    assert isinstance(record.compare, CompareRecord)
    (entry,) = record.compare.methods
    assert entry.method == "grid" and entry.seeds_stage == "seeds-grid"
    assert entry.stages == ["grid-learning_rate", "grid-batch_size"]
    # The method's winner is the best of its stages' winners.
    winners = [s.winner for s in record.stages if s.stage in entry.stages]
    assert isinstance(entry.winner, Winner) and entry.winner in winners
    assert entry.winner.value == max(w.value for w in winners if w)


def test_each_stored_winner_is_its_stages_best_trial() -> None:
    """The ranking that picked the winners during the run picks them again from storage."""
    record = read_experiment(FIXTURE)
    for stage in record.stages:
        best = ranked(record.stage_trials(stage.stage), stage.metric)[0]
        assert stage.winner is not None
        assert (best.trial_id, best.metrics["pearson"], best.best_epoch) == (
            stage.winner.trial_id,
            stage.winner.value,
            stage.winner.best_epoch,
        )
    top = [s for s in record.test_scores if s.role == "top"]
    assert [(t.stage, t.trial_id) for t in best_trials(record, "pearson", len(top))] == [
        (s.stage, s.trial_id) for s in top
    ]


# --- files of another version, wrong values, torn files ----------------------------------------


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A writable copy of the stored folder."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "exp"))


@pytest.mark.parametrize("name", FILES)
def test_an_unknown_key_is_refused_naming_the_file_and_the_field(copy: Path, name: str) -> None:
    path = copy / name
    data = json.loads(path.read_text(encoding="utf-8"))
    RECORD_OF[name](data)["new_field"] = 1
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(StorageError) as err:
        read_experiment(copy)
    message = str(err.value)
    assert str(path) in message and "'new_field'" in message, message


def test_an_unknown_key_inside_a_record_is_named_with_its_place(copy: Path) -> None:
    path = copy / STAGE_DIR / "stage.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["winner"]["new_field"] = 1
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(StorageError) as err:
        read_stage(path.parent)
    assert str(path) in str(err.value) and "'winner.new_field'" in str(err.value)


def test_a_value_of_the_wrong_kind_is_refused_naming_the_field(copy: Path) -> None:
    path = copy / STAGE_DIR / "stage.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["status"] = "finished"  # stage.json says done, running or interrupted
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(StorageError) as err:
        read_experiment(copy)
    assert str(path) in str(err.value) and "'status'" in str(err.value)


@pytest.mark.parametrize("name", FILES)
def test_a_torn_file_is_refused_naming_it(copy: Path, name: str) -> None:
    path = copy / name
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")  # a crash mid-write of a plain write
    with pytest.raises(StorageError) as err:
        read_experiment(copy)
    assert f"{path} is not valid JSON" in str(err.value)


def test_a_torn_trial_file_marks_that_trial_unreadable_naming_it(copy: Path) -> None:
    """A trial's own file (Ray's params.json) is not the experiment's: the rest still reads, and
    the trial says it could not be read rather than taking a false status (issue 29)."""
    path = copy / STAGE_DIR / f"{STAGE_DIR}_d44ae_00000" / "params.json"
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    record = read_experiment(copy)
    (trial,) = [t for t in record.trials if t.trial_id == "d44ae_00000"]
    assert trial.status == "unreadable" and trial.unreadable and str(path) in trial.unreadable
    assert "is not valid JSON" in trial.unreadable
    assert record.unreadable == [trial.unreadable]


# --- write_json --------------------------------------------------------------------------------


def test_records_written_read_back_equal_and_leave_no_tmp(tmp_path: Path) -> None:
    stage = read_record(FIXTURE / STAGE_DIR / "stage.json", StageRecord)
    write_stage(tmp_path, stage)
    assert read_stage(tmp_path) == stage
    scores = read_experiment(FIXTURE).test_scores
    write_scores(tmp_path, scores)
    assert json.loads((tmp_path / "test_scores.json").read_text()) == [
        s.model_dump(mode="json") for s in scores
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage.json", "test_scores.json"]


def test_a_payload_that_cannot_be_written_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "trials.json"
    write_json(target, {"a": {"retries": 0}})
    with pytest.raises(TypeError):
        write_json(target, {("a", "b"): 1})  # JSON keys are strings: json.dumps refuses
    assert json.loads(target.read_text()) == {"a": {"retries": 0}}
    assert [p.name for p in tmp_path.iterdir()] == ["trials.json"]


def test_a_write_cut_off_midway_keeps_the_old_file_and_leaves_no_tmp(tmp_path: Path) -> None:
    """A real failed write: the file-size limit (RLIMIT_FSIZE) stops it after 4 KiB with EFBIG,
    as a full disk stops it with ENOSPC (test_storage_faults.py does that on a tmpfs, as root)."""
    target = tmp_path / "stage.json"
    write_json(target, {"stage": "old"})
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))
    try:
        with pytest.raises(OSError):
            write_json(target, {"stage": "new", "blob": "x" * 100_000})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert json.loads(target.read_text()) == {"stage": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["stage.json"]


# --- TrialRecord.best and .checkpoint ----------------------------------------------------------


def test_best_is_the_report_with_the_highest_metric() -> None:
    t = TrialRecord("a", "s", {}, reports=[epoch(1, 0.5, 0.9), epoch(2, 0.7, 0.6), epoch(3, 0.6, 0.7)])
    assert t.best("pearson")["epoch"] == 2
    assert t.best("f1")["epoch"] == 1


def test_best_by_mse_is_the_lowest() -> None:
    t = TrialRecord(
        "a", "s", {}, reports=[{"epoch": 1, "mse": 2.0}, {"epoch": 2, "mse": 1.5}, {"epoch": 3, "mse": 1.8}]
    )
    assert t.best("mse")["epoch"] == 2


@pytest.mark.parametrize(("metric", "earliest_best"), [("pearson", 2), ("mse", 1)])
def test_best_takes_the_earliest_report_on_ties(metric: str, earliest_best: int) -> None:
    # pearson (higher is better) ties at 0.8 in epochs 2 and 3; mse (lower) at 0.5 in 1 and 4.
    values = [0.5, 0.8, 0.8, 0.5]
    t = TrialRecord("a", "s", {}, reports=[{"epoch": i, metric: v} for i, v in enumerate(values, start=1)])
    assert t.best(metric)["epoch"] == earliest_best


def test_best_skips_reports_without_the_metric() -> None:
    t = TrialRecord("a", "s", {}, reports=[epoch(1, None, 0.9), epoch(2, 0.1, 0.2)])
    assert t.best("pearson")["epoch"] == 2


@pytest.mark.parametrize("epochs", [[], [epoch(1, None, 0.5)]], ids=["no-epochs", "metric-never-reported"])
def test_best_is_none_without_a_scored_report(epochs: list[dict[str, Any]]) -> None:
    assert TrialRecord("a", "s", {}, reports=epochs).best("pearson") is None


def test_checkpoint_is_the_best_reports_folder_if_storage_holds_it(tmp_path: Path) -> None:
    (tmp_path / "checkpoint_000001").mkdir()
    epochs = [
        epoch(1, 0.5, 0.5, checkpoint_dir_name="checkpoint_000000"),
        epoch(2, 0.7, 0.4, checkpoint_dir_name="checkpoint_000001"),
    ]
    t = TrialRecord("a", "s", {}, reports=epochs, path=str(tmp_path))
    assert t.checkpoint("pearson") == str(tmp_path / "checkpoint_000001")
    # Ray kept only the best checkpoint by pearson; the best by f1 is gone.
    assert t.checkpoint("f1") is None


def test_a_trial_without_reports_keeps_its_whole_id(tmp_path: Path) -> None:
    """Ray's ids of grid and fixed-variant trials hold a '_' (``d44ae_00000``): a trial that
    failed before its first report is still matched with its entry in trials.json."""
    stage_dir = tmp_path / "grid"
    (stage_dir / "grid_d44ae_00000").mkdir(parents=True)
    write_json(stage_dir / "grid_d44ae_00000" / "params.json", {"training": {"num_epochs": 2}})
    write_json(stage_dir / "stage.json", {"stage": "grid", "status": "done"})
    write_json(stage_dir / "trials.json", {"d44ae_00000": {"retries": 2, "status": "error", "epochs": 0}})
    (trial,) = read_stage_trials(stage_dir)
    assert (trial.trial_id, trial.status, trial.retries) == ("d44ae_00000", "failed", 2)


def test_a_searched_eval_every_pairs_of_an_older_stage_json_loads_as_not_fixed() -> None:
    """Before 2026-11-30 a searched eval_every_pairs was stored as its Tune domain."""
    for stored in ({"grid_search": [360, 720]}, "<ray.tune.search.sample.Categorical object>"):
        record = StageRecord.model_validate({"stage": "s", "status": "done", "eval_every_pairs": stored})
        assert record.eval_every_pairs is None
    assert StageRecord(stage="s", status="done", eval_every_pairs=720).eval_every_pairs == 720


# --- the resolved config, typed ------------------------------------------------------------------


def test_the_stored_config_reads_typed() -> None:
    settings = read_experiment(FIXTURE).meta.settings
    assert (settings.name, settings.method, settings.methods) == ("fx", "compare", ["grid"])
    assert (settings.model.architecture, settings.training.batch_size, settings.search.top_k) == ("bi", 16, 2)
    assert settings.smoke_test is True and settings.search.start_from_recipe is True


def test_a_config_this_version_does_not_wholly_read_gives_what_it_can() -> None:
    """A key of another version or a mistyped value is left out (its default is read), so a
    report of the folder can still be rebuilt; the rest reads as stored."""
    meta = ExperimentMeta(
        config={
            "name": "old",
            "retired": 1,
            "model": "bi",
            "training": {"batch_size": 8, "learning_rate": "fast", "old_field": 2},
            "search": {"metric": "f1"},
        }
    )
    settings = meta.settings
    assert (settings.name, settings.training.batch_size, settings.search.metric) == ("old", 8, "f1")
    assert settings.training.learning_rate == TrainingConfig().learning_rate
    assert settings.model.architecture == "cross"  # the section could not be read: its defaults
    assert meta.metric == "f1"


def test_a_config_from_before_start_from_recipe_started_from_no_recipe() -> None:
    assert ExperimentMeta(config={"search": {"metric": "pearson"}}).settings.search.start_from_recipe is False
    assert ExperimentMeta(config={"search": {"start_from_recipe": True}}).settings.search.start_from_recipe


# --- best.json --------------------------------------------------------------------------------


def test_best_json_is_written_as_export_best_always_wrote_it(tmp_path: Path) -> None:
    winner = read_experiment(FIXTURE).test_scores[0]
    config = {"model": {"max_length": 64}, "training": {"num_epochs": 2}}
    best = Best.of(winner, config, FIXTURE)
    write_best(tmp_path, best)
    stored = json.loads((tmp_path / BEST_FILE).read_text(encoding="utf-8"))
    before = portable({**winner.model_dump(mode="json"), "config": config}, FIXTURE)  # before 2026-12-04
    assert stored == before and list(stored) == list(before)
    assert read_best(tmp_path) == best and best.trial_id == winner.trial_id
    assert read_best(tmp_path / "elsewhere") is None  # a folder without one


def test_best_json_of_an_untrained_export_holds_only_what_it_was_given(tmp_path: Path) -> None:
    write_best(tmp_path, Best(trial_id="untrained", validation={}, config={"model": {"max_length": 32}}))
    stored = json.loads((tmp_path / BEST_FILE).read_text(encoding="utf-8"))
    assert stored == {"trial_id": "untrained", "validation": {}, "config": {"model": {"max_length": 32}}}
    best = read_best(tmp_path)
    assert best is not None and best.test is None and best.stage is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"trial_id": "a", "new_field": 1}', "'new_field': a key this version does not know"),
        ('{"validation": {"pearson": "high"}}', "'validation.pearson'"),
    ],
)
def test_a_damaged_best_json_is_refused_naming_it_and_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / BEST_FILE).write_text(text, encoding="utf-8")
    with pytest.raises(StorageError) as err:
        read_best(tmp_path)
    assert str(tmp_path / BEST_FILE) in str(err.value) and message in str(err.value), str(err.value)


# --- names Ray Tune chooses, and the modules the store needs -----------------------------------


def test_the_names_of_rays_files_and_report_keys_are_rays() -> None:
    from ray.air.constants import EXPR_ERROR_FILE, EXPR_PARAM_FILE, EXPR_RESULT_FILE, TIMESTAMP
    from ray.train.constants import CHECKPOINT_DIR_NAME
    from ray.tune.result import TIME_TOTAL_S, TRIAL_ID

    assert (store.PARAMS_FILE, store.RESULT_FILE, store.ERROR_FILE) == (
        EXPR_PARAM_FILE,
        EXPR_RESULT_FILE,
        EXPR_ERROR_FILE,
    )
    assert (store.TRIAL_ID, store.CHECKPOINT_DIR_NAME, store.TIME_TOTAL_S, store.TIMESTAMP) == (
        TRIAL_ID,
        CHECKPOINT_DIR_NAME,
        TIME_TOTAL_S,
        TIMESTAMP,
    )


def test_the_store_imports_none_of_the_modules_that_import_it() -> None:
    """The store is the bottom layer: the trial config's reader lives in it (no import cycle)."""
    import subprocess
    import sys

    code = "import sys, tuning.store; print(sorted(m for m in sys.modules if m.startswith('tuning.')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['tuning.metrics', 'tuning.store']"
