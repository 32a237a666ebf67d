"""Settings: one dataclass per section, loaded from a search-space YAML file and flags, checked once.

Precedence: dataclass defaults < search-space YAML file < command-line flags.

- :mod:`~tuning.settings.schema`: the sections, each field with its default, rule and docstring.
- :mod:`~tuning.settings.rules`: what a value may be (the rules the fields declare).
- :mod:`~tuning.settings.loading`: YAML files (with ``base:``), saved configs, one value's type.
- :mod:`~tuning.settings.flags`: every field as a command-line flag, its docstring as help.
- :mod:`~tuning.settings.checks`: the rules applied (:func:`validate`), overrides, smoke mode.
- :mod:`~tuning.settings.machine`: the offline folder, GPUs, requests a machine cannot meet.
"""

from tuning.settings.checks import (
    apply_overrides,
    data_problems,
    field_label,
    field_problem,
    field_rules,
    make_smoke,
    set_field,
    validate,
)
from tuning.settings.flags import ConfigFlag, config_flags, field_docs, flag_value
from tuning.settings.loading import (
    FieldKind,
    coerce,
    experiment_from_dict,
    field_kinds,
    load_experiment,
    parse_duration,
    parse_experiment,
    read_number,
    read_yaml,
)
from tuning.settings.machine import (
    REPO_ROOT,
    SHARED_ENV,
    gpu_names,
    node_problems,
    resource_problems,
    shared_dir,
)
from tuning.settings.rules import NAME_PATTERN, NAME_RULE, SEED_MAX, Rule, looks_like_path
from tuning.settings.schema import (
    ALIASES,
    SECTIONS,
    YAML_NAMES,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    SearchConfig,
    TrainingConfig,
    field_names,
)

__all__ = [
    "ALIASES",
    "NAME_PATTERN",
    "NAME_RULE",
    "REPO_ROOT",
    "SECTIONS",
    "SEED_MAX",
    "SHARED_ENV",
    "YAML_NAMES",
    "ConfigError",
    "ConfigFlag",
    "DataConfig",
    "ExperimentConfig",
    "FieldKind",
    "ModelConfig",
    "Rule",
    "SearchConfig",
    "TrainingConfig",
    "apply_overrides",
    "coerce",
    "config_flags",
    "data_problems",
    "experiment_from_dict",
    "field_docs",
    "field_kinds",
    "field_label",
    "field_names",
    "field_problem",
    "field_rules",
    "flag_value",
    "gpu_names",
    "load_experiment",
    "looks_like_path",
    "make_smoke",
    "node_problems",
    "parse_duration",
    "parse_experiment",
    "read_number",
    "read_yaml",
    "resource_problems",
    "set_field",
    "shared_dir",
    "validate",
]
