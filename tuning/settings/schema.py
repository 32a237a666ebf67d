"""The settings of an experiment: one dataclass per section, each field with its default, its
rule and its docstring, declared once.

- The rule (:mod:`tuning.settings.rules`) is what :func:`tuning.settings.validate` checks a value
  against, and what ``tuning.spaces`` checks every value a searched domain can take against.
- The docstring under a field is the help of its command-line flag ``--<section>.<field>``
  (:mod:`tuning.settings.flags`); ``flag=`` gives it a short spelling too (``--num-samples``).
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from tuning.settings.rules import (
    ARCHITECTURES,
    COSTS,
    GPUS,
    HEADS,
    MODEL,
    PRECISIONS,
    SCHEDULERS,
    SEARCHERS,
    SEED,
    SELECT,
    Rule,
    above,
    at_least,
    one_of,
    or_auto,
    or_null,
    registered,
    within,
)

RULE = "rule"
"""Field metadata key of a field's :class:`~tuning.settings.rules.Rule`."""
FLAG = "flag"
"""Field metadata key of a short command-line flag (``--num-samples``) beside ``--section.field``."""


def setting(
    default: Any = MISSING,
    *,
    rule: Rule | None = None,
    flag: str | None = None,
    default_factory: Any = MISSING,
) -> Any:
    """A dataclass field with its rule and short flag in its metadata."""
    metadata = {k: v for k, v in ((RULE, rule), (FLAG, flag)) if v is not None}
    return field(default=default, default_factory=default_factory, metadata=metadata)


@dataclass
class DataConfig:
    """Where the sentence pairs come from."""

    source: str = setting("korsts", rule=registered("tuning.data", "SOURCES"))
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
    train_size: int | None = setting(None, rule=or_null(at_least(1)))
    """Use this many training pairs (a seeded random subset); ``None`` uses all."""
    validation_size: int | None = setting(None, rule=or_null(at_least(1)))
    """Use this many validation pairs (a seeded random subset); ``None`` uses all."""
    validation_fraction: float = setting(0.1, rule=within(0, 1, "()"))
    """Fraction of train held out as validation when there is no validation file (0-1)."""
    split_seed: int = setting(42, rule=SEED)
    """Seed of the train/validation split and of the subsets."""


@dataclass
class ModelConfig:
    """Which pretrained encoder, and how a sentence pair becomes a score."""

    name_or_path: str = setting("klue/roberta-base", rule=MODEL, flag="--model")
    """A Hub id, a local folder in Hugging Face format, or ``builtin:tiny`` (a 2-layer, 32-hidden
    BERT and a character tokenizer built in code from the training text, for tests)."""
    architecture: str = setting("cross", rule=one_of(ARCHITECTURES))
    """``cross``: the pair in one sequence, a regression head on [CLS] (the original project);
    ``bi``: each sentence embedded alone, mean pooling, score = 5 x cosine (with ``cosent``,
    ``angle`` or ``corr_mae``, a line fitted to training labels before each evaluation)."""
    num_hidden_layers: int | None = setting(None, rule=or_null(at_least(1)))
    """Keep only the first N encoder layers (truncation for speed); ``None`` keeps all."""
    max_length: int = setting(128, rule=at_least(8))
    """Tokens per encoded input (the pair for ``cross``, each sentence for ``bi``); longer is truncated."""


@dataclass
class TrainingConfig:
    """How one trial fine-tunes. Every field may be fixed in a search-space file or searched."""

    learning_rate: float = setting(5e-5, rule=above(0))
    """Peak learning rate of AdamW."""
    batch_size: int = setting(32, rule=at_least(1))
    """Training pairs per optimizer step."""
    num_epochs: int = setting(4, rule=at_least(1))
    """Passes over the training split; validation runs after each one."""
    weight_decay: float = setting(0.0, rule=at_least(0))
    """AdamW decoupled weight decay."""
    warmup_ratio: float = setting(0.1, rule=within(0, 1, "[)"))
    """Fraction of all training steps spent warming the learning rate up from 0 (0-1)."""
    lr_schedule: str = setting("linear", rule=registered("tuning.schedules", "SCHEDULES"))
    """Learning-rate schedule after warm-up: ``linear``, ``cosine``, ``constant_with_warmup``, ``step``."""
    step_epochs: int = setting(1, rule=at_least(1))
    """``step`` schedule: epochs between decays."""
    step_gamma: float = setting(0.5, rule=within(0, 1, "(]"))
    """``step`` schedule: factor applied at each decay (0-1]."""
    seed: int = setting(42, rule=SEED, flag="--seed")
    """Seed of model initialisation, dropout and data order."""
    loss: str = setting("mse", rule=registered("tuning.losses", "LOSSES"))
    """Regression loss: ``mse``, ``l1``, ``smooth_l1``, ``corr_mae``; for ``bi`` models also the
    ranking losses ``cosent`` and ``angle`` (sentence-transformers' CoSENT and AnglE)."""
    alpha: float = setting(0.1, rule=within(0, 1))
    """``corr_mae``: weight of the MAE term, (1 - alpha) goes to 1 - Pearson (0-1)."""
    head: str = setting("regression", rule=one_of(HEADS))
    """``regression`` (one score) or ``multitask`` (a second output on the binary label, BCE)."""
    mtl_lambda: float = setting(0.5, rule=at_least(0))
    """``multitask``: weight of the binary cross-entropy term (YAML key ``lambda``)."""
    standardize_targets: bool = True
    """Train a ``cross`` regression head on (label - mean) / std of the training labels and map
    predictions back to 0-5 (a fresh head otherwise spends its first epoch learning the mean)."""
    group_by_length: bool = True
    """Batch pairs of similar length together, so per-batch padding wastes less."""
    eval_batch_size: int = setting(64, rule=at_least(1))
    """Pairs per batch at validation and test time."""
    precision: str = setting("auto", rule=one_of(PRECISIONS))
    """``auto`` (from the hardware: bf16 where the device computes it natively, fp16 on a CUDA GPU
    without bf16, fp32 otherwise; see ``tuning.hardware``), ``fp32``, or mixed precision ``bf16`` /
    ``fp16`` (GPU); an explicit ``bf16`` without native support is honoured with a warning."""
    logging_steps: int = setting(10, rule=at_least(1))
    """Optimizer steps between training-loss points in TensorBoard."""
    eval_every_pairs: int | None = setting(None, rule=or_null(at_least(1)))
    """Evaluate, checkpoint and report every this many training pairs (sub-epoch fidelity):
    ``round(train size / eval_every_pairs)`` evaluations per epoch, evenly spread over whole
    optimizer steps, the last at the epoch's end. ``None``: once per epoch."""
    freeze_embeddings: bool = False
    """Keep the token embeddings fixed: they barely move in fine-tuning (a batch touches a few
    hundred rows), and with a large multilingual vocabulary they are most of the model
    (multilingual-e5-small's 250k tokens: 96M of its 118M parameters; the shared e5-small-ko keeps
    9,290 Korean tokens, so there it saves less: 1.03x measured)."""
    freeze_layers: int = setting(0, rule=at_least(0))
    """Also keep the first N encoder layers fixed (0: none); frozen layers need no gradients."""


@dataclass
class SearchConfig:
    """How the search runs on Ray Tune."""

    metric: str = setting("pearson", rule=registered("tuning.metrics", "METRICS"))
    """Validation metric trials are ranked and stopped on: ``pearson``, ``f1``, ``spearman``, ``mse``."""
    num_samples: int = setting(8, rule=at_least(1), flag="--num-samples")
    """Trials to sample (for grids: repeats of the whole grid)."""
    searcher: str = setting("tpe", rule=one_of(SEARCHERS))
    """``tpe`` (Optuna's TPE) or ``random`` (Optuna's random sampler)."""
    scheduler: str = setting("asha", rule=one_of(SCHEDULERS))
    """``asha`` (stop weak trials early) or ``fifo`` (run every trial to the end)."""
    grace_period: float = setting(1.0, rule=above(0, " (epochs)"))
    """ASHA: epochs every trial trains before it can be stopped; fractions (``0.25``) make
    sub-epoch rungs when ``training.eval_every_pairs`` reports more often. ASHA counts training
    pairs seen, so this is ``grace_period x train size`` pairs and rungs follow at
    ``reduction_factor`` times that."""
    reduction_factor: int = setting(2, rule=at_least(2))
    """ASHA: keep the top 1/reduction_factor of trials at each rung."""
    rung_min_trials: int = setting(2, rule=at_least(1))
    """ASHA: results a rung must hold before it stops any trial. A trial that reaches a rung
    earlier trains on and is judged at its next report, against the same cutoff as the later
    ones, so no trial is promoted for arriving first (1: Ray's ASHA, where the first trial at a
    rung always continues). Each waiting trial trains unjudged, so more costs more: with two
    trials at a time and 3, the first two train to the end."""
    max_concurrent_trials: int | None = setting(
        None, rule=or_null(at_least(1)), flag="--max-concurrent-trials"
    )
    """Trials running at once; ``None``: as many as the cluster's resources fit."""
    cpus_per_trial: float | str = setting("auto", rule=or_auto(above(0)), flag="--cpus-per-trial")
    """CPU cores reserved per trial (also the trial's torch threads); ``auto``: the cores shared
    among the trials that fit on the GPUs (at most 8), or on a CPU-only machine half the cores
    (1-4), so two or more trials run side by side."""
    gpus_per_trial: float | str = setting("auto", rule=or_auto(GPUS), flag="--gpus-per-trial")
    """GPUs per trial; fractions such as 0.5 pack two trials on one GPU; ``auto``: 1 where GPUs
    exist, 0 (train on the CPU) otherwise."""
    max_failures: int = setting(2, rule=at_least(0))
    """Retries of a failed trial from its last checkpoint."""
    top_k: int = setting(3, rule=at_least(1), flag="--top-k")
    """Best configurations scored on the test split(s) after the search."""
    soup: bool = True
    """Export a greedy soup of the scored checkpoints (the top ``top_k`` and the recipe's trial):
    best first, each averaged in only if the average scores better on validation (Wortsman et
    al. 2022); the report gives its held-out gain over the best trial. False: export the best
    trial's checkpoint."""
    seed: int = setting(42, rule=SEED, flag="--seed")
    """Seed of the searcher."""
    startup_trials: int | None = setting(None, rule=or_null(at_least(0)))
    """TPE: random trials before TPE models the results; ``None``: a third of ``num_samples``,
    between 2 and 10 (Optuna's default of 10 would leave a 12-trial search almost random)."""
    seeds: int = setting(3, rule=at_least(1), flag="--seeds")
    """``seeds`` and ``compare``: training seeds each repeated configuration runs with."""
    full_grid: bool = setting(False, flag="--full-grid")
    """``grid``: one stage over the Cartesian product of every stage's values, not stage by stage."""
    from_experiment: str | None = setting(None, flag="--from")
    """``seeds``: repeat the top ``top_k`` configurations of this finished experiment folder."""
    perturbation_interval: int = setting(1, rule=at_least(1))
    """``pbt``: epochs between exploit/explore steps."""
    start_from_recipe: bool = True
    """Optuna: the first trial takes the file's fixed values for every searched hyperparameter
    that lies in its range (the recipe, e.g. KLUE's), so the search starts from a known-good
    configuration (an enqueued trial, Ray's ``points_to_evaluate``); false: all are sampled."""
    cost: str | None = setting(None, rule=or_null(one_of(COSTS)), flag="--cost")
    """A second objective: the serving cost of each configuration, measured on this machine
    before the search (``tuning.cost``), ``latency_ms`` (median ms to score one pair) or
    ``pairs_per_s`` (pairs/s scored 32 at a time). Optuna then optimises the metric and the cost
    together (multi-objective TPE), ASHA compares trials only within one cost level, and the
    report draws the front; ``None``: the metric alone. The space may search
    ``num_hidden_layers``, ``max_length`` and ``architecture`` over listed values."""
    select: str = setting("best", rule=SELECT, flag="--select")
    """Which scored model is exported: ``best`` (by the metric on validation) or ``fastest
    within 0.005`` (with ``cost``: the lowest-cost model whose validation metric is within 0.005
    of the best's)."""
    warm_start: str | None = setting(None, flag="--warm-start")
    """Optuna: an earlier experiment folder whose study seeds this one. Its trials on the same
    problem (data, model, epochs, fixed settings) are given to the searcher as evaluated, with no
    retraining; trials of another problem give their top ``top_k`` configurations, tried first."""
    time_budget: float | None = setting(None, rule=or_null(above(0, " seconds")), flag="--time-budget")
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
# YAML spellings that are not valid Python identifiers.
ALIASES = {"lambda": "mtl_lambda"}
YAML_NAMES = {name: key for key, name in ALIASES.items()}
# Fields given as durations (seconds, or a number with a unit).
DURATIONS = ("time_budget",)
# Numeric fields that also take ``auto`` (resolved from the machine: tuning.hardware).
AUTO_FIELDS = ("cpus_per_trial", "gpus_per_trial")


def field_names(cls: type) -> list[str]:
    """The names of a settings dataclass's fields."""
    return [f.name for f in fields(cls)]
