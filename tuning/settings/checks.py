"""Checking and changing resolved settings: each field by the rule declared on it, the data
section's fields together, the experiment's name; overrides (flags) and smoke mode."""

from __future__ import annotations

from dataclasses import fields
from functools import cache
from typing import Any

from tuning.settings.rules import NAME_PATTERN, NAME_RULE, Rule
from tuning.settings.schema import (
    ALIASES,
    FLAG,
    RULE,
    SECTIONS,
    YAML_NAMES,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    field_names,
)


@cache
def field_rules() -> dict[str, Rule]:
    """The rule of every field that declares one, ``section.field`` -> rule, read from the
    fields (a key here is always a field). :func:`validate` applies them to a config's values
    and ``tuning.spaces`` to every value a searched domain can take, so a sampled value obeys
    the same rules as a fixed one."""
    return {
        f"{section}.{f.name}": f.metadata[RULE]
        for section, cls in SECTIONS.items()
        for f in fields(cls)
        if RULE in f.metadata
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
        key: ``"training.learning_rate"``; a field without a rule accepts anything of its type.
        value: a value of the field's type.
        shown: how the message shows the value (default ``repr(value)``), e.g. ``"low=-0.1"``.

    Returns:
        The text after the field's name: ``"must be > 0, got -0.1."``.

    Raises:
        KeyError: ``key`` names no field (a misspelling is a bug, never "no rule").
    """
    section, _, name = key.partition(".")
    if section not in SECTIONS or name not in field_names(SECTIONS[section]):
        raise KeyError(f"no setting {key!r}")
    rule = field_rules().get(key)
    if rule is None or rule(value):
        return None
    return f"must be {rule.accepts}, got {shown or repr(value)}."


def section_problems(section: str, config: Any) -> list[str]:
    """Each field of one section against its rule: ``"training.batch_size must be >= 1, got 0."``."""
    problems = []
    for name in field_names(type(config)):
        key = f"{section}.{name}"
        problem = field_problem(key, getattr(config, name))
        if problem:
            problems.append(f"{field_label(key)} {problem}")
    return problems


def data_problems(data: DataConfig) -> list[str]:
    """The data section's fields by their rules, then the fields together: what the data loader
    (``tuning.data.load_splits``) and :func:`validate` both refuse, in the same words."""
    problems = section_problems("data", data)
    if data.source == "files" and not data.train:
        problems.append("data.source 'files' needs a train file (data.train or --data).")
    if data.source == "klue-sts" and (data.train or data.validation or data.test):
        problems.append(
            "data.source 'klue-sts' takes its splits from the Hub; name files with source 'files'."
        )
    clashes = sorted({"train", "validation", "test"} & set(data.extra_test or {}))
    if clashes:
        problems.append(f"data.extra_test names {clashes} clash with the splits train/validation/test.")
    return problems


def validate(exp: ExperimentConfig) -> None:
    """Check every value of the config by its field's rule, the data section's fields together
    and the name; raise one ConfigError listing all problems."""
    problems = data_problems(exp.data)
    for section in SECTIONS:
        if section != "data":
            problems += section_problems(section, getattr(exp, section))
    if not NAME_PATTERN.fullmatch(exp.name):
        problems.append(f"name {NAME_RULE}, got {exp.name!r}.")
    if problems:
        where = f" in {exp.source_file}" if exp.source_file else ""
        raise ConfigError(f"{len(problems)} problem(s){where}:\n- " + "\n- ".join(problems))


def set_field(config: Any, name: str, value: Any) -> None:
    """Set a field of a config dataclass by name, refusing names it does not have."""
    if name not in field_names(type(config)):
        raise ConfigError(
            f"{type(config).__name__} has no field {name!r}; accepted: {', '.join(field_names(type(config)))}."
        )
    setattr(config, name, value)


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
        if key == "num_hidden_layers" and isinstance(spec, dict) and spec.get("type") in ("choice", "grid"):
            out[key] = {**spec, "values": [1, 2]}  # a searched depth stays searched: the tiny model's
            continue
        if ALIASES.get(key, key) in SMOKE_UNSEARCHED:
            continue
        if isinstance(spec, dict) and isinstance(spec.get("values"), list):
            spec = {**spec, "values": spec["values"][:2]}
        out[key] = spec
    return out
