"""Every field is a command-line flag, generated from its dataclass: ``--<section>.<field>`` with
the field's docstring as help, and the short spelling its ``flag=`` declares."""

from __future__ import annotations

import ast
import contextlib
import inspect
import itertools
import textwrap
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

import yaml

from tuning.settings.loading import DURATIONS, YamlLoader, _expand, coerce, field_kinds
from tuning.settings.schema import FLAG, SECTIONS, YAML_NAMES


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
