"""What a run stores, and the only code that reads or writes it.

Storage is the one hand-off between a search, its stages, ``--resume``, the winners and the
report: nothing is handed on in memory, so a report can be rebuilt later, on another machine.
This module names every file of an experiment folder, writes them atomically and reads them
back as typed records. A file written by another version of this tool either loads or is
refused with a message that names the file and the field.

Layout of ``<storage>/<name>/``::

    experiment.json          ExperimentMeta: resolved config (``.settings``: typed), command,
                             versions, data, outcome
    optuna.journal           Optuna's study of every Optuna stage (optuna-dashboard reads it)
    ray.log                  Ray's own log lines
    ray_processes.json       RayProcesses: the Ray processes this driver started (stopped after a kill)
    driver.json              ProcessEntry: the driver process (PID, start time) that runs the experiment now
    test_scores.json         list[TestScore]: the winners scored on the test split(s)
    compare.json             CompareRecord (method ``compare`` only)
    report.md, *.png         the report (reports/), rebuilt from the files above
    best_model/              the exported winner: model, tokenizer, model card (README.md) and
    best_model/best.json     Best: the winner's TestScore and its trial config
    tensorboard/             one run per trial
    <stage>/stage.json       StageRecord: what the stage searched, its status and winner
    <stage>/trials.json      {trial id: TrialEnd}: how each ended trial ended
    <stage>/time_budget.json the search's time budget ended this stage
    <stage>/<stage>_<id>/    one trial, in Ray Tune's files: params.json (its trial config: read
                             with trial_value), result.json (one report row per evaluation:
                             keys EPOCH, PAIRS, ...), error.txt (Ray's, one entry per failure),
                             checkpoint_*/
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from tuning.metrics import MODES

if TYPE_CHECKING:
    from tuning.settings import ExperimentConfig

# 1. File names: each is named here and nowhere else.
EXPERIMENT_FILE = "experiment.json"
STAGE_FILE = "stage.json"
TRIALS_FILE = "trials.json"
BUDGET_FILE = "time_budget.json"
TEST_SCORES_FILE = "test_scores.json"
COMPARE_FILE = "compare.json"
STUDY_FILE = "optuna.journal"
RAY_LOG_FILE = "ray.log"
RAY_PROCESSES_FILE = "ray_processes.json"
DRIVER_FILE = "driver.json"
REPORT_FILE = "report.md"
BEST_MODEL_DIR = "best_model"
BEST_FILE = "best.json"
MODEL_CARD_FILE = "README.md"
"""The exported model's card (Hugging Face's name for it), in ``best_model/``."""
TENSORBOARD_DIR = "tensorboard"
# Ray Tune's names inside a trial folder.
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
CHECKPOINT_PREFIX = "checkpoint_"


class StorageError(ValueError):
    """A file of an experiment folder is torn (a crash mid-write) or not one this tool wrote."""


def portable(value: Any, root: str | Path) -> Any:
    """``value`` (a string, or lists and mappings of them) with machine paths made portable, for
    what people read and what travels with a folder (the report, ``best.json``, the served page):
    a path inside ``root`` (the experiment folder) becomes relative to it (``best_model``, or
    ``.``; the storage folder above it ``..``), one inside the offline folder ``${SHARED}/...`` (as
    the search-space files write it), one of this tool's files relative to its checkout
    (``search_spaces/...``), one in the home folder ``~/...``. Other text is kept as it is."""
    from tuning.settings import REPO_ROOT, shared_dir

    if isinstance(value, dict):
        return {k: portable(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, root) for v in value]
    if not isinstance(value, str) or "/" not in value:
        return value
    folder = Path(root).resolve()
    bases = [
        (str(folder), ""),
        (str(folder.parent), ".."),  # the storage root
        (str(shared_dir()), "${SHARED}"),
        (str(REPO_ROOT), ""),  # this tool's own files (search_spaces/...)
        (str(Path.home()), "~"),
    ]

    def one(word: str) -> str:
        for base, name in bases:
            if word == base:
                return name or "."
            if base and word.startswith(base + "/"):
                rest = word[len(base) + 1 :]
                return f"{name}/{rest}" if name else rest
        return word

    # Paths inside a longer text (a command line, a message): replace each word that starts with one.
    return " ".join(one(word) for word in value.split(" "))


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically: a crash or a full disk mid-write leaves the old file whole.

    Args:
        path: the file.
        payload: plain data, or a record (a pydantic model, written without unset defaults' noise).

    Raises:
        OSError: the write failed (no space, read-only storage); no ``.tmp`` file is left behind.
    """
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json")
    elif isinstance(payload, list):
        payload = [p.model_dump(mode="json") if isinstance(p, BaseModel) else p for p in payload]
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:  # also KeyboardInterrupt: a second Ctrl-C mid-write
        tmp.unlink(missing_ok=True)
        raise


# 2. Records: the files' shapes. `extra="forbid"`: a key this version does not know is refused
# by name (a record of a newer version, or of another tool), never dropped silently.


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


TrialStatus = Literal["finished", "stopped", "budget", "failed", "incomplete", "unreadable"]
"""How a trial ended: trained every planned epoch; stopped early by the scheduler; stopped when
the search's time budget ended; failed (retries used up); incomplete (running, or cut off
by an interrupt); or unreadable (a file of its folder is torn or foreign: how it ended is not
known, and its metrics are only those that could be read)."""
StageStatus = Literal["running", "interrupted", "done"]


class Winner(Record):
    """A stage's best trial by its metric (what a staged method carries forward)."""

    trial_id: str
    params: dict[str, Any]
    metric: str
    value: float
    best_epoch: int | float | None = None
    config_file: str
    """The winner's ``params.json``: its full trial config."""


class Carried(Record):
    """A value fixed in a stage because an earlier stage's winner chose it."""

    value: Any
    from_stage: str
    trial_id: str


class AshaBudget(Record):
    """ASHA's budget, in training pairs seen."""

    unit: str = "training pairs"
    grace_period: int
    max_t: int
    rungs: list[int]
    min_trials: int = 1
    """Results a rung holds before it stops a trial (``search.rung_min_trials``; 1 before 2026-12-04)."""


class WarmStart(Record):
    """What a stage took from an earlier experiment's study (``--warm-start``)."""

    source: str
    """The earlier experiment folder, as given."""
    same_problem: bool
    """Whether it solved the same problem: its trials were given to the searcher as evaluated."""
    evaluated: int = 0
    """Its finished trials told to the searcher with their values (no retraining)."""
    enqueued: int = 0
    """Its top configurations tried first (another problem)."""
    differences: list[str] = []
    """What makes it another problem (``model.num_hidden_layers: 6 -> 12``)."""


class StageRecord(Record):
    """``<stage>/stage.json``: one Ray Tune experiment of a method, written while it runs."""

    stage: str
    status: StageStatus
    searched: list[str] = []
    space: dict[str, Any] = {}
    metric: str = "pearson"
    mode: Literal["max", "min"] = "max"
    num_epochs: int = 0
    planned_trials: int = 0
    searcher: str = ""
    scheduler: str = ""
    train_pairs: int | None = None
    eval_every_pairs: int | None = None
    """Training pairs between two reports, when fixed (``None``: once an epoch, or searched)."""
    time_budget_s: float | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    started: float = 0.0
    ended: float | None = None
    ended_by: Literal["time_budget"] | None = None
    resumed: int = 0
    asha: AshaBudget | None = None
    cost: str | None = None
    """The second objective (``search.cost``: ``latency_ms`` or ``pairs_per_s``), measured per
    cost level in ``serving_cost.json``; ``None``: the metric alone."""
    warm_start: WarmStart | None = None
    """What an earlier experiment's study gave this stage (``search.warm_start``)."""
    winner: Winner | None = None
    # What a method adds.
    carried: dict[str, Carried] = {}
    """Staged methods: values earlier stages' winners fixed here."""
    role: Literal["seeds"] | None = None
    """``seeds``: the stage repeats one configuration over seeds."""
    repeats: str | None = None
    """Seed-repeat stages: which configuration they repeat."""
    method: str | None = None
    """``compare``: the method whose winner a seed stage repeats."""

    @field_validator("eval_every_pairs", mode="before")
    @classmethod
    def _fixed_pairs_only(cls, value: Any) -> Any:
        # Before 2026-11-30 a searched value was stored as its domain (a dict or its text).
        return value if isinstance(value, int) or value is None else None


class TrialEnd(Record):
    """One entry of ``<stage>/trials.json``: how an ended trial ended (Tune's callbacks)."""

    retries: int = 0
    status: Literal["completed", "error"] | None = None
    epochs: float = 0
    ended_by: Literal["time_budget"] | None = None


class Untuned(Record):
    """The pretrained model's scores before any fine-tuning, on the splits the winners get."""

    what: str
    validation: dict[str, float]
    test: dict[str, dict[str, float]] = {}


Verdict = Literal["better", "tied", "worse"]


class Gap(Record):
    """One model's Pearson minus another's on the same pairs, with a paired bootstrap 95%
    interval: the pairs are resampled together for both, so what they share cancels."""

    model: float
    """Pearson of the model compared (the winner)."""
    other: float
    """Pearson of the one it is compared with (the recipe, a runner-up)."""
    gap: float
    low: float
    high: float
    pairs: int
    """Pairs scored (and resampled)."""

    @property
    def verdict(self) -> Verdict:
        """``better`` or ``worse`` when the interval excludes 0, else ``tied`` (within noise)."""
        return "better" if self.low > 0 else "worse" if self.high < 0 else "tied"


class Control(Record):
    """The winner against the profile's recipe, trained to the same budget inside the search (its
    trial is never stopped early: ``tuning.methods._stage.ControlASHA``), on every held-out
    split; and against the runners-up on validation. Written by ``tuning.control``."""

    winner: str
    """``stage/trial_id`` of the exported winner."""
    winner_pairs: int | None = None
    """Training pairs the winner's scored checkpoint had seen."""
    recipe: str | None = None
    """``stage/trial_id`` of the recipe's trial; ``None``: this search ran no recipe (see ``note``)."""
    recipe_params: dict[str, Any] = {}
    recipe_pairs: int | None = None
    resamples: int = 0
    held_out: dict[str, Gap] = {}
    """Held-out split -> the winner minus the recipe."""
    runners_up: dict[str, Gap] = {}
    """``stage/trial_id`` of each other scored top trial -> validation: the winner minus it."""
    note: str = ""
    """Why there is no recipe comparison, when there is none."""
    exported: str | None = None
    """What ``held_out`` compares with the recipe when it is not the winner's checkpoint: the
    exported soup (``"greedy soup of a, b"``)."""


class Soup(Record):
    """The exported model as a greedy soup of the scored checkpoints (``tuning.soup``): which
    were averaged, what each candidate scored on validation when tried, and the soup's gain over
    the best single trial on each held-out split."""

    metric: str
    """The validation metric the ingredients were chosen by."""
    ingredients: list[str]
    """``stage/trial_id`` of each averaged checkpoint, best first; one: the winner alone."""
    tried: dict[str, float] = {}
    """Each candidate tried -> validation ``metric`` of the soup with it (kept if better)."""
    skipped: dict[str, str] = {}
    """Candidates that could not be averaged with the soup -> why."""
    validation: dict[str, float] = {}
    test: dict[str, dict[str, float]] = {}
    """Held-out split -> the soup's metrics (a soup of more than one only)."""
    versus_best: dict[str, Gap] = {}
    """Held-out split -> the soup's Pearson minus the best single trial's (paired bootstrap)."""


class MachinePlan(Record):
    """What the driver resolved from this machine before the search (``tuning.hardware``)."""

    precision: str
    """The precision trials train in."""
    precision_requested: str = "auto"
    precision_reason: str = ""
    precision_warning: str | None = None
    resources: str = ""
    """How the per-trial resources were chosen."""
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    train_pairs_s: float | None = None
    """Measured training pairs/s of one trial (the probe)."""
    eval_pairs_s: float | None = None
    """Measured validation pairs/s of one trial."""
    concurrent: int | None = None
    first_rung_pairs: int | None = None
    first_rung_s: float | None = None
    trial_s: float | None = None
    scoring_s: float | None = None
    fidelity: str | None = None
    """The budget check's summary, and what it changed to fit the budget."""


class ExperimentMeta(Record):
    """``experiment.json``: written at the start, updated when the search and scoring end."""

    config: dict[str, Any]
    """The resolved ``ExperimentConfig`` as stored (``ExperimentConfig.to_dict``), shown as it is in
    the report; read it typed as :attr:`settings`, never as a dict."""
    command: str = ""
    git_commit: str | None = None
    versions: dict[str, str] = {}
    data_fingerprint: str = ""
    data_sizes: dict[str, int] = {}
    machine: str = ""
    hardware: MachinePlan | None = None
    """Precision, resources and fidelity resolved from the machine, with the reasons."""
    started: str = ""
    tensorboard_dir: str | None = None
    resumed: list[str] = []
    ray_resources: dict[str, float] | None = None
    search_wall_time_s: float | None = None
    untuned: Untuned | None = None
    control: Control | None = None
    soup: Soup | None = None
    """The greedy soup tried at the end (``search.soup``); its ingredients are what was exported."""
    """The winner against the recipe and the runners-up (paired bootstrap intervals)."""
    selection: Selection | None = None
    """With ``search.select`` other than ``best``: which scored model it exported and why."""
    best_model: str | None = None
    wall_time_s: float | None = None
    finished: bool = False

    @property
    def settings(self) -> ExperimentConfig:
        """The resolved config, typed: what is read of ``config`` (never dug into as a dict).

        Rebuilt by ``tuning.settings.experiment_from_dict``. A config this version does not wholly
        read (a key of another version, a value of another type) gives what it can read, the
        defaults for the rest, so that a report can still be rebuilt (``--resume`` refuses it).
        A setting an older version did not have takes the value that version behaved as:
        ``search.start_from_recipe`` (since 2026-11-30) is off in a folder without it.
        """
        return _settings(self.config)

    @property
    def metric(self) -> str:
        """The search metric trials were ranked by."""
        return self.settings.search.metric


class Selection(Record):
    """How ``search.select`` chose the exported model among the scored ones."""

    rule: str
    """``search.select`` as given (``fastest within 0.005``)."""
    chosen: str
    """``stage/trial`` exported."""
    best: str
    """``stage/trial`` best by the validation metric."""
    cost: str
    """The cost figure compared (``latency_ms`` or ``pairs_per_s``)."""


class TestScore(Record):
    """One entry of ``test_scores.json``: a winner's best checkpoint scored on the test splits."""

    __test__ = False  # not a pytest class

    trial_id: str
    stage: str
    params: dict[str, Any]
    best_epoch: int | float | None = None
    validation: dict[str, float]
    checkpoint: str = ""
    test: dict[str, dict[str, float]]
    role: Literal["top", "seeds", "recipe", "front"] = "top"
    """``top``: one of the best ``top_k``; ``seeds``: a trial of a seed-repeat stage; ``recipe``:
    the recipe's trial, scored as the search's control (when not among the top); ``front``: on
    the validation front of accuracy against serving cost (``search.cost``)."""
    cost: dict[str, float] = {}
    """Its cost level's measured serving cost (``latency_ms``, ``pairs_per_s``), when searched."""


class Best(Record):
    """``best_model/best.json``: which winner was exported, its scores and how it trained: its
    entry of ``test_scores.json`` (a :class:`TestScore`'s fields) and its trial's ``config``
    (``params.json``, read with :func:`trial_value`), machine paths made portable. The model card
    and the server read it. Every field may be absent: a folder that
    ``tuning.serving.export_untrained`` writes (tests, benchmarks) holds only ``trial_id``,
    ``validation`` and ``config``; :func:`write_best` writes only the fields given."""

    trial_id: str | None = None
    stage: str | None = None
    params: dict[str, Any] | None = None
    best_epoch: int | float | None = None
    validation: dict[str, float] | None = None
    checkpoint: str | None = None
    test: dict[str, dict[str, float]] | None = None
    role: Literal["top", "seeds", "recipe", "front"] | None = None
    cost: dict[str, float] | None = None
    """Its measured serving cost (``latency_ms``, ``pairs_per_s``), when the search had one."""
    soup: list[str] | None = None
    """When the exported model is a greedy soup: ``stage/trial_id`` of each averaged checkpoint
    (the first is the winner, whose config this is); ``validation`` and ``test`` are the soup's."""
    config: dict[str, Any] = {}
    """The winner's trial config, as Ray Tune handed it to the trial (``params.json``)."""

    @classmethod
    def of(cls, winner: TestScore, config: dict[str, Any], root: str | Path) -> Best:
        """The record of ``winner`` exported with its trial ``config``, paths made portable
        against the experiment folder ``root`` (:func:`portable`): the folder can move."""
        return cls.model_validate(portable({**winner.model_dump(mode="json"), "config": config}, root))


class CompareEntry(Record):
    method: str
    stages: list[str]
    winner: Winner | None = None
    seeds_stage: str | None = None


class CompareRecord(Record):
    """``compare.json``: which stages belong to which compared method, and its winner."""

    methods: list[CompareEntry] = []


class ProcessEntry(Record):
    """A process as recorded (``driver.json``, and in :class:`RayProcesses`): its PID, and its
    start time to tell it from a later process given the same PID."""

    pid: int
    name: str | None = None
    started: float | None = None
    """Its start time (seconds since the epoch); ``None``: unknown (any start time matches)."""


class RayProcesses(Record):
    """``ray_processes.json``, in the experiment folder and in Ray's session folder: the Ray
    session a driver started and its processes, for a later run to stop what a killed driver
    left (``tuning.ray_session``)."""

    session_dir: str
    driver: ProcessEntry
    processes: list[ProcessEntry]


# 3. Trials: derived from Ray Tune's files in a trial folder, not stored by us.

# A report row: what a trial reports to Ray Tune after each evaluation (``tuning.trial.EvalReporter``
# writes it), one JSON object per line of the trial's ``result.json``. Its keys, named here and
# nowhere else (the validation metrics are keyed by their names, ``tuning.metrics.MODES``):
EPOCH = "epoch"
"""Epochs trained: ``PAIRS`` / train size, fractional between epoch ends (sub-epoch reports)."""
PAIRS = "pairs"
"""Training pairs seen: the budget a report was reached with, the unit ASHA's rungs count in."""
STEP = "step"
"""Optimizer steps taken."""
TRAIN_LOSS = "train_loss"
"""Mean training loss since the previous report."""
LEARNING_RATE = "learning_rate"
"""The learning rate at the last logged step."""
ELAPSED_S = "elapsed_s"
"""Seconds since the trial (this run of it) started."""
STARTED_AT = "started_at"
"""When the trial (this run of it) started, seconds since the epoch: with ``ELAPSED_S`` a
report's exact wall-clock span (Ray's ``timestamp`` is whole seconds)."""
DEVICE = "device"
"""Where the trial trained: ``cpu``, ``cuda:0``, ..."""
# Ray Tune adds its own keys to each row; those read here:
TRIAL_ID = "trial_id"
CHECKPOINT_DIR_NAME = "checkpoint_dir_name"
"""The report's checkpoint folder inside the trial folder (``checkpoint_000002``)."""
TIME_TOTAL_S = "time_total_s"
"""Seconds the trial ran, all its runs together (a restored trial continues the count)."""
TIMESTAMP = "timestamp"

# A trial's config (Ray Tune's ``params.json``; ``tuning.trial_config`` builds it) as stored: the
# store reads a trial's planned epochs and searched values from it; these are its one reader.
TRIAL_SECTIONS = ("data", "model", "training")
"""The sections of a trial config that hold settings (the search section stays with the driver)."""


def section_of(name: str) -> str:
    """The section a setting belongs to (``learning_rate`` -> ``training``); YAML aliases too.

    Raises:
        KeyError: ``name`` is no field of any section.
    """
    from tuning.settings import ALIASES, SECTIONS, field_names

    name = ALIASES.get(name, name)
    for section in TRIAL_SECTIONS:
        if name in field_names(SECTIONS[section]):
            return section
    raise KeyError(f"{name!r} is not a setting of {list(TRIAL_SECTIONS)}")


def trial_value(config: dict[str, Any], name: str, default: Any = None) -> Any:
    """One setting's value in a trial config (also in a flat one of an older version)."""
    from tuning.settings import ALIASES

    name = ALIASES.get(name, name)
    return normalize(config).get(section_of(name), {}).get(name, default)


def normalize(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` in today's nested shape; a flat config (before 2026-11-30) is converted."""
    from tuning.settings import ModelConfig, TrainingConfig, field_names

    if isinstance(config.get("training"), dict):
        return config
    model = dict(config.get("model") or {})
    model.update({k: config[k] for k in field_names(ModelConfig) if k in config})
    return {
        "data": dict(config.get("data") or {}),
        "model": model,
        "training": {k: config[k] for k in field_names(TrainingConfig) if k in config},
        "resources": {"cpus": config.get("cpus_per_trial", 1.0), "gpus": config.get("gpus_per_trial", 0.0)},
        "tensorboard_dir": config.get("tensorboard_dir"),
    }


def epoch_number(value: Any) -> int | float:
    """An epoch as reported: whole epochs as ints, sub-epoch reports as fractions (``0.25``)."""
    number = float(value)
    return int(number) if number.is_integer() else round(number, 3)


@dataclass
class TrialRecord:
    """One trial as stored: its searched hyperparameters and its validation metrics per report."""

    trial_id: str
    stage: str
    params: dict[str, Any]
    """The searched hyperparameters' values (fixed ones are in the experiment config)."""
    reports: list[dict[str, Any]] = field(default_factory=list)
    """Its report rows (keys ``EPOCH``, ``PAIRS``, ..., the validation metrics), one per
    evaluation (each epoch, or every ``eval_every_pairs``), in order."""
    planned_epochs: int = 0
    status: TrialStatus = "incomplete"
    error: str | None = None
    retries: int = 0
    """Times the trial failed and was restarted from its last checkpoint."""
    path: str = ""
    """The trial's folder in storage."""
    unreadable: str | None = None
    """A file of the trial's folder that could not be read, with the cause (status ``unreadable``)."""

    def best(self, metric: str) -> dict[str, Any] | None:
        """The report with the best ``metric`` (earliest on ties), or ``None`` without reports."""
        scored = [e for e in self.reports if e.get(metric) is not None]
        if not scored:
            return None
        sign = -1 if MODES.get(metric) == "min" else 1
        return max(scored, key=lambda e: (sign * e[metric], -e[EPOCH]))

    def checkpoint(self, metric: str) -> str | None:
        """Folder of the best report's checkpoint, if storage still holds it."""
        best = self.best(metric)
        name = best.get(CHECKPOINT_DIR_NAME) if best else None
        if not name or not Path(self.path, name).is_dir():
            return None
        return str(Path(self.path, name))

    def config(self) -> dict[str, Any]:
        """The trial's full config as Ray Tune handed it to the trial (``params.json``)."""
        return read_params(Path(self.path))


@dataclass
class DiskUsage:
    """Bytes (file sizes, as ``du --apparent-size`` counts them) under an experiment folder."""

    total: int
    checkpoints: int
    """In the trials' kept checkpoints."""
    best_model: int
    """In the exported ``best_model/``."""
    tensorboard: int
    """In ``tensorboard/``."""
    files: int
    """Number of files counted."""


@dataclass
class ExperimentRecord:
    """Everything stored for one experiment."""

    path: str
    meta: ExperimentMeta
    stages: list[StageRecord]
    """In the order the stages ran."""
    trials: list[TrialRecord]
    test_scores: list[TestScore]
    compare: CompareRecord | None = None
    disk: DiskUsage | None = None
    """Disk the folder uses, when measured (the report writer measures it)."""
    unreadable: list[str] = field(default_factory=list)
    """Files that could not be read, each with the cause: the trials' (see
    ``TrialRecord.unreadable``) and any the report writer found (a damaged ``best_model``)."""

    @property
    def metric(self) -> str:
        return self.meta.metric

    def stage(self, name: str) -> StageRecord:
        """The stage called ``name``; KeyError naming the stages there are otherwise."""
        for stage in self.stages:
            if stage.stage == name:
                return stage
        raise KeyError(f"no stage {name!r} in {self.path}; stages: {[s.stage for s in self.stages]}")

    def stage_trials(self, name: str) -> list[TrialRecord]:
        return [t for t in self.trials if t.stage == name]


# 4. Reading.

R = TypeVar("R", bound=BaseModel)


RESTORE = "restore it from a copy, or delete the experiment folder and start a new run"
"""What to do about a torn file of an experiment folder."""


def _load_object(path: Path, what: str, fix: str = RESTORE) -> dict[str, Any]:
    """A stored JSON object; ``what`` names the file in the message when it is not one."""
    data = _load_json(path, fix)
    if not isinstance(data, dict):
        raise StorageError(f"{path} is not {what} (expected a JSON object).")
    return data


def _load_json(path: Path, fix: str = RESTORE) -> Any:
    """A stored JSON file; ``fix`` says in the message what to do when it is torn."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StorageError(f"{path} is not valid JSON ({err}): {fix}.") from None


def _refuse(path: Path, err: ValidationError) -> StorageError:
    """The first few problems of a stored file, each with its field, and what to do."""
    problems = []
    for e in err.errors()[:3]:
        where = ".".join(str(p) for p in e["loc"]) or "the top level"
        what = (
            "a key this version does not know"
            if e["type"] == "extra_forbidden"
            else e["msg"][:1].lower() + e["msg"][1:]
        )
        problems.append(f"{where!r}: {what}" if e["loc"] else f"{where}: {what}")
    more = f" (and {len(err.errors()) - 3} more)" if len(err.errors()) > 3 else ""
    return StorageError(
        f"{path} was not written by this version of run_search.py: "
        f"{'; '.join(problems)}{more}. Read it with the version that wrote it, or start a new run."
    )


def read_record(path: Path, kind: type[R]) -> R:
    """One stored file as its record type.

    Raises:
        StorageError: the file is torn or has a field this version does not read (names both).
    """
    try:
        return kind.model_validate(_load_json(path))
    except ValidationError as err:
        raise _refuse(path, err) from None


def read_records(path: Path, kind: type[R]) -> list[R]:
    """A stored JSON list of records (``test_scores.json``)."""
    data = _load_json(path)
    if not isinstance(data, list):
        raise StorageError(f"{path} is not a {path.name} written by run_search.py (expected a JSON list).")
    try:
        return [kind.model_validate(item) for item in data]
    except ValidationError as err:
        raise _refuse(path, err) from None


def read_params(trial_dir: Path) -> dict[str, Any]:
    """A trial's config (Ray Tune's ``params.json``); ``{}`` when there is none."""
    path = trial_dir / PARAMS_FILE
    return _load_object(path, "a trial's params.json") if path.is_file() else {}


def read_results(trial_dir: str | Path) -> list[dict[str, Any]]:
    """A trial's ``result.json`` (Ray: one JSON object per report); a torn line (crash) is skipped."""
    return checked_results(trial_dir)[0]


def checked_results(trial_dir: str | Path) -> tuple[list[dict[str, Any]], str | None]:
    """A trial's ``result.json`` rows that could be read, and what could not (``None``: all).

    A line that is not a JSON object (cut off by a crash or a full disk, or another tool's) is
    left out and named: which lines of how many, so a report can say the trial's record is not
    whole rather than give it a status from what is left.
    """
    path = Path(trial_dir) / RESULT_FILE
    rows: list[dict[str, Any]] = []
    if not path.is_file():
        return rows, None
    try:
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError as err:
        return rows, f"{path}: cannot be read ({err.strerror or err})"
    bad = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif line.strip():
            bad.append(number)
    if not bad:
        return rows, None
    shown = ", ".join(map(str, bad[:5])) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return rows, (
        f"{path}: line{'s' if len(bad) > 1 else ''} {shown} of {len(lines)} "
        "cut off or not a JSON object (a crash or a full disk mid-write, or another tool's file); "
        f"{len(rows)} reports read"
    )


def trial_dirs(stage_dir: Path) -> list[Path]:
    """The trial folders of a stage (those with a ``params.json``), sorted."""
    return sorted(d for d in stage_dir.iterdir() if d.is_dir() and (d / PARAMS_FILE).is_file())


def read_trial(trial_dir: Path, stage: StageRecord, ended: dict[str, TrialEnd]) -> TrialRecord:
    """One trial folder of a Ray Tune experiment -> TrialRecord.

    Args:
        trial_dir: the trial's folder (``params.json``, ``result.json``, checkpoints).
        stage: the stage's record.
        ended: the stage's ``trials.json``: how each ended trial ended, and its retries.
    """
    try:
        params = read_params(trial_dir)
        unreadable = None
    except StorageError as err:  # a torn or foreign params.json: the trial is named, not the report refused
        params, unreadable = {}, str(err).split(": restore it")[0].split(". Read it")[0]
    results, problem = checked_results(trial_dir)
    unreadable = unreadable or problem
    by_progress: dict[float, dict[str, Any]] = {}
    for row in results:
        if EPOCH in row:
            # A trial restored after a failure may report an evaluation twice: keep the latest.
            # Reports are keyed by training pairs seen (sub-epoch reports), else by epoch.
            by_progress[float(row.get(PAIRS, row[EPOCH]))] = row
    reports = [by_progress[k] for k in sorted(by_progress)]
    planned = int(trial_value(params, "num_epochs") or stage.num_epochs or 0)
    # Ray names a trial's folder <stage>_<trial id>; ids of grids and fixed variants hold a "_".
    trial_id = (
        str(reports[-1].get(TRIAL_ID))
        if reports
        else trial_dir.name.removeprefix(f"{trial_dir.parent.name}_")
    )
    end = ended.get(trial_id, TrialEnd())
    error_file = trial_dir / ERROR_FILE
    error = (
        error_file.read_bytes().decode("utf-8", errors="replace").strip() if error_file.is_file() else None
    )
    status: TrialStatus
    if unreadable:  # what is left of its record cannot tell how it ended
        status = "unreadable"
    elif reports and reports[-1][EPOCH] >= planned:
        status = "finished"
    elif end.status == "error":
        status = "failed"
    elif end.ended_by == "time_budget":
        status = "budget"
    elif end.status == "completed":
        status = "stopped"
    else:
        status = "incomplete"
    return TrialRecord(
        trial_id=trial_id,
        stage=stage.stage,
        params={k: trial_value(params, k) for k in stage.searched},
        reports=reports,
        planned_epochs=planned,
        status=status,
        error=error.splitlines()[-1] if error else None,
        retries=end.retries,
        path=str(trial_dir),
        unreadable=unreadable,
    )


def read_stage(stage_dir: Path) -> StageRecord | None:
    """A stage's record, or ``None`` when the stage has not started."""
    path = stage_dir / STAGE_FILE
    return read_record(path, StageRecord) if path.is_file() else None


def read_trial_ends(stage_dir: Path) -> dict[str, TrialEnd]:
    """A stage's ``trials.json`` (empty before a trial ended)."""
    path = stage_dir / TRIALS_FILE
    if not path.is_file():
        return {}
    data = _load_object(path, f"a {TRIALS_FILE} written by run_search.py")
    try:
        return {k: TrialEnd.model_validate(v) for k, v in data.items()}
    except ValidationError as err:
        raise _refuse(path, err) from None


def read_stage_trials(stage_dir: Path, stage: StageRecord | None = None) -> list[TrialRecord]:
    """Every trial of a stage, as stored now."""
    stage = stage or read_stage(stage_dir)
    if stage is None:
        return []
    ended = read_trial_ends(stage_dir)
    return [read_trial(d, stage, ended) for d in trial_dirs(stage_dir)]


def read_meta(root: Path) -> ExperimentMeta:
    """``experiment.json`` of the experiment folder ``root``.

    Raises:
        FileNotFoundError: the folder holds no experiment (message says what was expected).
    """
    path = root / EXPERIMENT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{root} is not an experiment folder: {EXPERIMENT_FILE} is missing "
            "(expected <storage>/<name> as written by run_search.py)."
        )
    return read_record(path, ExperimentMeta)


def read_best(folder: Path) -> Best | None:
    """``best.json`` of an exported model folder (``best_model``); ``None`` when it has none.

    Raises:
        StorageError: the file is torn, not a JSON object, or has a field this version does not
            read (names the file and the field).
    """
    path = folder / BEST_FILE
    if not path.is_file():
        return None
    fix = "restore the model folder from a copy"
    data = _load_object(path, f"a {BEST_FILE} written by run_search.py", fix)
    try:
        return Best.model_validate(data)
    except ValidationError as err:
        raise _refuse(path, err) from None


def read_ray_processes(path: Path) -> RayProcesses:
    """A ``ray_processes.json`` (of an experiment folder or of a Ray session folder).

    Raises:
        OSError: it cannot be read (missing).
        StorageError: it is torn or not one this tool wrote.
    """
    return read_record(path, RayProcesses)


def read_driver(root: Path) -> ProcessEntry:
    """``driver.json`` of the experiment folder ``root``: the last driver that claimed it.

    Raises:
        OSError: it cannot be read (missing: no driver claimed the folder).
        StorageError: it is torn or not one this tool wrote.
    """
    return read_record(root / DRIVER_FILE, ProcessEntry)


def _settings(raw: dict[str, Any]) -> ExperimentConfig:
    """:attr:`ExperimentMeta.settings` of the stored ``config`` ``raw``."""
    from tuning.settings import ConfigError, experiment_from_dict

    try:
        exp = experiment_from_dict(raw, EXPERIMENT_FILE)
    except ConfigError:
        exp = experiment_from_dict(_readable(raw), EXPERIMENT_FILE)
    search = raw.get("search")
    if not (isinstance(search, dict) and "start_from_recipe" in search):
        exp.search.start_from_recipe = False  # no search enqueued the recipe before the setting
    return exp


def _readable(raw: dict[str, Any]) -> dict[str, Any]:
    """What of a stored config this version reads: its known keys, and each field of a
    section that reads on its own (a key of another version or a mistyped value is left out)."""
    from tuning.settings import SECTIONS, ConfigError, ExperimentConfig, experiment_from_dict, field_names

    def reads(section: str, name: str, value: Any) -> bool:
        try:
            experiment_from_dict({section: {name: value}})
        except ConfigError:
            return False
        return True

    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECTIONS:
            if isinstance(value, dict):
                out[key] = {k: v for k, v in value.items() if reads(key, k, v)}
        elif key in field_names(ExperimentConfig):
            out[key] = value
    return out


def read_experiment(path: str | Path) -> ExperimentRecord:
    """Read an experiment folder (``<storage>/<name>``) written by ``run_search.py``.

    Raises:
        FileNotFoundError: the folder holds no experiment.
        StorageError: a file is torn or of another version (named, with the field).
    """
    root = Path(path)
    meta = read_meta(root)
    stages, trials = [], []
    for stage_file in sorted(root.glob(f"*/{STAGE_FILE}")):
        stage = read_record(stage_file, StageRecord)
        stages.append(stage)
        trials.extend(read_stage_trials(stage_file.parent, stage))
    stages.sort(key=lambda s: (s.started, s.stage))  # the order they ran in
    scores_file = root / TEST_SCORES_FILE
    test_scores = read_records(scores_file, TestScore) if scores_file.is_file() else []
    compare_file = root / COMPARE_FILE
    compare = read_record(compare_file, CompareRecord) if compare_file.is_file() else None
    unreadable = [t.unreadable for t in trials if t.unreadable]
    return ExperimentRecord(str(root), meta, stages, trials, test_scores, compare, unreadable=unreadable)


# 5. Writing: each record to its one place.


def write_meta(root: Path, meta: ExperimentMeta) -> None:
    write_json(root / EXPERIMENT_FILE, meta)


def write_stage(stage_dir: Path, record: StageRecord) -> None:
    write_json(stage_dir / STAGE_FILE, record)


def write_trial_ends(stage_dir: Path, ended: dict[str, TrialEnd]) -> None:
    write_json(stage_dir / TRIALS_FILE, {k: v.model_dump(mode="json") for k, v in ended.items()})


def write_scores(root: Path, scores: list[TestScore]) -> None:
    write_json(root / TEST_SCORES_FILE, scores)


def write_compare(root: Path, record: CompareRecord) -> None:
    write_json(root / COMPARE_FILE, record)


def write_best(folder: Path, best: Best) -> None:
    """``best.json`` of an exported model folder, with the fields ``best`` was given (all of a
    real export's: :meth:`Best.of`)."""
    write_json(folder / BEST_FILE, best.model_dump(mode="json", exclude_unset=True))


def write_ray_processes(path: Path, record: RayProcesses) -> None:
    write_json(path, record)


def write_driver(root: Path, driver: ProcessEntry) -> None:
    write_json(root / DRIVER_FILE, driver)


def mark_budget_ended(stage_dir: Path, seconds: float, ended: float) -> None:
    """Record that the search's time budget ended this stage."""
    write_json(stage_dir / BUDGET_FILE, {"time_budget_s": seconds, "ended": ended})


def budget_ended(stage_dir: Path) -> bool:
    return (stage_dir / BUDGET_FILE).is_file()


def measure(root: str | Path, skip: tuple[str, ...] = ()) -> DiskUsage:
    """Disk used under an experiment folder, walked without following links.

    Args:
        root: the experiment folder.
        skip: file names directly in ``root`` not to count (the report and its figures, so that
            rebuilding the report does not change the figure it states).
    """
    root = Path(root)
    total = checkpoints = best = tensorboard = files = 0
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        rel = Path(folder).relative_to(root).parts
        for name in names:
            if not rel and name in skip:
                continue
            path = Path(folder, name)
            if path.is_symlink():
                continue
            size = path.stat().st_size
            total += size
            files += 1
            if any(p.startswith(CHECKPOINT_PREFIX) for p in rel):
                checkpoints += size
            elif rel and rel[0] == BEST_MODEL_DIR:
                best += size
            elif rel and rel[0] == TENSORBOARD_DIR:
                tensorboard += size
    return DiskUsage(total, checkpoints, best, tensorboard, files)
