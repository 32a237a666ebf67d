"""Typed configuration: one dataclass per concern, loaded from YAML and validated once.

Precedence: dataclass defaults < search-space YAML file < command-line flags.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields
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

    name_or_path: str = "klue/roberta-base"
    """A Hub id, a local folder in Hugging Face format, or ``builtin:tiny`` (a 2-layer, 32-hidden
    BERT and a character tokenizer built in code from the training text, for tests)."""
    architecture: str = "cross"
    """``cross``: the pair in one sequence, a regression head on [CLS] (the original project);
    ``bi``: each sentence embedded alone, mean pooling, score = 5 x cosine."""
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
    seed: int = 42
    """Seed of model initialisation, dropout and data order."""
    loss: str = "mse"
    """Regression loss: ``mse``, ``l1``, ``smooth_l1``, ``corr_mae``."""
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
    precision: str = "fp32"
    """``fp32``, or mixed precision ``bf16`` / ``fp16`` (GPU)."""
    logging_steps: int = 10
    """Optimizer steps between training-loss points in TensorBoard."""


@dataclass
class SearchConfig:
    """How the search runs on Ray Tune."""

    metric: str = "pearson"
    """Validation metric trials are ranked and stopped on: ``pearson``, ``f1``, ``spearman``, ``mse``."""
    num_samples: int = 8
    """Trials to sample (for grids: repeats of the whole grid)."""
    searcher: str = "tpe"
    """``tpe`` (Optuna's TPE) or ``random`` (Optuna's random sampler)."""
    scheduler: str = "asha"
    """``asha`` (stop weak trials early) or ``fifo`` (run every trial to the end)."""
    grace_period: int = 1
    """ASHA: epochs every trial runs before it can be stopped."""
    reduction_factor: int = 2
    """ASHA: keep the top 1/reduction_factor of trials at each rung."""
    max_concurrent_trials: int | None = None
    """Trials running at once; ``None``: as many as the cluster's resources fit."""
    cpus_per_trial: float = 1.0
    """CPU cores reserved per trial (also the trial's torch threads)."""
    gpus_per_trial: float = 0.0
    """GPUs per trial; fractions such as 0.5 pack two trials on one GPU."""
    max_failures: int = 2
    """Retries of a failed trial from its last checkpoint."""
    top_k: int = 3
    """Best configurations scored on the test split(s) after the search."""
    seed: int = 42
    """Seed of the searcher."""
    startup_trials: int | None = None
    """TPE: random trials before TPE models the results; ``None``: a third of ``num_samples``,
    between 2 and 10 (Optuna's default of 10 would leave a 12-trial search almost random)."""
    seeds: int = 3
    """``seeds`` and ``compare``: training seeds each repeated configuration runs with."""
    full_grid: bool = False
    """``grid``: one stage over the Cartesian product of every stage's values, not stage by stage."""
    from_experiment: str | None = None
    """``seeds``: repeat the top ``top_k`` configurations of this finished experiment folder."""
    perturbation_interval: int = 1
    """``pbt``: epochs between exploit/explore steps."""


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
            kwargs[name] = _coerce(cls, name, _expand(value), where, problems)
    return cls(**kwargs)


def _coerce(cls: type, name: str, value: Any, where: str, problems: list[str]) -> Any:
    """Check a YAML value against the field's type; read numbers YAML left as strings."""
    kind = {f.name: str(f.type) for f in fields(cls)}[name]
    if value is None:
        if "None" not in kind:
            problems.append(f"{where}: {name} must be set ({kind}), got null.")
        return getattr(cls(), name)
    expected = kind.split(" | ")[0]
    if expected == "bool" and not isinstance(value, bool):
        problems.append(f"{where}: {name} must be true or false, got {value!r}.")
    elif expected in ("int", "float"):
        number = value
        if isinstance(value, str):
            try:
                number = float(value)  # YAML 1.1 reads ``1e-5`` (no dot) as a string.
            except ValueError:
                number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            problems.append(f"{where}: {name} must be a number ({kind}), got {value!r}.")
        elif expected == "int" and not float(number).is_integer():
            problems.append(f"{where}: {name} must be a whole number, got {value!r}.")
        else:
            return int(number) if expected == "int" else float(number)
    elif expected == "str" and not isinstance(value, str):
        problems.append(f"{where}: {name} must be a string, got {value!r}.")
    elif expected.startswith("dict") and not isinstance(value, dict):
        problems.append(f"{where}: {name} must be a mapping, got {value!r}.")
    return value


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
            problems.append(f"{where}: name must be letters, digits, '.', '_' or '-', got {name!r}.")
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


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML mapping, with its ``base:`` file (relative to it) merged underneath."""
    if not path.is_file():
        raise ConfigError(
            f"search-space file {str(path)!r} does not exist; pass --space with a YAML file (see search_spaces/)."
        )
    if path.resolve() in chain:
        raise ConfigError(f"{path}: `base:` files include each other: {' -> '.join(map(str, chain))}.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if isinstance(raw, dict) and raw.get("base"):
        base = _read_yaml(path.parent / str(raw["base"]), (*chain, path.resolve()))
        base.pop("name", None)
        raw = _merge(base, {k: v for k, v in raw.items() if k != "base"})
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


def validate(exp: ExperimentConfig) -> None:
    """Check every value of the config; raise one ConfigError listing all problems."""
    problems: list[str] = []
    t, s, m, d = exp.training, exp.search, exp.model, exp.data

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    need(t.learning_rate > 0, f"training.learning_rate must be > 0, got {t.learning_rate}.")
    need(t.batch_size >= 1, f"training.batch_size must be >= 1, got {t.batch_size}.")
    need(t.num_epochs >= 1, f"training.num_epochs must be >= 1, got {t.num_epochs}.")
    need(t.weight_decay >= 0, f"training.weight_decay must be >= 0, got {t.weight_decay}.")
    need(0 <= t.warmup_ratio < 1, f"training.warmup_ratio must be in [0, 1), got {t.warmup_ratio}.")
    need(0 <= t.alpha <= 1, f"training.alpha must be in [0, 1], got {t.alpha}.")
    need(t.mtl_lambda >= 0, f"training.lambda must be >= 0, got {t.mtl_lambda}.")
    need(t.head in HEADS, f"training.head must be one of {list(HEADS)}, got {t.head!r}.")
    need(
        t.precision in PRECISIONS,
        f"training.precision must be one of {list(PRECISIONS)}, got {t.precision!r}.",
    )
    need(
        m.architecture in ARCHITECTURES,
        f"model.architecture must be one of {list(ARCHITECTURES)}, got {m.architecture!r}.",
    )
    need(m.max_length >= 8, f"model.max_length must be >= 8, got {m.max_length}.")
    need(
        m.num_hidden_layers is None or m.num_hidden_layers >= 1,
        f"model.num_hidden_layers must be >= 1 or null, got {m.num_hidden_layers}.",
    )
    need(s.num_samples >= 1, f"search.num_samples must be >= 1, got {s.num_samples}.")
    need(s.searcher in SEARCHERS, f"search.searcher must be one of {list(SEARCHERS)}, got {s.searcher!r}.")
    need(
        s.scheduler in SCHEDULERS, f"search.scheduler must be one of {list(SCHEDULERS)}, got {s.scheduler!r}."
    )
    need(s.grace_period >= 1, f"search.grace_period must be >= 1, got {s.grace_period}.")
    need(s.reduction_factor >= 2, f"search.reduction_factor must be >= 2, got {s.reduction_factor}.")
    need(
        s.cpus_per_trial > 0, f"search.cpus_per_trial (--cpus-per-trial) must be > 0, got {s.cpus_per_trial}."
    )
    need(
        s.gpus_per_trial >= 0,
        f"search.gpus_per_trial (--gpus-per-trial) must be >= 0, got {s.gpus_per_trial}.",
    )
    need(
        s.gpus_per_trial <= 1 or float(s.gpus_per_trial).is_integer(),
        f"search.gpus_per_trial above 1 must be a whole number, got {s.gpus_per_trial}.",
    )
    need(s.top_k >= 1, f"search.top_k must be >= 1, got {s.top_k}.")
    need(s.max_failures >= 0, f"search.max_failures must be >= 0, got {s.max_failures}.")
    need(
        0 < d.validation_fraction < 1,
        f"data.validation_fraction must be in (0, 1), got {d.validation_fraction}.",
    )
    need(
        bool(NAME_PATTERN.fullmatch(exp.name)),
        f"name must be letters, digits, '.', '_' or '-', got {exp.name!r}.",
    )
    # Names checked against registries that live beside their implementations.
    from tuning.losses import LOSSES
    from tuning.metrics import METRICS
    from tuning.schedules import SCHEDULES

    need(t.loss in LOSSES, f"training.loss must be one of {sorted(LOSSES)}, got {t.loss!r}.")
    need(
        t.lr_schedule in SCHEDULES,
        f"training.lr_schedule must be one of {sorted(SCHEDULES)}, got {t.lr_schedule!r}.",
    )
    need(s.metric in METRICS, f"search.metric must be one of {sorted(METRICS)}, got {s.metric!r}.")
    if problems:
        where = f" in {exp.source_file}" if exp.source_file else ""
        raise ConfigError(f"{len(problems)} problem(s){where}:\n- " + "\n- ".join(problems))


HEADS = ("regression", "multitask")
ARCHITECTURES = ("cross", "bi")
PRECISIONS = ("fp32", "bf16", "fp16")
SEARCHERS = ("tpe", "random")
SCHEDULERS = ("asha", "fifo")
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


def apply_overrides(exp: ExperimentConfig, overrides: dict[str, Any]) -> None:
    """Set ``section.field`` values (command-line flags) on top of what the YAML file gave.

    Keys are ``"<section>.<field>"`` (e.g. ``"search.num_samples"``) or a top-level field
    (``"name"``). The same overrides are applied again to each method a ``compare`` runs.
    """
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        set_field(getattr(exp, section) if section else exp, name, value)


# Keys a smoke test never searches: they would make a tiny run slow or meaningless.
SMOKE_UNSEARCHED = ("num_epochs", "num_hidden_layers", "name_or_path", "max_length")


def make_smoke(exp: ExperimentConfig) -> None:
    """Shrink an experiment to a test-size run that keeps its shape (methods, stages, spaces).

    A 2-layer model built in code, 64 training / 32 validation pairs, 2 epochs, 2 samples and
    at most 2 values per grid or choice, 2 seeds.
    """
    exp.smoke_test = True
    exp.model.name_or_path, exp.model.num_hidden_layers, exp.model.max_length = "builtin:tiny", None, 64
    exp.data.train_size, exp.data.validation_size = 64, 32
    exp.training.num_epochs, exp.training.batch_size, exp.training.logging_steps = 2, 16, 2
    exp.search.num_samples, exp.search.seeds, exp.search.top_k = 2, 2, min(exp.search.top_k, 2)
    exp.space = _smoke_space(exp.space)
    for stage in exp.stages:
        stage["space"] = _smoke_space(stage.get("space") or {})
        stage.pop("num_samples", None)


def _smoke_space(space: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, spec in space.items():
        if ALIASES.get(key, key) in SMOKE_UNSEARCHED:
            continue
        if isinstance(spec, dict) and isinstance(spec.get("values"), list):
            spec = {**spec, "values": spec["values"][:2]}
        out[key] = spec
    return out


def experiment_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Rebuild the resolved config saved in ``experiment.json`` (``ExperimentConfig.to_dict``)."""
    known = {f.name for f in fields(ExperimentConfig)}
    sections = {name: cls(**raw.get(name, {})) for name, cls in SECTIONS.items()}
    rest = {k: v for k, v in raw.items() if k in known and k not in SECTIONS}
    return ExperimentConfig(**rest, **sections)
