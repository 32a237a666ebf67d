"""Sentence pairs: read STS files into one canonical record form and build the splits.

A canonical record is ``{"sentence1": str, "sentence2": str, "label": float, "binary_label": int}``
with sentences stripped, ``label`` the gold similarity in [0, 5] and ``binary_label`` 0/1 (KLUE's
binary F1 threshold is ``label >= 3.0``). Bad rows are never dropped: every bad row of a file is
listed, with its file and line, in one :class:`DataError`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import cast

import datasets

from tuning.settings import SHARED_ENV, DataConfig, data_problems, shared_dir

CANONICAL = ("sentence1", "sentence2", "label", "binary_label")
_DTYPES = ("string", "string", "float32", "int64")
FEATURES = datasets.Features({key: datasets.Value(t) for key, t in zip(CANONICAL, _DTYPES)})
KORSTS_HEADER = ("genre", "filename", "year", "id", "score", "sentence1", "sentence2")
_ACCEPTED = (
    "each pair needs non-empty sentence1 and sentence2, a label that is a number in 0-5 "
    "and, if given, a binary_label of 0 or 1"
)
_MAX_LISTED = 20
_MISSING = object()
_NAMES = dict(zip(CANONICAL, CANONICAL))
"""Canonical name -> the name a file uses; the default is the canonical one."""


class DataError(ValueError):
    """A data file or data config problem a user can fix; message names file and line."""


class _BadRow(Exception):
    """One row's problems, joined; the caller adds where the row is."""


def _number(value: object) -> float | None:
    # bool is an int subclass, but `true` is no similarity score.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _canonical(values: Mapping[str, object], names: Mapping[str, str]) -> dict:
    """One canonical record from raw values keyed by canonical name; ``names`` are the file's."""
    errors: list[str] = []
    record: dict = {}
    for key in ("sentence1", "sentence2"):
        value = values.get(key, _MISSING)
        if value is _MISSING:
            errors.append(f"missing field {names[key]}")
        elif not isinstance(value, str):
            errors.append(f"{names[key]} is not text: {value!r}")
        elif not value.strip():
            errors.append(f"{names[key]} is empty")
        else:
            record[key] = value.strip()
    label, number = values.get("label", _MISSING), _number(values.get("label"))
    if label is _MISSING:
        errors.append(f"missing field {names['label']}")
    elif number is None:
        errors.append(f"{names['label']} {label!r} is not a number")
    elif not 0.0 <= number <= 5.0:  # also false for NaN
        errors.append(f"{names['label']} {label!r} is outside 0-5")
    else:
        record["label"] = number
    binary = values.get("binary_label", _MISSING)
    if binary is not _MISSING and _number(binary) not in (0.0, 1.0):
        errors.append(f"{names['binary_label']} {binary!r} is not 0 or 1")
    elif "label" in record:
        given = binary is not _MISSING
        record["binary_label"] = int(cast(float, _number(binary))) if given else int(record["label"] >= 3.0)
    if errors:
        raise _BadRow("; ".join(errors))
    return record


def _finish(origin: str, records: list[dict], problems: list[str]) -> list[dict]:
    """Return the records, or raise one DataError listing every bad row (or saying none were found)."""
    if problems:
        listed = [f"  {problem}" for problem in problems[:_MAX_LISTED]]
        if len(problems) > _MAX_LISTED:
            listed.append(f"  ... and {len(problems) - _MAX_LISTED} more")
        head = f"{len(problems)} bad row(s) in {origin}; {_ACCEPTED}:"
        raise DataError("\n".join([head, *listed]))
    if not records:
        raise DataError(f"{origin}: no sentence pairs found; {_ACCEPTED}.")
    return records


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(
            f"{path}: no such data file. If it is shared data, set {SHARED_ENV} to the folder that "
            f"holds data/ (now {shared_dir()}); otherwise pass an existing file (--data, or "
            "train/validation/test in the data config)."
        ) from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}): {err.reason}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the data file: {err.strerror}") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty; {_ACCEPTED}.")
    return text


def _table(
    path: Path, rows: Iterator[tuple[int, list[str]]], names: dict, required: tuple, hint: str
) -> list[dict]:
    """Records from (line number, fields) rows, the first of which is the header."""
    line, header = next(rows)
    missing = [names[key] for key in required if names[key] not in header]
    if missing:
        raise DataError(f"{path}:{line}: the header lacks column(s) {missing}; it has {header}. {hint}")
    at = {key: header.index(names[key]) for key in CANONICAL if names[key] in header}
    records: list[dict] = []
    problems: list[str] = []
    for line, fields in rows:
        try:
            if len(fields) != len(header):
                raise _BadRow(f"{len(fields)} fields, expected {len(header)} as in the header")
            records.append(_canonical({key: fields[i] for key, i in at.items()}, names))
        except _BadRow as err:
            problems.append(f"{path}:{line}: {err}")
    return _finish(str(path), records, problems)


def _read_korsts_tsv(path: Path, columns: Mapping[str, str]) -> list[dict]:
    """KorSTS TSV; split on tabs only, because a quote-aware reader joins lines at a stray `"`."""
    lines = (line.rstrip("\r") for line in _read_text(path).split("\n"))
    rows = ((number, line.split("\t")) for number, line in enumerate(lines, 1) if line)
    hint = f"Expected the tab-separated KorSTS header: {' '.join(KORSTS_HEADER)}."
    return _table(path, rows, _NAMES | {"label": "score"}, CANONICAL[:3], hint)


def _read_csv(path: Path, columns: Mapping[str, str]) -> list[dict]:
    """CSV with a header; ``columns`` maps canonical names to the file's column names."""
    unknown = sorted(set(columns) - set(CANONICAL))
    if unknown:
        raise DataError(f"unknown key(s) {unknown} in data columns; accepted: {list(CANONICAL)}.")
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))

    def rows() -> Iterator[tuple[int, list[str]]]:
        end = 0
        for row in reader:
            # A quoted field may span lines: name the line the row starts on.
            start, end = end + 1, reader.line_num
            if row:
                yield start, row

    # A binary_label column is optional unless the config names one.
    required = CANONICAL if "binary_label" in columns else CANONICAL[:3]
    hint = f"Map {list(CANONICAL)} to the file's column names with the data config's `columns`."
    try:
        return _table(path, rows(), _NAMES | dict(columns), required, hint)
    except csv.Error as err:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV: {err}") from None


def _read_klue_json(path: Path, columns: Mapping[str, str]) -> list[dict]:
    """A JSON list of records in the official KLUE-STS shape (see ``from_klue_records``)."""
    try:
        records = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}. Expected a JSON list of "
            "KLUE-STS records (sentence1, sentence2, labels: {label, binary-label})."
        ) from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of KLUE-STS records, not {type(records).__name__}.")
    return from_klue_records(records, str(path))


def from_klue_records(records: Iterable[dict], origin: str) -> list[dict]:
    """Convert records in the official KLUE-STS shape into canonical records.

    Args:
        records: Records with ``sentence1``, ``sentence2`` and ``labels: {label, real-label,
            binary-label}``: the local KLUE JSON and the Hub's ``klue/klue`` ``sts`` rows alike.
        origin: Where they came from, for error messages.

    Returns:
        Canonical records, in order; ``binary_label`` is ``labels.binary-label`` when present.
    """
    names = _NAMES | {"label": "labels.label", "binary_label": "labels.binary-label"}
    canonical: list[dict] = []
    problems: list[str] = []
    for index, raw in enumerate(records):
        where = f"{origin} record {index}"
        try:
            if not isinstance(raw, Mapping):
                raise _BadRow(f"not an object but {type(raw).__name__}")
            where += f" (guid {raw['guid']})" if "guid" in raw else ""
            labels = raw.get("labels")
            if not isinstance(labels, Mapping):
                raise _BadRow("missing field labels (an object with label, binary-label)")
            values = {key: raw[key] for key in ("sentence1", "sentence2") if key in raw}
            if "label" in labels:
                values["label"] = labels["label"]
            if "binary-label" in labels:
                values["binary_label"] = labels["binary-label"]
            canonical.append(_canonical(values, names))
        except _BadRow as err:
            problems.append(f"{where}: {err}")
    return _finish(origin, canonical, problems)


FORMATS: dict[str, Callable[..., list[dict]]] = {
    "klue_json": _read_klue_json,
    "korsts_tsv": _read_korsts_tsv,
    "csv": _read_csv,
}
"""Data formats: name -> reader(path, columns) returning canonical records."""
_EXTENSIONS = {".json": "klue_json", ".tsv": "korsts_tsv", ".csv": "csv"}


def read_pairs(path: str | Path, fmt: str | None = None, columns: dict[str, str] | None = None) -> list[dict]:
    """Read one file into canonical records.

    Args:
        path: The data file.
        fmt: A name in ``FORMATS``; ``None`` infers it from the extension (``.json`` -> klue_json,
            ``.tsv`` -> korsts_tsv, ``.csv`` -> csv).
        columns: CSV column names, canonical -> file; other formats have fixed fields.

    Returns:
        ``{"sentence1": str, "sentence2": str, "label": float, "binary_label": int}`` per pair.
    """
    path = Path(path)
    if fmt is None and path.suffix.lower() not in _EXTENSIONS:
        raise DataError(
            f"{path}: cannot infer the data format from the extension {path.suffix!r}; known "
            f"extensions: {sorted(_EXTENSIONS)}, or set format to one of {sorted(FORMATS)}."
        )
    fmt = fmt or _EXTENSIONS[path.suffix.lower()]
    if fmt not in FORMATS:
        raise DataError(f"unknown data format {fmt!r}; known formats: {sorted(FORMATS)}.")
    return FORMATS[fmt](path, columns or {})


def _read(cfg: DataConfig, path: str) -> list[dict]:
    """A file the config names, read with the config's format and columns."""
    return read_pairs(path, cfg.format, cfg.columns)


def _extra_tests(cfg: DataConfig) -> dict[str, list[dict]]:
    return {name: _read(cfg, path) for name, path in cfg.extra_test.items()}


def _hold_out(records: list[dict], cfg: DataConfig, origin: str) -> dict[str, list[dict]]:
    """Split records into train and validation, seeded by ``cfg.split_seed``; file order is kept."""
    size = max(1, round(len(records) * cfg.validation_fraction))
    if size >= len(records):
        raise DataError(
            f"{origin}: cannot hold out validation_fraction={cfg.validation_fraction} of only "
            f"{len(records)} pair(s) and keep some for training; give a validation file."
        )
    held = set(random.Random(cfg.split_seed).sample(range(len(records)), size))
    train = [record for i, record in enumerate(records) if i not in held]
    return {"train": train, "validation": [records[i] for i in sorted(held)]}


def _korsts(cfg: DataConfig) -> dict[str, list[dict]]:
    """KorSTS train/dev/test, plus KLUE-STS dev as an out-of-domain test set."""
    data = shared_dir() / "data"
    preset = {"train": "sts-train.tsv", "validation": "sts-dev.tsv", "test": "sts-test.tsv"}
    given = {"train": cfg.train, "validation": cfg.validation, "test": cfg.test}
    splits = {
        name: _read(cfg, path) if (path := given[name]) else read_pairs(data / "korsts" / file)
        for name, file in preset.items()
    }
    if cfg.extra_test:
        return splits | _extra_tests(cfg)
    return splits | {"klue_dev": read_pairs(data / "klue-sts" / "klue-sts-v1.1_dev.json")}


def _klue_hub(cfg: DataConfig) -> dict[str, list[dict]]:
    """The Hub's KLUE-STS: its train split held out into train/validation, its validation is test."""
    try:
        hub = datasets.load_dataset("klue/klue", "sts")
    # Offline, datasets raises connection, HTTP, file-not-found or its own errors, by version.
    except Exception as err:
        raise DataError(
            f"cannot load klue/klue (sts) from the Hugging Face Hub, which may be unreachable "
            f"({type(err).__name__}: {err}). Offline, use `source: files` with local KLUE-STS "
            f"JSON (e.g. {shared_dir() / 'data' / 'klue-sts'}) or the `korsts` preset."
        ) from err
    train = from_klue_records(hub["train"], "klue/klue sts train")
    test = from_klue_records(hub["validation"], "klue/klue sts validation")
    return _hold_out(train, cfg, "klue/klue sts train") | {"test": test} | _extra_tests(cfg)


def _files(cfg: DataConfig) -> dict[str, list[dict]]:
    """The files the config names; validation is held out of train when there is no file."""
    train_file = cast(str, cfg.train)  # required for `source: files` (validate_data)
    train = _read(cfg, train_file)
    if cfg.validation:
        splits = {"train": train, "validation": _read(cfg, cfg.validation)}
    else:
        splits = _hold_out(train, cfg, train_file)
    if cfg.test:
        splits["test"] = _read(cfg, cfg.test)
    return splits | _extra_tests(cfg)


SOURCES: dict[str, Callable[[DataConfig], dict[str, list[dict]]]] = {
    "korsts": _korsts,
    "klue-sts": _klue_hub,
    "files": _files,
}
"""Where pairs come from: ``DataConfig.source`` -> loader returning records per split."""


def _check(cfg: DataConfig) -> None:
    """Raise one DataError listing every problem of the data config (the rules the settings
    declare, in the words ``validate`` uses: a config built without it is refused alike)."""
    problems = data_problems(cfg)
    if problems:
        raise DataError("invalid data config:\n" + "\n".join(f"  {p}" for p in problems))


def _subset(records: list[dict], size: int | None, seed: int, split: str) -> list[dict]:
    if size is None:
        return records
    if size > len(records):
        raise DataError(
            f"{split}_size={size}, but the {split} split has only {len(records)} pairs; "
            f"lower {split}_size or unset it to use all."
        )
    return [records[i] for i in sorted(random.Random(seed).sample(range(len(records)), size))]


def pair_key(record: dict) -> tuple[str, str]:
    """A pair by its content, the order of its sentences and outer whitespace ignored."""
    first, second = record["sentence1"].strip(), record["sentence2"].strip()
    return (first, second) if first <= second else (second, first)


def hold_out_selection(splits: dict[str, list[dict]]) -> dict[str, int]:
    """Drop from every test split the pairs validation holds (they pick trials and stop them:
    a score on them is not held out); returns the pairs dropped per split."""
    used = {pair_key(r) for r in splits["validation"]}
    dropped = {}
    for name in [n for n in splits if n not in ("train", "validation")]:
        kept = [r for r in splits[name] if pair_key(r) not in used]
        if len(kept) < len(splits[name]):
            dropped[name] = len(splits[name]) - len(kept)
            splits[name] = kept
    return dropped


def load_splits(cfg: DataConfig) -> datasets.DatasetDict:
    """Load the splits ``cfg`` describes.

    A test split never holds a pair of the validation split (by content: the profile scores
    KorSTS dev's pairs that validation did not draw, ``korsts_dev_heldout``); the pairs dropped
    are printed.

    Returns:
        Splits ``train``, ``validation``, ``test`` (absent when there is no test file) and one per
        extra test set, each with columns sentence1, sentence2, label (float32, 0-5) and
        binary_label (int64, 0/1).
    """
    _check(cfg)
    splits = SOURCES[cfg.source](cfg)
    for split, size in (("train", cfg.train_size), ("validation", cfg.validation_size)):
        splits[split] = _subset(splits[split], size, cfg.split_seed, split)
    for name, n in hold_out_selection(splits).items():
        print(f"[data] {name}: {n} pairs left out, validation holds them (held-out scores only)", flush=True)
        if not splits[name]:
            raise DataError(f"test split {name}: every pair is also in validation; name another file.")
    dataset = datasets.Dataset.from_list
    return datasets.DatasetDict({k: dataset(v, features=FEATURES) for k, v in splits.items()})


def fingerprint(splits: datasets.DatasetDict) -> str:
    """A short stable digest of the pairs: sha256 over every split in name order, 16 hex chars."""
    digest = hashlib.sha256()
    for name in sorted(splits):
        digest.update(json.dumps(name).encode())
        columns = splits[name].to_dict()
        for row in zip(*(columns[key] for key in CANONICAL), strict=True):
            digest.update(json.dumps(row, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]
