"""Trial records: what a finished (or interrupted) experiment left in storage, read back.

Reading is the only hand-off between a search and its report: nothing here depends on the
process that ran the search, so a report can be rebuilt later, on another machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.disk import DiskUsage

EXPERIMENT_FILE = "experiment.json"
STAGE_FILE = "stage.json"
TEST_SCORES_FILE = "test_scores.json"
TRIALS_FILE = "trials.json"
BUDGET_FILE = "time_budget.json"  # in a stage folder: the search's time budget ended this stage
COMPARE_FILE = "compare.json"


def epoch_number(value: Any) -> int | float:
    """An epoch as reported: whole epochs as ints, sub-epoch reports as fractions (``0.25``)."""
    number = float(value)
    return int(number) if number.is_integer() else round(number, 3)


@dataclass
class TrialRecord:
    """One trial as stored: its searched hyperparameters and its per-epoch validation metrics."""

    trial_id: str
    stage: str
    params: dict[str, Any]
    """The searched hyperparameters' values (fixed ones are in the experiment config)."""
    epochs: list[dict[str, Any]] = field(default_factory=list)
    """One dict of validation metrics per reported epoch, in order."""
    planned_epochs: int = 0
    status: str = "incomplete"
    """``finished``, ``stopped`` (early, by the scheduler), ``budget`` (stopped when the search's
    time budget ended), ``failed``, or ``incomplete``
    (running, or cut off by an interrupt)."""
    error: str | None = None
    retries: int = 0
    """Times the trial failed and was restarted from its last checkpoint."""
    path: str = ""
    """The trial's folder in storage."""

    def best(self, metric: str, mode: str) -> dict[str, Any] | None:
        """The epoch with the best ``metric`` (earliest on ties), or ``None`` without epochs."""
        scored = [e for e in self.epochs if e.get(metric) is not None]
        if not scored:
            return None
        sign = 1 if mode == "max" else -1
        return max(scored, key=lambda e: (sign * e[metric], -e["epoch"]))

    def checkpoint(self, metric: str, mode: str) -> str | None:
        """Folder of the best epoch's checkpoint, if storage still holds it."""
        best = self.best(metric, mode)
        name = best.get("checkpoint_dir_name") if best else None
        if not name or not Path(self.path, name).is_dir():
            return None
        return str(Path(self.path, name))


class StorageError(ValueError):
    """A file of an experiment folder is torn (a crash mid-write) or not one this tool wrote."""


# The top-level type (and a key) each stored file must have: a torn or foreign file is refused
# by name instead of failing later on a missing key.
SHAPES: dict[str, tuple[type, str | None]] = {
    EXPERIMENT_FILE: (dict, "config"),
    STAGE_FILE: (dict, "stage"),
    TRIALS_FILE: (dict, None),
    TEST_SCORES_FILE: (list, None),
    COMPARE_FILE: (dict, None),
    "params.json": (dict, None),
}


def _read_json(path: Path) -> Any:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        problem = f"is not valid JSON ({err})"
    else:
        kind, key = SHAPES.get(path.name, (object, None))
        if isinstance(data, kind) and (key is None or key in data):
            return data
        problem = f"is not a {path.name} written by run_search.py (expected a JSON {kind.__name__}" + (
            f" with {key!r})" if key else ")"
        )
    raise StorageError(
        f"{path} {problem}: restore it from a copy, or delete the experiment folder and start a new run."
    )


def read_results(trial_dir: str | Path) -> list[dict[str, Any]]:
    """A trial's ``result.json`` (Ray: one JSON object per report); a torn line (crash) is skipped."""
    path = Path(trial_dir) / "result.json"
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def read_trial(trial_dir: Path, stage: dict[str, Any], ended: dict[str, dict[str, Any]]) -> TrialRecord:
    """One trial folder of a Ray Tune experiment -> TrialRecord.

    Args:
        trial_dir: the trial's folder (``params.json``, ``result.json``, checkpoints).
        stage: the stage's ``stage.json``.
        ended: the stage's ``trials.json``: how each ended trial ended, and its retries.
    """
    params_file = trial_dir / "params.json"
    params = _read_json(params_file) if params_file.is_file() else {}
    searched = {k: params.get(k) for k in stage.get("searched", [])}
    by_progress: dict[float, dict[str, Any]] = {}
    for row in read_results(trial_dir):
        if "epoch" in row:
            # A trial restored after a failure may report an evaluation twice: keep the latest.
            # Reports are keyed by training pairs seen (sub-epoch reports), else by epoch.
            by_progress[float(row.get("pairs", row["epoch"]))] = row
    epochs = [by_progress[k] for k in sorted(by_progress)]
    planned = int(params.get("num_epochs") or stage.get("num_epochs") or 0)
    trial_id = str(epochs[-1].get("trial_id")) if epochs else trial_dir.name.rsplit("_", 1)[-1]
    end = ended.get(trial_id, {})
    error_file = trial_dir / "error.txt"
    error = error_file.read_text(encoding="utf-8").strip() if error_file.is_file() else None
    if epochs and epochs[-1]["epoch"] >= planned:
        status = "finished"
    elif end.get("status") == "error":
        status = "failed"
    elif end.get("ended_by") == "time_budget":
        status = "budget"
    elif end.get("status") == "completed":
        status = "stopped"
    else:
        status = "incomplete"
    return TrialRecord(
        trial_id=trial_id,
        stage=stage.get("stage", trial_dir.parent.name),
        params=searched,
        epochs=epochs,
        planned_epochs=planned,
        status=status,
        error=error.splitlines()[-1] if error else None,
        retries=int(end.get("retries", 0)),
        path=str(trial_dir),
    )


@dataclass
class ExperimentRecord:
    """Everything stored for one experiment."""

    path: str
    meta: dict[str, Any]
    """``experiment.json``: resolved config, command line, versions, data fingerprint, machine."""
    stages: list[dict[str, Any]]
    """Each stage's ``stage.json``, in the order the stages ran."""
    trials: list[TrialRecord]
    test_scores: list[dict[str, Any]]
    """Test-split scores of the top configurations and of seed repeats (``test_scores.json``)."""
    compare: dict[str, Any] | None = None
    """``compare.json`` of a ``compare`` run: each method's stages, winner and seed stage."""
    disk: DiskUsage | None = None
    """Disk the folder uses, when measured (the report writer measures it)."""


def read_experiment(path: str | Path) -> ExperimentRecord:
    """Read an experiment folder (``<storage>/<name>``) written by ``run_search.py``.

    Raises:
        FileNotFoundError: the folder holds no experiment (message says what was expected).
    """
    root = Path(path)
    meta_file = root / EXPERIMENT_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(
            f"{root} is not an experiment folder: {EXPERIMENT_FILE} is missing "
            "(expected <storage>/<name> as written by run_search.py)."
        )
    meta = _read_json(meta_file)
    stages, trials = [], []
    for stage_file in sorted(root.glob(f"*/{STAGE_FILE}")):
        stage = _read_json(stage_file)
        stages.append(stage)
        trials_file = stage_file.parent / TRIALS_FILE
        ended = _read_json(trials_file) if trials_file.is_file() else {}
        trial_dirs = sorted(
            d for d in stage_file.parent.iterdir() if d.is_dir() and (d / "params.json").is_file()
        )
        trials.extend(read_trial(d, stage, ended) for d in trial_dirs)
    stages.sort(key=lambda s: (s.get("started", 0), s["stage"]))  # the order they ran in
    scores_file = root / TEST_SCORES_FILE
    test_scores = _read_json(scores_file) if scores_file.is_file() else []
    compare_file = root / COMPARE_FILE
    compare = _read_json(compare_file) if compare_file.is_file() else None
    return ExperimentRecord(str(root), meta, stages, trials, test_scores, compare)
