"""End to end through ``run_search.py``: a real Ray Tune search, the real report, real exits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reports import read_experiment
from reports.tables import fmt
from tests.conftest import REPO, run_cli, run_main
from tuning.model import STSModel, predict
from tuning.store import read_best

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def smoke_run(method_runs) -> Path:
    """The optuna smoke search of the profile ``cpu``, shared with test_methods_e2e."""
    return method_runs("optuna")


def test_optuna_smoke_search_writes_a_ranked_report(smoke_run):
    report = (smoke_run / "report.md").read_text(encoding="utf-8")
    assert "## Ranking by validation F1" in report
    assert "## Ranking by validation Pearson" in report
    assert "## Test scores of the best configurations" in report
    assert "    tensorboard --logdir tensorboard\n" in report  # run in the experiment folder
    record = read_experiment(smoke_run)
    assert len(record.trials) == 2
    # The CPU profile asks for no GPU: Ray hides any GPU from its trials.
    assert all(e["device"] == "cpu" for t in record.trials for e in t.reports)
    assert "- Trials trained on: `cpu` (2)" in report
    assert [s.stage for s in record.stages] == ["optuna"]
    assert record.stages[0].searched == ["batch_size", "learning_rate", "warmup_ratio", "weight_decay"]
    # The greedy soup was tried from the winner; best.json says what was exported.
    soup = record.meta.soup
    winner = next(s for s in record.test_scores if s.role == "top")
    assert soup is not None and soup.ingredients[0] == f"{winner.stage}/{winner.trial_id}"
    assert set(soup.tried) | set(soup.skipped) | {soup.ingredients[0]} >= set(soup.ingredients)
    assert "- Exported model: " in report
    best = read_best(smoke_run / "best_model")
    assert best is not None and (best.soup or [soup.ingredients[0]]) == soup.ingredients
    for trial in record.trials:
        assert trial.status in ("finished", "stopped")
        assert [e["epoch"] for e in trial.reports] == list(range(1, len(trial.reports) + 1))
        assert f"optuna/{trial.trial_id}" in report
    # The winners are scored on KorSTS test, all of KorSTS dev and KLUE-STS dev.
    assert set(record.test_scores[0].test) == {"test", "korsts_dev_heldout", "klue_dev"}


def test_smoke_search_saves_the_reproducibility_record(smoke_run):
    meta = json.loads((smoke_run / "experiment.json").read_text())
    assert meta["config"]["model"]["name_or_path"] == "builtin:tiny"
    assert meta["data_sizes"]["train"] == 64
    assert len(meta["data_fingerprint"]) == 16
    assert meta["versions"]["ray"] == "2.60.0"
    assert meta["finished"] is True
    # The untuned model is scored on the same splits as the winner, and the report compares them.
    untuned = meta["untuned"]
    assert set(untuned["test"]) == {"test", "korsts_dev_heldout", "klue_dev"}
    report = (smoke_run / "report.md").read_text(encoding="utf-8")
    winner = read_experiment(smoke_run).test_scores[0]
    for split in ("test", "korsts_dev_heldout", "klue_dev"):
        shown = f"{split} {fmt(winner.test[split]['pearson'])} vs {fmt(untuned['test'][split]['pearson'])}"
        assert shown in report


def test_the_recipe_trains_to_the_end_as_the_control_and_the_report_compares_with_it(smoke_run):
    record = read_experiment(smoke_run)
    control = record.meta.control
    assert control is not None and control.recipe is not None, control
    stage, trial_id = control.recipe.split("/")
    (recipe,) = [t for t in record.trials if t.trial_id == trial_id]
    assert recipe.status == "finished"  # never stopped early by ASHA
    assert recipe.params == {
        "batch_size": 16,
        "learning_rate": 5e-5,
        "warmup_ratio": 0.1,
        "weight_decay": 0.0,
    }
    assert control.winner == f"{record.test_scores[0].stage}/{record.test_scores[0].trial_id}"
    assert len(control.runners_up) == 1  # top_k 2 in a smoke test: the winner and one other
    report = (smoke_run / "report.md").read_text(encoding="utf-8")
    if control.recipe == control.winner:
        assert f"- Recipe control: the recipe's own trial `{control.recipe}`" in report
    else:
        assert set(control.held_out) == {"test", "korsts_dev_heldout", "klue_dev"}
        assert f"- Winner vs the recipe (`{control.recipe}`" in report and "95% CI" in report
    scored = {(s.stage, s.trial_id): s.role for s in record.test_scores}
    assert scored.get((stage, trial_id)) in ("top", "recipe")


def test_best_model_loads_and_scores_a_pair(smoke_run):
    model = STSModel.from_pretrained(smoke_run / "best_model")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smoke_run / "best_model")
    scores = predict(model, tokenizer, [("한 남자가 춤을 추고 있다.", "남자가 춤을 춘다.")], max_length=64)
    assert scores.shape == (1,)
    best = json.loads((smoke_run / "best_model" / "best.json").read_text())
    assert best["trial_id"] == read_experiment(smoke_run).test_scores[0].trial_id


def test_report_is_rebuilt_from_storage_alone(smoke_run):
    before = (smoke_run / "report.md").read_text(encoding="utf-8")
    (smoke_run / "report.md").unlink()
    proc = run_main("report", str(smoke_run))
    assert proc.returncode == 0, proc.stderr
    assert (smoke_run / "report.md").read_text(encoding="utf-8") == before


def _assert_user_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr


def test_unknown_method_is_one_clear_message(tmp_path):
    proc = run_main("--method", "bayes", "--storage", str(tmp_path))
    _assert_user_error(proc, "--method must be one of", "'optuna'", "'bayes'")


def test_bad_search_space_file_lists_every_problem(tmp_path):
    space = tmp_path / "bad.yaml"
    space.write_text(
        "training:\n  learning_rat: 1.0e-5\n  batch_size: lots\n"
        "space:\n  learning_rate: {type: loguniform, low: 1.0e-3, high: 1.0e-5}\n  dropout: 0.1\n"
    )
    proc = run_main("--space", str(space), "--storage", str(tmp_path))
    _assert_user_error(proc, "learning_rat", "batch_size must be a number", str(space))


def test_bad_search_space_range_is_refused(tmp_path):
    space = tmp_path / "range.yaml"
    space.write_text(
        "model: {name_or_path: 'builtin:tiny'}\nspace:\n  learning_rate: {type: loguniform, low: 1.0e-3, high: 1.0e-5}\n  dropout: 0.1\n"
    )
    proc = run_main("--space", str(space), "--storage", str(tmp_path), "--data", "korsts")
    _assert_user_error(proc, "`low <= high` must hold", "unknown hyperparameter 'dropout'")


def test_bad_data_file_names_file_and_line(tmp_path):
    data = tmp_path / "pairs.tsv"
    data.write_text(
        "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\n"
        "g\tf\t2020\t1\t4.0\t가\t나\n"
        "g\tf\t2020\t2\t7.5\t다\t라\n",
        encoding="utf-8",
    )
    proc = run_cli("--profile", "cpu", "--smoke-test", "--data", str(data), "--storage", str(tmp_path))
    _assert_user_error(proc, f"{data}:3")
    assert not (tmp_path / "runs").exists()


def test_losses_and_heads_are_searchable(tmp_path, shared):
    """The original team's ideas through a real search: stage 1 the loss, stage 2 the head."""
    space = REPO / "search_spaces" / "cpu" / "objectives.yaml"
    proc = run_cli(
        "--method",
        "ablation",
        "--space",
        str(space),
        "--smoke-test",
        "--storage",
        str(tmp_path),
        "--name",
        "obj",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = read_experiment(tmp_path / "obj")
    by_stage = {s.stage: s for s in record.stages}
    assert sorted(t.params["loss"] for t in record.trials if t.stage == "loss") == ["corr_mae", "mse"]
    assert sorted(t.params["head"] for t in record.trials if t.stage == "head") == ["multitask", "regression"]
    assert by_stage["head"].carried["loss"].from_stage == "loss"
    for trial in record.trials:
        assert trial.status == "finished" and all(e["loss"] == e["loss"] for e in trial.reports)  # no NaN


def test_a_moved_experiment_shows_no_machine_path(smoke_run, tmp_path, shared):
    """The report, best.json, the model card, the served page and /health name folders relative
    to the experiment (or ${SHARED}/...), never where a machine kept them, before or after a move."""
    import shutil

    import httpx

    from tuning.serving.launcher import ServerProcess

    moved = tmp_path / "elsewhere" / "smoke-moved"
    shutil.copytree(smoke_run, moved)
    proc = run_main("report", str(moved))
    assert proc.returncode == 0, proc.stderr[-2000:]
    machine_paths = [str(smoke_run.parent), str(tmp_path), str(REPO), str(shared), str(Path.home())]
    texts = {
        "report.md": (moved / "report.md").read_text(encoding="utf-8"),
        "best.json": (moved / "best_model" / "best.json").read_text(encoding="utf-8"),
        "model card": (moved / "best_model" / "README.md").read_text(encoding="utf-8"),
    }
    with ServerProcess(moved / "best_model", ()) as server:
        texts["page"] = httpx.get(server.url + "/", timeout=30).text
        texts["/health"] = httpx.get(server.url + "/health", timeout=30).text
    for name, text in texts.items():
        leaked = [p for p in machine_paths if p in text]
        assert not leaked, f"{name} shows {leaked}"
    assert "smoke-moved/best_model" in texts["/health"]
    assert (
        "${SHARED}/data/korsts/sts-dev.tsv" in texts["report.md"]
    )  # the offline data, as the files write it
