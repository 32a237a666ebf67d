"""Typed configuration: one dataclass per concern, loaded from YAML and validated once.

Precedence: dataclass defaults < search-space YAML file < command-line flags.

A setting is declared once, as a field with a docstring: every field of a section is also the
command-line flag ``--<section>.<field>`` with that docstring as its help (:func:`config_flags`),
and ``field(metadata={"flag": "--num-samples"})`` gives it a short spelling too.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import itertools
import os
import re
import textwrap
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_ENV = "KLUE_TUNE_SHARED"


def gpu_names() -> list[str]:
    """The CUDA GPUs this process sees (empty without any): what a trial here would train on."""
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def shared_dir() -> Path:
    """The folder with offline data and models: ``$KLUE_TUNE_SHARED`` or ``<repo>/../shared``."""
    return Path(os.environ.get(SHARED_ENV) or REPO_ROOT.parent / "shared").resolve()


@dataclass
class DataConfig:
    """Where the sentence pairs come from."""

    source: str = "korsts"
    """A preset (``korsts``: local KorSTS TSVs + KLUE-STS dev as extra test; ``klue-sts``: the Hub's
    ``klue/klue`` ``sts``) or ``files`` (the paths below)."""
    train: str | None = None
    """Training file (KLUE JSON, KorSTS TSV or CSV); required when ``source`` is ``files``."""
    validation: str | None = None
    """Validation file; when absent, ``validation_fraction`` of train is held out."""
    test: str | None = None
    """Test file, scored only for the winners."""
    extra_test: dict[str, str] = field(default_factory=dict)
    """More test sets, name -> file (e.g. ``klue_dev`` as an out-of-domain test)."""
    format: str | None = None
    """File format (``klue_json``, ``korsts_tsv``, ``csv``); ``None`` infers it from the extension."""
    columns: dict[str, str] = field(default_factory=dict)
    """CSV column names, canonical -> file (keys ``sentence1``, ``sentence2``, ``label``, ``binary_label``)."""
    train_size: int | None = None
    """Use this many training pairs (a seeded random subset); ``None`` uses all."""
    validation_size: int | None = None
    """Use this many validation pairs (a seeded random subset); ``None`` uses all."""
    validation_fraction: float = 0.1
    """Fraction of train held out as validation when there is no validation file (0-1)."""
    split_seed: int = 42
    """Seed of the train/validation split and of the subsets."""


@dataclass
class ModelConfig:
    """Which pretrained encoder, and how a sentence pair becomes a score."""

    name_or_path: str = field(default="klue/roberta-base", metadata={"flag": "--model"})
    """A Hub id, a local folder in Hugging Face format, or ``builtin:tiny`` (a 2-layer, 32-hidden
    BERT and a character tokenizer built in code from the training text, for tests)."""
    architecture: str = "cross"
    """``cross``: the pair in one sequence, a regression head on [CLS] (the original project);
    ``bi``: each sentence embedded alone, mean pooling, score = 5 x cosine (with ``cosent``,
    ``angle`` or ``corr_mae``, a line fitted to training labels before each evaluation)."""
    num_hidden_layers: int | None = None
    """Keep only the first N encoder layers (truncation for speed); ``None`` keeps all."""
    max_length: int = 128
    """Tokens per encoded input (the pair for ``cross``, each sentence for ``bi``); longer is truncated."""


@dataclass
class TrainingConfig:
    """How one trial fine-tunes. Every field may be fixed in a search-space file or searched."""

    learning_rate: float = 5e-5
    """Peak learning rate of AdamW."""
    batch_size: int = 32
    """Training pairs per optimizer step."""
    num_epochs: int = 4
    """Passes over the training split; validation runs after each one."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    warmup_ratio: float = 0.1
    """Fraction of all training steps spent warming the learning rate up from 0 (0-1)."""
    lr_schedule: str = "linear"
    """Learning-rate schedule after warm-up: ``linear``, ``cosine``, ``constant_with_warmup``, ``step``."""
    step_epochs: int = 1
    """``step`` schedule: epochs between decays."""
    step_gamma: float = 0.5
    """``step`` schedule: factor applied at each decay (0-1]."""
    seed: int = field(default=42, metadata={"flag": "--seed"})
    """Seed of model initialisation, dropout and data order."""
    loss: str = "mse"
    """Regression loss: ``mse``, ``l1``, ``smooth_l1``, ``corr_mae``; for ``bi`` models also the
    ranking losses ``cosent`` and ``angle`` (sentence-transformers' CoSENT and AnglE)."""
    alpha: float = 0.1
    """``corr_mae``: weight of the MAE term, (1 - alpha) goes to 1 - Pearson (0-1)."""
    head: str = "regression"
    """``regression`` (one score) or ``multitask`` (a second output on the binary label, BCE)."""
    mtl_lambda: float = 0.5
    """``multitask``: weight of the binary cross-entropy term (YAML key ``lambda``)."""
    standardize_targets: bool = True
    """Train a ``cross`` regression head on (label - mean) / std of the training labels and map
    predictions back to 0-5 (a fresh head otherwise spends its first epoch learning the mean)."""
    group_by_length: bool = True
    """Batch pairs of similar length together, so per-batch padding wastes less."""
    eval_batch_size: int = 64
    """Pairs per batch at validation and test time."""
    precision: str = "auto"
    """``auto`` (from the hardware: bf16 where the device computes it natively, fp16 on a CUDA GPU
    without bf16, fp32 otherwise; see ``tuning.hardware``), ``fp32``, or mixed precision ``bf16`` /
    ``fp16`` (GPU); an explicit ``bf16`` without native support is honoured with a warning."""
    logging_steps: int = 10
    """Optimizer steps between training-loss points in TensorBoard."""
    eval_every_pairs: int | None = None
    """Evaluate, checkpoint and report every this many training pairs (sub-epoch fidelity):
    ``round(train size / eval_every_pairs)`` evaluations per epoch, evenly spread over whole
    optimizer steps, the last at the epoch's end. ``None``: once per epoch."""
    freeze_embeddings: bool = False
    """Keep the token embeddings fixed: they barely move in fine-tuning (a batch touches a few
    hundred rows), and with a large multilingual vocabulary they are most of the model
    (multilingual-e5-small's 250k tokens: 96M of its 118M parameters; the shared e5-small-ko keeps
    9,290 Korean tokens, so there it saves less: 1.03x measured)."""
    freeze_layers: int = 0
    """Also keep the first N encoder layers fixed (0: none); frozen layers need no gradients."""


@dataclass
class SearchConfig:
    """How the search runs on Ray Tune."""

    metric: str = "pearson"
    """Validation metric trials are ranked and stopped on: ``pearson``, ``f1``, ``spearman``, ``mse``."""
    num_samples: int = field(default=8, metadata={"flag": "--num-samples"})
    """Trials to sample (for grids: repeats of the whole grid)."""
    searcher: str = "tpe"
    """``tpe`` (Optuna's TPE) or ``random`` (Optuna's random sampler)."""
    scheduler: str = "asha"
    """``asha`` (stop weak trials early) or ``fifo`` (run every trial to the end)."""
    grace_period: float = 1.0
    """ASHA: epochs every trial trains before it can be stopped; fractions (``0.25``) make
    sub-epoch rungs when ``training.eval_every_pairs`` reports more often. ASHA counts training
    pairs seen, so this is ``grace_period x train size`` pairs and rungs follow at
    ``reduction_factor`` times that."""
    reduction_factor: int = 2
    """ASHA: keep the top 1/reduction_factor of trials at each rung."""
    max_concurrent_trials: int | None = field(default=None, metadata={"flag": "--max-concurrent-trials"})
    """Trials running at once; ``None``: as many as the cluster's resources fit."""
    cpus_per_trial: float | str = field(default="auto", metadata={"flag": "--cpus-per-trial"})
    """CPU cores reserved per trial (also the trial's torch threads); ``auto``: the cores shared
    among the trials that fit on the GPUs (at most 8), or on a CPU-only machine half the cores
    (1-4), so two or more trials run side by side."""
    gpus_per_trial: float | str = field(default="auto", metadata={"flag": "--gpus-per-trial"})
    """GPUs per trial; fractions such as 0.5 pack two trials on one GPU; ``auto``: 1 where GPUs
    exist, 0 (train on the CPU) otherwise."""
    max_failures: int = 2
    """Retries of a failed trial from its last checkpoint."""
    top_k: int = field(default=3, metadata={"flag": "--top-k"})
    """Best configurations scored on the test split(s) after the search."""
    seed: int = field(default=42, metadata={"flag": "--seed"})
    """Seed of the searcher."""
    startup_trials: int | None = None
    """TPE: random trials before TPE models the results; ``None``: a third of ``num_samples``,
    between 2 and 10 (Optuna's default of 10 would leave a 12-trial search almost random)."""
    seeds: int = field(default=3, metadata={"flag": "--seeds"})
    """``seeds`` and ``compare``: training seeds each repeated configuration runs with."""
    full_grid: bool = field(default=False, metadata={"flag": "--full-grid"})
    """``grid``: one stage over the Cartesian product of every stage's values, not stage by stage."""
    from_experiment: str | None = field(default=None, metadata={"flag": "--from"})
    """``seeds``: repeat the top ``top_k`` configurations of this finished experiment folder."""
    perturbation_interval: int = 1
    """``pbt``: epochs between exploit/explore steps."""
    start_from_recipe: bool = True
    """Optuna: the first trial takes the file's fixed values for every searched hyperparameter
    that lies in its range (the recipe, e.g. KLUE's), so the search starts from a known-good
    configuration (an enqueued trial, Ray's ``points_to_evaluate``); false: all are sampled."""
    time_budget: float | None = field(default=None, metadata={"flag": "--time-budget"})
    """Wall-clock seconds the search may run (Ray Tune's ``time_budget_s``); YAML and
    ``--time-budget`` also take ``90s``, ``20m``, ``1.5h``. When it ends, running trials stop,
    keep their best checkpoints, and the winners are scored as usual. ``None``: no budget."""


@dataclass
class ExperimentConfig:
    """Everything one ``run_search.py`` invocation needs, resolved from defaults, YAML and flags."""

    name: str = "experiment"
    """Folder under the storage root that holds this experiment's results."""
    method: str = "optuna"
    """Tuning method (see ``tuning.methods.METHODS``)."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    space: dict[str, Any] = field(default_factory=dict)
    """Searched hyperparameters (see ``tuning.spaces``): name -> domain spec or fixed value."""
    stages: list[dict[str, Any]] = field(default_factory=list)
    """Staged methods: one ``{name, space}`` per stage, run in order, each stage's winner fixed
    for the next; a stage may also set ``scheduler`` and ``num_samples``."""
    methods: list[str] = field(default_factory=list)
    """``compare``: the methods to compare, each read from ``<method>.yaml`` beside this file."""
    storage: str = "runs"
    """Root folder of all experiments' results; on a multi-node cluster a path every node mounts
    (NFS/EFS), since trials write checkpoints there and the driver reads them back."""
    source_file: str | None = None
    """The search-space file this config was read from."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Command-line values applied on top of the file (``section.field`` -> value)."""
    smoke_test: bool = False
    """A test-size run (see :func:`make_smoke`)."""

    @property
    def experiment_dir(self) -> str:
        """``<storage>/<name>``: where this experiment's results, report and best model go."""
        return f"{self.storage.rstrip('/')}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (logged at start and saved beside the results)."""
        return asdict(self)


class ConfigError(ValueError):
    """A configuration problem a user can fix; the message lists every problem found."""


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "search": SearchConfig,
}
TOP_LEVEL_KEYS = ("name", "method", "description", "base", "space", "stages", "methods", *SECTIONS)
STAGE_KEYS = ("name", "space", "scheduler", "num_samples")
# YAML spellings that are not valid Python identifiers.
ALIASES = {"lambda": "mtl_lambda"}
YAML_NAMES = {name: key for key, name in ALIASES.items()}


def field_names(cls: type) -> list[str]:
    """The names of a config dataclass's fields."""
    return [f.name for f in fields(cls)]


def _expand(value: Any) -> Any:
    """Replace ``${SHARED}`` in strings (recursively) with the offline data/model folder."""
    if isinstance(value, str):
        return value.replace("${SHARED}", str(shared_dir()))
    if isinstance(value, list):
        return [_expand(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value


def _build_section(cls: type, raw: Any, where: str, problems: list[str]) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping of {cls.__name__} fields, got {raw!r}.")
        return cls()
    known = field_names(cls)
    kwargs = {}
    for key, value in raw.items():
        name = ALIASES.get(key, key)
        if name not in known:
            problems.append(f"{where}: unknown key {key!r}; accepted keys: {', '.join(known)}.")
        else:
            kwargs[name], problem = coerce(cls, name, _expand(value))
            if problem:
                problems.append(f"{where}: {problem}")
    return cls(**kwargs)


DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
# Fields given as durations (seconds, or a number with a unit).
DURATIONS = ("time_budget",)
# Numeric fields that also take ``auto`` (resolved from the machine: tuning.hardware).
AUTO_FIELDS = ("cpus_per_trial", "gpus_per_trial")


def parse_duration(value: Any) -> float:
    """Seconds from ``1200``, ``"90s"``, ``"20m"`` or ``"1.5h"``.

    Raises:
        ValueError: naming the value and the accepted forms.
    """
    text = str(value).strip().lower()
    unit = DURATION_UNITS.get(text[-1:]) if text else None
    try:
        seconds = float(text[:-1] if unit else text) * (unit or 1.0)
    except ValueError:
        seconds = float("nan")
    if isinstance(value, bool) or not seconds > 0:
        raise ValueError(
            f"a duration must be a positive number of seconds or e.g. 90s, 20m, 1.5h; got {value!r}."
        )
    return seconds


@dataclass(frozen=True)
class FieldKind:
    """A config field's type, from its annotation."""

    base: type
    """The type of its values: ``int``, ``float``, ``str``, ``bool`` or ``dict``."""
    optional: bool
    """Whether ``None`` (YAML ``null``) is a value of it."""
    text: str
    """The annotation as messages show it: ``"int | None"``, ``"dict[str, str]"``."""


@cache
def field_kinds(cls: type) -> dict[str, FieldKind]:
    """Every field's :class:`FieldKind`, from the real annotations (``typing.get_type_hints``)."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        union = typing.get_origin(hint) in (types.UnionType, typing.Union)
        members = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
        base = typing.get_origin(members[0]) or members[0]  # dict[str, str] -> dict
        text = hint.__name__ if isinstance(hint, type) else str(hint)
        out[name] = FieldKind(base, union and len(members) < len(typing.get_args(hint)), text)
    return out


def read_number(value: Any) -> int | float | None:
    """``value`` as a number, or None when it is not one (booleans are not numbers).

    Strings that spell a number (``"3"``, ``"1e-5"``) are numbers: YAML 1.1 and so PyYAML's own
    loader leave ``1e-5`` a string (see :class:`YamlLoader`), and files written before the loader
    read it (a ``stage.json``) still hold such strings. Ints stay exact ints.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def coerce(cls: type, name: str, value: Any) -> tuple[Any, str | None]:
    """``value`` as the type of field ``name`` of ``cls``, and what is wrong with it (or None).

    Numbers written as strings (``"3"``, ``"1e-5"``) are read as numbers. The problem names the
    field: ``"batch_size must be a whole number, got 2.5."``; the value returned with a problem is
    the field's default.
    """
    kind = field_kinds(cls)[name]
    default = getattr(cls(), name)
    if value is None:
        return default, None if kind.optional else f"{name} must be set ({kind.text}), got null."
    if name in AUTO_FIELDS and value == "auto":
        return value, None
    if name in DURATIONS:
        try:
            return parse_duration(value), None
        except ValueError as err:
            return default, f"{name}: {err}"
    if kind.base is bool and not isinstance(value, bool):
        return default, f"{name} must be true or false, got {value!r}."
    if kind.base in (int, float):
        number = read_number(value)
        if number is None:
            return default, f"{name} must be a number ({kind.text}), got {value!r}."
        if kind.base is int and not float(number).is_integer():
            return default, f"{name} must be a whole number, got {value!r}."
        return kind.base(number), None
    if kind.base is str and not isinstance(value, str):
        return default, f"{name} must be a string, got {value!r}."
    if kind.base is dict and not isinstance(value, dict):
        return default, f"{name} must be a mapping, got {value!r}."
    return value, None


def parse_experiment(raw: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Build an ExperimentConfig from a parsed YAML mapping; unknown keys are errors.

    Raises:
        ConfigError: listing every unknown key or mis-shaped section at once.
    """
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a YAML mapping at the top level, got {type(raw).__name__}.")
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            problems.append(
                f"{source}: unknown top-level key {key!r}; accepted keys: {', '.join(TOP_LEVEL_KEYS)}."
            )
    sections = {
        name: _build_section(cls, raw.get(name), f"{source}: {name}", problems)
        for name, cls in SECTIONS.items()
    }
    space = raw.get("space") or {}
    stages = raw.get("stages") or []
    if not isinstance(space, dict):
        problems.append(f"{source}: space: expected a mapping of hyperparameter -> domain, got {space!r}.")
        space = {}
    if not isinstance(stages, list):
        problems.append(f"{source}: stages: expected a list of {{name, space}} mappings, got {stages!r}.")
        stages = []
    _check_stages(stages, source, problems)
    methods = raw.get("methods") or []
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        problems.append(f"{source}: methods: expected a list of method names, got {methods!r}.")
        methods = []
    if problems:
        raise ConfigError("\n".join(problems))
    return ExperimentConfig(
        name=str(raw.get("name") or Path(source).stem),
        method=str(raw.get("method") or "optuna"),
        space={ALIASES.get(k, k): _expand(v) for k, v in space.items()},
        stages=_expand(stages),
        methods=methods,
        source_file=source,
        **sections,
    )


def _check_stages(stages: list[Any], source: str, problems: list[str]) -> None:
    seen: set[str] = set()
    for i, stage in enumerate(stages):
        where = f"{source}: stages[{i}]"
        if not isinstance(stage, dict):
            problems.append(f"{where}: expected a mapping with `name` and `space`, got {stage!r}.")
            continue
        unknown = sorted(set(stage) - set(STAGE_KEYS))
        if unknown:
            problems.append(f"{where}: unknown key(s) {unknown}; accepted keys: {', '.join(STAGE_KEYS)}.")
        name = stage.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            problems.append(f"{where}: name {NAME_RULE}, got {name!r}.")
        elif name in seen:
            problems.append(f"{where}: stage name {name!r} is used twice.")
        else:
            seen.add(name)
        if not isinstance(stage.get("space"), dict) or not stage.get("space"):
            problems.append(f"{where}: space must be a non-empty mapping of hyperparameter -> domain.")
        if stage.get("scheduler") not in (None, *SCHEDULERS):
            problems.append(
                f"{where}: scheduler must be one of {list(SCHEDULERS)}, got {stage['scheduler']!r}."
            )


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; sections (mappings) merge key by key, other values replace."""
    out = dict(base)
    for key, value in over.items():
        if key in SECTIONS and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads YAML 1.2 floats: ``1e-5`` (no dot) is a number.

    (PyYAML implements YAML 1.1, where a float needs a dot, so ``1e-5`` would be the string
    ``"1e-5"`` — the most common way people write a learning rate.)
    """


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
FILE_SHAPE = "a YAML mapping of `name:`, `space:`, `training:`, ... (see search_spaces/)"


def read_yaml(path: Path) -> Any:
    """One YAML file, as UTF-8 text, with :class:`YamlLoader`.

    Raises:
        ConfigError: naming the file when it is missing, not UTF-8 or not valid YAML.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist.") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder; name a YAML file.") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
            "save the file as UTF-8."
        ) from None
    try:
        return yaml.load(text, Loader=YamlLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML mapping, with its ``base:`` file (relative to it) merged underneath."""
    if not chain and path.is_dir():
        raise ConfigError(
            f"search-space file {str(path)!r} is a folder; pass --space with a YAML file "
            "(e.g. one in it, see search_spaces/)."
        )
    if not chain and not path.is_file():
        raise ConfigError(
            f"search-space file {str(path)!r} does not exist; pass --space with a YAML file (see search_spaces/)."
        )
    if path.resolve() in chain:
        loop = " -> ".join(map(str, (*chain, path.resolve())))
        raise ConfigError(f"{chain[-1]}: `base:` files include each other ({loop}); remove one `base:`.")
    # A base file's problem names the file the user gave too (and the file that names the base).
    via = f" (the `base:` of {chain[-1]}, from {chain[0]})" if len(chain) > 1 else ""
    via = via or (f" (the `base:` of {chain[0]})" if chain else "")
    try:
        raw = read_yaml(path)
    except ConfigError as err:
        if not via:
            raise
        raise ConfigError(f"{err}{via}") from None
    if raw is None:
        raise ConfigError(f"{path}{via}: the file is empty; a search-space file is {FILE_SHAPE}.")
    if not isinstance(raw, dict):
        kind = {"list": "a list", "str": "a string", "int": "a number", "float": "a number"}
        raise ConfigError(
            f"{path}{via}: expected {FILE_SHAPE}, got {kind.get(type(raw).__name__, type(raw).__name__)}: "
            f"{raw!r:.60}."
        )
    if "base" in raw:
        base = raw["base"]
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(
                f"{path}: base: must be one file name, relative to this file "
                f"(e.g. `base: baseline.yaml`), got {base!r}."
            )
        if not (path.parent / base).is_file():
            raise ConfigError(
                f"{path}: base: {path.parent / base} does not exist; name a YAML file relative to {path.parent}."
            )
        merged = _read_yaml(path.parent / base, (*chain, path.resolve()))
        merged.pop("name", None)
        raw = _merge(merged, {k: v for k, v in raw.items() if k != "base"})
    return raw


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read a search-space YAML file (and its ``base:`` file) into an ExperimentConfig (not yet validated)."""
    path = Path(path)
    return parse_experiment(_read_yaml(path), str(path))


def set_field(config: Any, name: str, value: Any) -> None:
    """Set a field of a config dataclass by name, refusing names it does not have."""
    if name not in field_names(type(config)):
        raise ConfigError(
            f"{type(config).__name__} has no field {name!r}; accepted: {', '.join(field_names(type(config)))}."
        )
    setattr(config, name, value)


SEED_MAX = 2**32 - 1
"""Largest seed numpy's RandomState takes (transformers' ``set_seed`` and Optuna's samplers use it)."""

FLAG = "flag"
"""Field metadata key of a short command-line flag (``--num-samples``) beside ``--section.field``."""


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's attribute docstring (the string under it in the class body), on one line.

    Read from the source once: the docstrings stay where a reader of this file (and an IDE or
    Sphinx) looks for them, and are also the flags' help. Without the source, no help.
    """
    try:
        (node,) = ast.parse(textwrap.dedent(inspect.getsource(cls))).body
    except (OSError, TypeError):
        return {}
    body = node.body if isinstance(node, ast.ClassDef) else []
    docs = {}
    for stmt, after in itertools.pairwise(body):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


@dataclass(frozen=True)
class ConfigFlag:
    """A command-line option that sets config fields (see :func:`config_flags`)."""

    names: tuple[str, ...]
    """Its spellings: ``("--num-samples", "--search.num_samples")``."""
    keys: tuple[str, ...]
    """The fields it sets, ``section.field``: one, or more for a shared short flag (``--seed``)."""
    section: str | None
    """The section it belongs to; None for a short flag shared by sections."""
    help: str
    metavar: str
    switch: bool
    """A true/false field: the flag alone means true (``--full-grid``)."""

    @property
    def dest(self) -> str:
        """Where argparse stores the text given: the field's key (``search.num_samples``)."""
        return self.keys[0] if len(self.keys) == 1 else self.names[0].lstrip("-").replace("-", "_")

    @property
    def label(self) -> str:
        """How messages name it: ``--num-samples / --search.num_samples``."""
        return " / ".join(self.names)


METAVARS = {int: "INT", float: "FLOAT", str: "TEXT", bool: "BOOL", dict: "MAPPING"}


@cache
def config_flags() -> tuple[ConfigFlag, ...]:
    """One flag per field of every section, ``--<section>.<field>``, with the field's docstring
    as help; the YAML spelling (``--training.lambda``) and the short flag of the field's metadata
    (``--num-samples``) are other spellings of it. A short flag that several fields declare
    (``--seed``) is its own flag that sets them all."""
    short: dict[str, list[str]] = {}
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            if FLAG in f.metadata:
                short.setdefault(f.metadata[FLAG], []).append(f"{section}.{f.name}")
    out, docs = [], {}
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            key = f"{section}.{f.name}"
            own = f.metadata.get(FLAG)
            names: tuple[str, ...] = (own,) if own and len(short[own]) == 1 else ()
            names += tuple(dict.fromkeys((f"--{key}", f"--{section}.{YAML_NAMES.get(f.name, f.name)}")))
            kind = field_kinds(cls)[f.name]
            metavar = "DURATION" if f.name in DURATIONS else METAVARS[kind.base]
            docs[key] = field_docs(cls).get(f.name, "")
            out.append(ConfigFlag(names, (key,), section, docs[key], metavar, kind.base is bool))
    for flag, keys in short.items():
        if len(keys) > 1:
            first = next(f for f in out if f.keys == (keys[0],))
            said = [f"--{k} ({docs[k][:1].lower()}{docs[k][1:].rstrip('.')})" for k in keys]
            text = f"Sets {' and '.join(said)}."
            out.append(ConfigFlag((flag,), tuple(keys), None, text, first.metavar, first.switch))
    return tuple(out)


def flag_value(key: str, text: str) -> tuple[Any, str | None]:
    """A command-line value of field ``key`` (``section.field``), read as the same text in a YAML
    file would be, and what is wrong with it (or None), from :func:`coerce`.

    ``3e-5``, ``true``, ``null``, ``{klue_dev: k.json}`` are YAML values; a text field takes the
    text as typed (a model or file name is never re-read as a number), ``null`` excepted where
    the field may be null.
    """
    section, _, name = key.partition(".")
    cls = SECTIONS[section]
    kind = field_kinds(cls)[name]
    value: Any = text
    if kind.base is not str or (kind.optional and text == "null"):
        with contextlib.suppress(yaml.YAMLError):  # not YAML: left as text, coerce says what fits
            value = yaml.load(text, Loader=YamlLoader)
    return coerce(cls, name, _expand(value))


Rule = tuple[Callable[[Any], bool], str]
"""A field's rule: a test of one value, and what it accepts (``"> 0"``) for the message."""


def _at_least(low: float) -> Rule:
    return (lambda v: v >= low, f">= {low}")


def _above(low: float, unit: str = "") -> Rule:
    return (lambda v: v > low, f"> {low}{unit}")


def _within(low: float, high: float, brackets: str = "[]") -> Rule:
    def test(v: Any) -> bool:
        return (low < v if brackets[0] == "(" else low <= v) and (
            v < high if brackets[1] == ")" else v <= high
        )

    return (test, f"in {brackets[0]}{low}, {high}{brackets[1]}")


def _one_of(names: list[str] | tuple[str, ...]) -> Rule:
    return (lambda v: v in names, f"one of {list(names)}")


def _or_null(rule: Rule) -> Rule:
    return (lambda v: v is None or rule[0](v), f"{rule[1]} or null")


def _or_auto(rule: Rule) -> Rule:
    return (lambda v: v == "auto" or rule[0](v), f"'auto' or {rule[1]}")


def looks_like_path(name: str) -> bool:
    """Whether a model name can only be a local path: it starts with ``/``, ``.`` or ``~``, or has
    more than one ``/`` (a Hub id is ``name`` or ``org/name``)."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def _model_found(name: str) -> bool:
    return not looks_like_path(name) or Path(name).expanduser().exists()


@cache
def field_rules() -> dict[str, Rule]:
    """The rule of every checked field, ``section.field`` -> rule.

    :func:`validate` applies them to a config's values and ``tuning.spaces`` to every value a
    searched domain can take, so a sampled value obeys the same rules as a fixed one.
    """
    # Names checked against registries that live beside their implementations.
    from tuning.losses import LOSSES
    from tuning.metrics import METRICS
    from tuning.schedules import SCHEDULES

    seed = _within(0, SEED_MAX)
    return {
        "data.train_size": _or_null(_at_least(1)),
        "data.validation_size": _or_null(_at_least(1)),
        "data.validation_fraction": _within(0, 1, "()"),
        "data.split_seed": seed,
        "model.name_or_path": (
            _model_found,
            "a Hub id (`org/name`), a local folder that exists, or 'builtin:tiny'",
        ),
        "model.architecture": _one_of(ARCHITECTURES),
        "model.num_hidden_layers": _or_null(_at_least(1)),
        "model.max_length": _at_least(8),
        "training.learning_rate": _above(0),
        "training.batch_size": _at_least(1),
        "training.num_epochs": _at_least(1),
        "training.weight_decay": _at_least(0),
        "training.warmup_ratio": _within(0, 1, "[)"),
        "training.lr_schedule": _one_of(sorted(SCHEDULES)),
        "training.step_epochs": _at_least(1),
        "training.step_gamma": _within(0, 1, "(]"),
        "training.seed": seed,
        "training.loss": _one_of(sorted(LOSSES)),
        "training.alpha": _within(0, 1),
        "training.head": _one_of(HEADS),
        "training.mtl_lambda": _at_least(0),
        "training.eval_batch_size": _at_least(1),
        "training.precision": _one_of(PRECISIONS),
        "training.logging_steps": _at_least(1),
        "training.eval_every_pairs": _or_null(_at_least(1)),
        "training.freeze_layers": _at_least(0),
        "search.metric": _one_of(sorted(METRICS)),
        "search.num_samples": _at_least(1),
        "search.searcher": _one_of(SEARCHERS),
        "search.scheduler": _one_of(SCHEDULERS),
        "search.grace_period": _above(0, " (epochs)"),
        "search.reduction_factor": _at_least(2),
        "search.max_concurrent_trials": _or_null(_at_least(1)),
        "search.cpus_per_trial": _or_auto(_above(0)),
        "search.gpus_per_trial": _or_auto(
            (
                lambda v: 0 <= v <= 1 or (v > 1 and float(v).is_integer()),
                "a fraction in [0, 1] or a whole number",
            )
        ),
        "search.max_failures": _at_least(0),
        "search.top_k": _at_least(1),
        "search.seed": seed,
        "search.startup_trials": _or_null(_at_least(0)),
        "search.seeds": _at_least(1),
        "search.perturbation_interval": _at_least(1),
        "search.time_budget": _or_null(_above(0, " seconds")),
    }


def field_label(key: str) -> str:
    """How messages name a field: ``training.lambda``, ``search.top_k (--top-k)``."""
    section, _, name = key.partition(".")
    label = f"{section}.{YAML_NAMES.get(name, name)}"
    declared = {f.name: f for f in fields(SECTIONS[section])} if section in SECTIONS else {}
    flag = declared[name].metadata.get(FLAG) if name in declared else None
    return f"{label} ({flag})" if flag else label


def field_problem(key: str, value: Any, shown: str | None = None) -> str | None:
    """What is wrong with ``value`` for field ``key`` (``section.field``) by its rule, or None.

    Args:
        key: ``"training.learning_rate"``; a field without a rule accepts anything.
        value: a value of the field's type.
        shown: how the message shows the value (default ``repr(value)``), e.g. ``"low=-0.1"``.

    Returns:
        The text after the field's name: ``"must be > 0, got -0.1."``.
    """
    rule = field_rules().get(key)
    if rule is None:
        return None
    test, accepted = rule
    try:
        ok = bool(test(value))
    except TypeError:  # a value of the wrong type; its type is reported where it was read
        ok = False
    return None if ok else f"must be {accepted}, got {shown or repr(value)}."


def validate(exp: ExperimentConfig) -> None:
    """Check every value of the config by :func:`field_rules`; raise one ConfigError listing all problems."""
    problems: list[str] = []
    for section in SECTIONS:
        config = getattr(exp, section)
        for name in field_names(type(config)):
            key = f"{section}.{name}"
            problem = field_problem(key, getattr(config, name))
            if problem:
                problems.append(f"{field_label(key)} {problem}")
    if not NAME_PATTERN.fullmatch(exp.name):
        problems.append(f"name {NAME_RULE}, got {exp.name!r}.")
    if problems:
        where = f" in {exp.source_file}" if exp.source_file else ""
        raise ConfigError(f"{len(problems)} problem(s){where}:\n- " + "\n- ".join(problems))


def resource_problems(search: SearchConfig, cpus: int, gpus: int) -> list[str]:
    """Per-trial requests larger than the machine Ray starts on (Ray would wait for them forever).

    Args:
        search: the requests, ``cpus_per_trial`` and ``gpus_per_trial``.
        cpus: CPU cores of the machine; gpus: its CUDA GPUs.
    """
    problems: list[str] = []
    # `auto` is resolved from this machine (tuning.hardware.resolve_resources): it always fits.
    if isinstance(search.cpus_per_trial, (int, float)) and search.cpus_per_trial > cpus:
        problems.append(
            f"{field_label('search.cpus_per_trial')} asks for {search.cpus_per_trial:g} CPUs per trial, "
            f"but this machine has {cpus}; pass --cpus-per-trial {cpus} or less."
        )
    if isinstance(search.gpus_per_trial, (int, float)) and search.gpus_per_trial > gpus:
        fix = f"--gpus-per-trial {gpus} or less" if gpus else "--gpus-per-trial 0 to train on the CPU"
        problems.append(
            f"{field_label('search.gpus_per_trial')} asks for {search.gpus_per_trial:g} GPU(s) per trial, "
            f"but this machine has {gpus or 'none'} (CUDA GPUs torch sees); pass {fix}."
        )
    return problems


def node_problems(search: SearchConfig, nodes: list[dict[str, float]], where: str) -> list[str]:
    """A per-trial request no node of a cluster can meet (Ray would wait for it forever).

    Args:
        search: the requests, ``cpus_per_trial`` and ``gpus_per_trial``.
        nodes: the resources (``CPU``, ``GPU``) of each alive node and of each node type an
            autoscaler may start.
        where: the cluster, as the message names it.
    """
    # `auto` is resolved from the cluster's largest node: it asks for nothing that node lacks.
    cpus, gpus = (
        v if isinstance(v, (int, float)) else 0.0 for v in (search.cpus_per_trial, search.gpus_per_trial)
    )
    if any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        return []
    most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    return [
        f"a trial asks for {cpus:g} CPUs and {gpus:g} GPUs (--cpus-per-trial, --gpus-per-trial), but no "
        f"node or node type of the cluster at {where} has that (most CPUs on one: {most_cpus:g}; most "
        f"GPUs: {most_gpus:g}); lower the request, or add a node type that fits to the cluster's config."
    ]


HEADS = ("regression", "multitask")
ARCHITECTURES = ("cross", "bi")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SEARCHERS = ("tpe", "random")
SCHEDULERS = ("asha", "fifo")
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
# Names become folder and Ray trial names on every node of a cluster: ASCII only, said plainly.
NAME_RULE = "must use only ASCII letters A-Z a-z, digits, '.', '_' and '-' (no Hangul, other non-ASCII letters or spaces)"


def apply_overrides(exp: ExperimentConfig, overrides: dict[str, Any]) -> None:
    """Set ``section.field`` values (command-line flags) on top of what the YAML file gave.

    Keys are ``"<section>.<field>"`` (e.g. ``"search.num_samples"``) or a top-level field
    (``"name"``). The same overrides are applied again to each method a ``compare`` runs.
    """
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        set_field(getattr(exp, section) if section else exp, name, value)
    exp.overrides = {**exp.overrides, **overrides}


# Keys a smoke test never searches: they would make a tiny run slow or meaningless.
SMOKE_UNSEARCHED = ("num_epochs", "num_hidden_layers", "name_or_path", "max_length")


def make_smoke(exp: ExperimentConfig) -> None:
    """Shrink an experiment to a test-size run that keeps its shape (methods, stages, spaces).

    A 2-layer model built in code, 64 training / 32 validation pairs, 2 epochs (fp32 for it), 2 samples and
    at most 2 values per grid or choice, 2 seeds; values in ``exp.overrides`` (the flags) are
    applied again on top.
    """
    exp.smoke_test = True
    exp.model.name_or_path, exp.model.num_hidden_layers, exp.model.max_length = "builtin:tiny", None, 64
    exp.data.train_size, exp.data.validation_size = 64, 32
    exp.training.num_epochs, exp.training.batch_size, exp.training.logging_steps = 2, 16, 2
    # `auto`: the tiny model trains in fp32 (bf16 rounds its small updates away: every trial
    # would score the same); a real model given with --model gets what the machine does best.
    exp.training.precision = "auto"
    exp.training.freeze_embeddings = False  # a tiny model's embeddings are random: they must learn
    exp.search.num_samples, exp.search.seeds, exp.search.top_k = 2, 2, min(exp.search.top_k, 2)
    exp.space = _smoke_space(exp.space)
    for stage in exp.stages:
        stage["space"] = _smoke_space(stage.get("space") or {})
        stage.pop("num_samples", None)
    # A flag the user gave (--num-samples, --model, --top-k, ...) still wins over the smoke sizes.
    apply_overrides(exp, exp.overrides)


def _smoke_space(space: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, spec in space.items():
        if ALIASES.get(key, key) in SMOKE_UNSEARCHED:
            continue
        if isinstance(spec, dict) and isinstance(spec.get("values"), list):
            spec = {**spec, "values": spec["values"][:2]}
        out[key] = spec
    return out


def experiment_from_dict(raw: Any, source: str = "experiment.json") -> ExperimentConfig:
    """Rebuild the resolved config saved in ``experiment.json`` (``ExperimentConfig.to_dict``).

    Section values go through the same builder as a YAML file's (types, null, aliases); a key
    this version does not know is refused, never dropped: resuming with settings silently lost
    would mix results of different configurations.

    Args:
        raw: the file's ``config`` mapping.
        source: the file, as messages name it.

    Raises:
        ConfigError: naming the file and every unknown key or wrongly typed value.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: config: expected a mapping of settings, got {type(raw).__name__}.")
    known = field_names(ExperimentConfig)
    problems = [
        f"{source}: config: unknown key {key!r}; accepted keys: {', '.join(known)}."
        for key in raw
        if key not in known
    ]
    sections = {
        name: _build_section(cls, raw.get(name), f"{source}: config.{name}", problems)
        for name, cls in SECTIONS.items()
    }
    if problems:
        raise ConfigError(
            "\n".join(problems) + "\nThe file was probably written by another version of this tool: "
            "resume with that version, or start a new experiment."
        )
    rest = {k: v for k, v in raw.items() if k not in SECTIONS}
    return ExperimentConfig(**rest, **sections)
