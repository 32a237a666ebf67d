"""What a setting's value may be: a :class:`Rule` per field, declared on the field itself
(``setting(5e-5, rule=above(0))`` in :mod:`tuning.settings.schema`).

A rule is a test and the words of what it accepts, which every refusal quotes: ``"must be > 0,
got -0.1."``. Rules over names that live beside their implementations (losses, metrics,
schedules, data sources) read those registries when first used, so the schema imports no torch.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SEED_MAX = 2**32 - 1
"""Largest seed numpy's RandomState takes (transformers' ``set_seed`` and Optuna's samplers use it)."""

HEADS = ("regression", "multitask")
ARCHITECTURES = ("cross", "bi")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SEARCHERS = ("tpe", "random")
SCHEDULERS = ("asha", "fifo")
COSTS = ("latency_ms", "pairs_per_s")
SELECT_PATTERN = re.compile(r"best|fastest within (\d+(?:\.\d+)?)")

NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
# Names become folder and Ray trial names on every node of a cluster: ASCII only, said plainly.
NAME_RULE = "must use only ASCII letters A-Z a-z, digits, '.', '_' and '-' (no Hangul, other non-ASCII letters or spaces)"


class Rule:
    """A test of one value and what it accepts (``"> 0"``), for the message."""

    def __init__(self, test: Callable[[Any], bool], accepts: str | Callable[[], str]) -> None:
        self._test, self._accepts = test, accepts

    def __call__(self, value: Any) -> bool:
        """Whether ``value`` obeys the rule; a value of the wrong type does not."""
        try:
            return bool(self._test(value))
        except TypeError:  # its type is reported where it was read
            return False

    @property
    def accepts(self) -> str:
        return self._accepts if isinstance(self._accepts, str) else self._accepts()


def at_least(low: float) -> Rule:
    return Rule(lambda v: v >= low, f">= {low}")


def above(low: float, unit: str = "") -> Rule:
    return Rule(lambda v: v > low, f"> {low}{unit}")


def within(low: float, high: float, brackets: str = "[]") -> Rule:
    """``low <= v <= high``; ``"()"``, ``"[)"`` or ``"(]"`` leave an end out."""

    def test(v: Any) -> bool:
        return (low < v if brackets[0] == "(" else low <= v) and (
            v < high if brackets[1] == ")" else v <= high
        )

    return Rule(test, f"in {brackets[0]}{low}, {high}{brackets[1]}")


def one_of(names: Sequence[str]) -> Rule:
    return Rule(lambda v: v in names, f"one of {list(names)}")


def registered(module: str, registry: str) -> Rule:
    """One of the keys of ``module.registry`` (e.g. ``tuning.losses.LOSSES``), imported when the
    rule is first used."""

    def names() -> list[str]:
        return sorted(getattr(importlib.import_module(module), registry))

    return Rule(lambda v: v in names(), lambda: f"one of {names()}")


def or_null(rule: Rule) -> Rule:
    return Rule(lambda v: v is None or rule(v), lambda: f"{rule.accepts} or null")


def or_auto(rule: Rule) -> Rule:
    return Rule(lambda v: v == "auto" or rule(v), lambda: f"'auto' or {rule.accepts}")


def looks_like_path(name: str) -> bool:
    """Whether a model name can only be a local path: it starts with ``/``, ``.`` or ``~``, or has
    more than one ``/`` (a Hub id is ``name`` or ``org/name``)."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


MODEL = Rule(
    lambda name: not looks_like_path(name) or Path(name).expanduser().exists(),
    "a Hub id (`org/name`), a local folder that exists, or 'builtin:tiny'",
)
SEED = within(0, SEED_MAX)
GPUS = Rule(
    lambda v: 0 <= v <= 1 or (v > 1 and float(v).is_integer()), "a fraction in [0, 1] or a whole number"
)


def parse_select(value: str) -> float | None:
    """``search.select``: ``best`` -> 0, ``fastest within 0.005`` -> 0.005; None: not a rule."""
    match = SELECT_PATTERN.fullmatch(str(value).strip())
    if not match:
        return None
    return float(match.group(1)) if match.group(1) else 0.0


SELECT = Rule(
    lambda v: isinstance(v, str) and parse_select(v) is not None,
    "'best' or 'fastest within <gap>' (e.g. 'fastest within 0.005': the fastest model whose "
    "validation metric is within 0.005 of the best's)",
)
