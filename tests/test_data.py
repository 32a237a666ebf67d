"""Tests of tuning.data: every format, every bad-row class, the splits, subsets and the fingerprint."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import datasets
import pytest

from tuning.data import (
    FORMATS,
    DataError,
    fingerprint,
    from_klue_records,
    load_splits,
    read_pairs,
)
from tuning.settings import REPO_ROOT, ConfigError, DataConfig, ExperimentConfig, shared_dir, validate

# The third pair has an unbalanced `"`, as KorSTS lines do: a quote-aware reader would join lines.
PAIRS = [
    ("비행기가 이륙하고 있다.", "비행기가 이륙하고 있다.", 5.0),
    ("한 남자가 큰 플루트를 연주하고 있다.", "남자가 플루트를 연주하고 있다.", 3.0),
    ('"6명 중 10명은 아마도 5 : 50을 의미한다.', "나는 전에 그것을 듣지 못했다.", 2.5),
    ("한 여자가 양파를 썰고 있다.", "한 남자가 두부를 자르고 있다.", 0.0),
]
EXPECTED = [
    {"sentence1": s1, "sentence2": s2, "label": label, "binary_label": int(label >= 3.0)}
    for s1, s2, label in PAIRS
]
TSV_HEADER = "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\n"


def tsv_row(score: str, s1: str = "남자가 말을 탄다.", s2: str = "사람이 말을 탄다.") -> str:
    return f"main-captions\tMSRvid\t2012test\t0001\t{score}\t{s1}\t{s2}\n"


def klue_record(s1: str, s2: str, label: float, index: int = 0, **labels: object) -> dict:
    """A record in the official KLUE-STS shape (local JSON and Hub rows alike)."""
    return {
        "guid": f"klue-sts-v1_dev_{index:05d}",
        "source": "airbnb-rtt",
        "sentence1": s1,
        "sentence2": s2,
        "labels": {"label": label, "real-label": label, "binary-label": int(label >= 3.0)} | labels,
    }


def write_tsv(path: Path, pairs: list[tuple[str, str, float]]) -> Path:
    path.write_text(TSV_HEADER + "".join(tsv_row(f"{lab:.3f}", s1, s2) for s1, s2, lab in pairs))
    return path


def write_csv(path: Path, pairs: list[tuple[str, str, float]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence1", "sentence2", "label"])
        writer.writerows(pairs)
    return path


def write_json(path: Path, pairs: list[tuple[str, str, float]]) -> Path:
    records = [klue_record(s1, s2, label, i) for i, (s1, s2, label) in enumerate(pairs)]
    path.write_text(json.dumps(records, ensure_ascii=False, indent=4), encoding="utf-8")
    return path


WRITERS = {
    "klue_json": (".json", write_json),
    "korsts_tsv": (".tsv", write_tsv),
    "csv": (".csv", write_csv),
}


def numbered_pairs(n: int) -> list[tuple[str, str, float]]:
    return [(f"문장 {i}번은 짧다.", f"문장 {i}번은 길다.", (i % 11) * 0.5) for i in range(n)]


def pairs_of(split: datasets.Dataset) -> set[tuple[str, str]]:
    return set(zip(split["sentence1"], split["sentence2"], strict=True))


# --- reading files --------------------------------------------------------------------------


def test_every_format_has_a_fixture_writer() -> None:
    assert set(FORMATS) == set(WRITERS)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_reads_exact_canonical_records(tmp_path: Path, fmt: str) -> None:
    suffix, write = WRITERS[fmt]
    path = write(tmp_path / f"pairs{suffix}", PAIRS)
    assert read_pairs(path) == EXPECTED
    # An explicit format needs no extension.
    assert read_pairs(path.rename(tmp_path / "pairs.txt"), fmt) == EXPECTED


def test_sentences_are_stripped_and_crlf_lines_read(tmp_path: Path) -> None:
    path = tmp_path / "crlf.tsv"
    path.write_text(
        (TSV_HEADER + tsv_row("4.2", "  남자가 말을 탄다. ", "사람이 말을 탄다.")).replace("\n", "\r\n")
    )
    assert read_pairs(path) == [
        {
            "sentence1": "남자가 말을 탄다.",
            "sentence2": "사람이 말을 탄다.",
            "label": 4.2,
            "binary_label": 1,
        }
    ]


def test_binary_label_is_derived_at_three(tmp_path: Path) -> None:
    path = tmp_path / "edge.tsv"
    path.write_text(TSV_HEADER + tsv_row("2.99") + tsv_row("3.0"))
    assert [record["binary_label"] for record in read_pairs(path)] == [0, 1]


def test_binary_label_is_taken_from_the_file_when_given(tmp_path: Path) -> None:
    # Given values win even where they disagree with label >= 3, to show they are not re-derived.
    csv_path = tmp_path / "given.csv"
    csv_path.write_text("a,b,score,bin\n가,나,2.0,1\n다,라,4.0,0\n", encoding="utf-8")
    columns = {"sentence1": "a", "sentence2": "b", "label": "score", "binary_label": "bin"}
    assert [r["binary_label"] for r in read_pairs(csv_path, columns=columns)] == [1, 0]
    json_path = tmp_path / "given.json"
    json_path.write_text(json.dumps([klue_record("가", "나", 2.0, **{"binary-label": 1})]))
    assert read_pairs(json_path)[0]["binary_label"] == 1


def test_csv_column_mapping_and_quoted_fields(tmp_path: Path) -> None:
    path = tmp_path / "mapped.csv"
    path.write_text('left,right,score\n"가, 나","다 ""라""",1.5\n', encoding="utf-8")
    columns = {"sentence1": "left", "sentence2": "right", "label": "score"}
    assert read_pairs(path, columns=columns) == [
        {"sentence1": "가, 나", "sentence2": '다 "라"', "label": 1.5, "binary_label": 0}
    ]


def test_from_klue_records_reads_hub_shaped_rows() -> None:
    rows = datasets.Dataset.from_list(
        [
            klue_record("숙소 위치는 찾기 쉽다.", "숙소는 쉽게 찾을 수 있다.", 3.7, 0),
            klue_record("방이 좁았다.", "직원이 친절했다.", 0.2, 1),
        ]
    )
    assert from_klue_records(rows, "klue/klue sts train") == [
        {
            "sentence1": "숙소 위치는 찾기 쉽다.",
            "sentence2": "숙소는 쉽게 찾을 수 있다.",
            "label": 3.7,
            "binary_label": 1,
        },
        {
            "sentence1": "방이 좁았다.",
            "sentence2": "직원이 친절했다.",
            "label": 0.2,
            "binary_label": 0,
        },
    ]


def test_from_klue_records_names_origin_and_record_of_a_bad_row() -> None:
    with pytest.raises(DataError, match=r"klue/klue sts train record 1 \(guid klue-sts-v1_dev_00001\)"):
        from_klue_records(
            [klue_record("가", "나", 1.0, 0), klue_record("가", "", 1.0, 1)], "klue/klue sts train"
        )


# --- bad rows: each class names the file, the line (or record) and what was wrong -----------

JSON_OK = klue_record("가", "나", 1.0, 0)
JSON_NO_SENTENCE2 = {k: v for k, v in klue_record("가", "나", 1.0, 1).items() if k != "sentence2"}
JSON_NO_LABEL = klue_record("가", "나", 1.0, 0) | {"labels": {"binary-label": 0}}
BAD_ROWS = {
    "missing field": (
        "x.json",
        json.dumps([JSON_OK, JSON_NO_SENTENCE2]),
        " record 1 (guid klue-sts-v1_dev_00001): missing field sentence2",
    ),
    "missing label": (
        "x.json",
        json.dumps([JSON_NO_LABEL]),
        " record 0 (guid klue-sts-v1_dev_00000): missing field labels.label",
    ),
    "not a number": (
        "x.tsv",
        TSV_HEADER + tsv_row("2.0") + tsv_row("abc"),
        ":3: score 'abc' is not a number",
    ),
    "empty label": ("x.csv", "sentence1,sentence2,label\n가,나,\n", ":2: label '' is not a number"),
    "above 5": ("x.tsv", TSV_HEADER + tsv_row("5.5"), ":2: score '5.5' is outside 0-5"),
    "below 0": ("x.tsv", TSV_HEADER + tsv_row("-0.1"), ":2: score '-0.1' is outside 0-5"),
    "nan": ("x.tsv", TSV_HEADER + tsv_row("nan"), ":2: score 'nan' is outside 0-5"),
    "json above 5": (
        "x.json",
        json.dumps([klue_record("가", "나", 5.5)]),
        " record 0 (guid klue-sts-v1_dev_00000): labels.label 5.5 is outside 0-5",
    ),
    "empty sentence": ("x.tsv", TSV_HEADER + tsv_row("1.0", s1="   "), ":2: sentence1 is empty"),
    "tsv field count": (
        "x.tsv",
        TSV_HEADER + tsv_row("1.0") + "a\tb\t1.0\t가\t나\n",
        ":3: 5 fields, expected 7",
    ),
    "tsv tab inside a sentence": (
        "x.tsv",
        TSV_HEADER + tsv_row("1.0", s1="남자가\t말을 탄다."),
        ":2: 8 fields, expected 7",
    ),
    "csv field count": ("x.csv", "sentence1,sentence2,label\n가,나\n", ":2: 2 fields, expected 3"),
    "binary not 0/1": (
        "x.csv",
        "sentence1,sentence2,label,binary_label\n가,나,1.0,2\n",
        ":2: binary_label '2' is not 0 or 1",
    ),
    "header lacks column": (
        "x.csv",
        "sentence1,sentence2,score\n가,나,1.0\n",
        ":1: the header lacks column(s) ['label']",
    ),
    "tsv header lacks column": (
        "x.tsv",
        "a\tb\tc\n1\t2\t3\n",
        ":1: the header lacks column(s) ['sentence1', 'sentence2', 'score']",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_ROWS))
def test_bad_row_raises_naming_file_and_line(tmp_path: Path, name: str) -> None:
    file_name, text, where_what = BAD_ROWS[name]
    path = tmp_path / file_name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_pairs(path)
    assert f"{path}{where_what}" in str(caught.value)


def test_invalid_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"sentence1": "가"}\n  {"sentence1": "나"}\n]\n')
    with pytest.raises(DataError, match=r"broken\.json:3:3: invalid JSON: Expecting ',' delimiter"):
        read_pairs(path)


def test_json_that_is_not_a_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "object.json"
    path.write_text(json.dumps(JSON_OK))
    with pytest.raises(DataError, match=r"object\.json: expected a JSON list"):
        read_pairs(path)


def test_all_bad_rows_are_listed_in_one_error(tmp_path: Path) -> None:
    path = tmp_path / "many.tsv"
    path.write_text(
        TSV_HEADER + tsv_row("1.0") + tsv_row("x") + tsv_row("2.0") + tsv_row("9") + tsv_row("1.0", s2="")
    )
    with pytest.raises(DataError) as caught:
        read_pairs(path)
    message = str(caught.value)
    assert message.startswith(f"3 bad row(s) in {path}")
    assert f"{path}:3: score 'x'" in message
    assert f"{path}:5: score '9'" in message
    assert f"{path}:6: sentence2 is empty" in message


def test_a_long_listing_is_capped(tmp_path: Path) -> None:
    path = tmp_path / "worse.tsv"
    path.write_text(TSV_HEADER + tsv_row("bad") * 25)  # lines 2-26
    with pytest.raises(DataError) as caught:
        read_pairs(path)
    message = str(caught.value)
    assert f"{path}:21:" in message and f"{path}:22:" not in message
    assert message.endswith("... and 5 more")


def test_unknown_format_lists_the_known_ones(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "pairs.tsv", PAIRS)
    with pytest.raises(
        DataError,
        match=r"unknown data format 'xlsx'; known formats: \['csv', 'klue_json', 'korsts_tsv'\]",
    ):
        read_pairs(path, "xlsx")


def test_unknown_extension_lists_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("가\t나\n")
    with pytest.raises(
        DataError,
        match=r"pairs\.txt: cannot infer .* '\.txt'; known extensions: \['\.csv', '\.json', '\.tsv'\]",
    ):
        read_pairs(path)


def test_missing_file_names_the_path_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.tsv"
    with pytest.raises(DataError, match=rf"{path}: no such data file\. .*KLUE_TUNE_SHARED.*--data"):
        read_pairs(path)


@pytest.mark.parametrize(
    ("file_name", "text", "what"),
    [
        ("empty.tsv", "", "the file is empty"),
        ("empty.json", " \n", "the file is empty"),
        ("empty.csv", "", "the file is empty"),
        ("header.tsv", TSV_HEADER, "no sentence pairs found"),
        ("header.csv", "sentence1,sentence2,label\n", "no sentence pairs found"),
        ("list.json", "[]", "no sentence pairs found"),
    ],
)
def test_a_file_without_pairs_is_an_error(tmp_path: Path, file_name: str, text: str, what: str) -> None:
    path = tmp_path / file_name
    path.write_text(text)
    with pytest.raises(DataError, match=rf"{path}: {what}"):
        read_pairs(path)


# --- splits ---------------------------------------------------------------------------------


def files_config(tmp_path: Path, n: int = 20, **overrides: object) -> DataConfig:
    train = write_tsv(tmp_path / "train.tsv", numbered_pairs(n))
    return DataConfig(source="files", train=str(train), **overrides)


def test_files_with_validation_and_test_files(tmp_path: Path) -> None:
    validation = write_csv(tmp_path / "validation.csv", PAIRS[:2])
    test = write_json(tmp_path / "test.json", PAIRS)
    splits = load_splits(files_config(tmp_path, validation=str(validation), test=str(test)))
    assert {name: len(split) for name, split in splits.items()} == {
        "train": 20,
        "validation": 2,
        "test": 2,  # PAIRS less the 2 validation holds: a test score is on held-out pairs only
    }
    assert splits["test"].features == datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": datasets.Value("float32"),
            "binary_label": datasets.Value("int64"),
        }
    )
    assert splits["test"].to_list() == EXPECTED[2:]  # labels here are exact in float32


def test_files_without_validation_hold_out_a_seeded_fraction(tmp_path: Path) -> None:
    cfg = files_config(tmp_path, validation_fraction=0.25, split_seed=7)
    splits = load_splits(cfg)
    assert set(splits) == {"train", "validation"}  # no test file, no test split
    assert (len(splits["train"]), len(splits["validation"])) == (15, 5)
    assert pairs_of(splits["train"]).isdisjoint(pairs_of(splits["validation"]))
    all_pairs = {(s1, s2) for s1, s2, _ in numbered_pairs(20)}
    assert pairs_of(splits["train"]) | pairs_of(splits["validation"]) == all_pairs
    assert load_splits(cfg)["validation"].to_list() == splits["validation"].to_list()
    other = load_splits(files_config(tmp_path, validation_fraction=0.25, split_seed=8))
    assert pairs_of(other["validation"]) != pairs_of(splits["validation"])


def test_extra_test_sets_become_splits(tmp_path: Path) -> None:
    klue = write_json(tmp_path / "klue.json", PAIRS)
    splits = load_splits(files_config(tmp_path, extra_test={"klue_dev": str(klue)}))
    assert list(splits) == ["train", "validation", "klue_dev"]
    assert len(splits["klue_dev"]) == 4


def test_subsets_are_seeded_and_drawn_from_the_split(tmp_path: Path) -> None:
    full = load_splits(files_config(tmp_path, n=40))
    cfg = files_config(tmp_path, n=40, train_size=10, validation_size=2)
    small = load_splits(cfg)
    assert (len(small["train"]), len(small["validation"])) == (10, 2)
    assert pairs_of(small["train"]) < pairs_of(full["train"])
    assert pairs_of(small["validation"]) < pairs_of(full["validation"])
    assert load_splits(cfg)["train"].to_list() == small["train"].to_list()


def test_a_subset_larger_than_the_split_says_how_many_there_are(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train_size=100, but the train split has only 18 pairs"):
        load_splits(files_config(tmp_path, train_size=100))


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"source": "hub"}, r"data.source must be one of \['files', 'klue-sts', 'korsts'\], got 'hub'"),
        ({"train": None}, r"data.source 'files' needs a train file"),
        ({"validation_fraction": 0.0}, r"data.validation_fraction must be in \(0, 1\), got 0\.0"),
        ({"validation_fraction": 1.0}, r"data.validation_fraction must be in \(0, 1\), got 1\.0"),
        ({"train_size": 0}, r"data.train_size must be >= 1 or null, got 0"),
        ({"extra_test": {"test": "t.tsv"}}, r"data.extra_test names \['test'\] clash"),
    ],
)
def test_an_invalid_config_is_refused(tmp_path: Path, overrides: dict, problem: str) -> None:
    """The data loader and ``validate`` refuse a data config in the same words (the rules are
    declared once, on the fields)."""
    cfg = dataclasses.replace(files_config(tmp_path), **overrides)
    with pytest.raises(DataError, match=problem):
        load_splits(cfg)
    with pytest.raises(ConfigError, match=problem):
        validate(ExperimentConfig(data=cfg))


def test_all_config_problems_are_listed_at_once(tmp_path: Path) -> None:
    cfg = DataConfig(source="files", validation_fraction=2.0, validation_size=-1)
    with pytest.raises(DataError) as caught:
        load_splits(cfg)
    assert str(caught.value).count("\n  ") == 3


def test_klue_hub_unreachable_says_what_to_use_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach 'klue/klue' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"Hugging Face Hub.*unreachable.*`source: files`.*`korsts`"):
        load_splits(DataConfig(source="klue-sts"))


def test_klue_hub_train_is_split_and_its_validation_is_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def rows(n: int, skip: int = 0) -> datasets.Dataset:
        pairs = numbered_pairs(n + skip)[skip:]  # the Hub's splits share no pair
        return datasets.Dataset.from_list(
            [klue_record(s1, s2, lab, i) for i, (s1, s2, lab) in enumerate(pairs)]
        )

    def hub(*args: object, **kwargs: object) -> datasets.DatasetDict:
        assert args == ("klue/klue", "sts")
        return datasets.DatasetDict({"train": rows(30), "validation": rows(5, skip=30)})

    monkeypatch.setattr(datasets, "load_dataset", hub)
    splits = load_splits(DataConfig(source="klue-sts"))
    assert {name: len(split) for name, split in splits.items()} == {
        "train": 27,
        "validation": 3,
        "test": 5,
    }


def test_korsts_preset_takes_an_explicit_train_file(tmp_path: Path) -> None:
    train = write_tsv(tmp_path / "mine.tsv", PAIRS)
    splits = load_splits(DataConfig(train=str(train)))
    assert splits["train"].to_list() == EXPECTED
    assert len(splits["validation"]) == 1500


def test_korsts_preset_without_shared_data_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KLUE_TUNE_SHARED", str(tmp_path))
    with pytest.raises(DataError, match=r"sts-train\.tsv: no such data file\. .*KLUE_TUNE_SHARED"):
        load_splits(DataConfig())


# --- fingerprint ----------------------------------------------------------------------------


def test_fingerprint_is_stable_for_the_same_data(tmp_path: Path) -> None:
    first = fingerprint(load_splits(files_config(tmp_path)))
    assert first == fingerprint(load_splits(files_config(tmp_path)))
    assert len(first) == 16 and int(first, 16) >= 0


@pytest.mark.parametrize(
    "new_pair",
    [
        ("문장 3번은 짧다.", "문장 3번은 길다.", 2.0),
        ("문장 3번은 짧다!", "문장 3번은 길다.", 1.5),
        ("문장 3번은 길다.", "문장 3번은 짧다.", 1.5),
    ],
    ids=["label", "sentence", "swapped sentences"],
)
def test_fingerprint_changes_with_any_pair(tmp_path: Path, new_pair: tuple) -> None:
    pairs = numbered_pairs(20)
    assert pairs[3] == ("문장 3번은 짧다.", "문장 3번은 길다.", 1.5)
    before = fingerprint(load_splits(files_config(tmp_path)))
    pairs[3] = new_pair
    write_tsv(tmp_path / "train.tsv", pairs)
    cfg = DataConfig(source="files", train=str(tmp_path / "train.tsv"))
    assert fingerprint(load_splits(cfg)) != before


# --- the real shared files ------------------------------------------------------------------


def test_korsts_preset_loads_the_shared_files() -> None:
    splits = load_splits(DataConfig())
    assert {name: len(split) for name, split in splits.items()} == {
        "train": 5749,
        "validation": 1500,
        "test": 1371,  # sts-test.tsv's 1,379 less 8 pairs sts-dev.tsv (validation here) has too
        "klue_dev": 519,
    }
    for split in splits.values():
        labels = split["label"]
        assert min(labels) >= 0.0 and max(labels) <= 5.0
        assert split["binary_label"] == [int(label >= 3.0) for label in labels]
    klue = read_pairs(shared_dir() / "data" / "klue-sts" / "klue-sts-v1.1_dev.json")
    assert klue[0] == {
        "sentence1": "무엇보다도 호스트분들이 너무 친절하셨습니다.",
        "sentence2": "무엇보다도, 호스트들은 매우 친절했습니다.",
        "label": 4.9,
        "binary_label": 1,
    }


def test_the_cpu_profiles_test_splits_hold_no_validation_pair(shared) -> None:
    """Held out means held out: no scored pair was used to pick or stop trials (issue 25),
    checked by pair content on the profile's own data config."""
    from tuning.data import load_splits, pair_key
    from tuning.settings import load_experiment

    exp = load_experiment(REPO_ROOT / "search_spaces" / "cpu" / "optuna.yaml")
    splits = load_splits(exp.data)
    validation = {pair_key(r) for r in splits["validation"]}
    assert len(splits["validation"]) == 500 and len(validation) == 499  # sts-dev.tsv repeats a pair
    tests = [name for name in splits if name not in ("train", "validation")]
    assert set(tests) == {"test", "korsts_dev_heldout", "klue_dev"}
    for name in tests:
        assert not validation & {pair_key(r) for r in splits[name]}, name
    # sts-dev.tsv less the 502 rows whose pair validation holds; KorSTS test less 4 such pairs.
    assert (len(splits["korsts_dev_heldout"]), len(splits["test"]), len(splits["klue_dev"])) == (
        998,
        1375,
        519,
    )


def test_a_test_file_that_repeats_validation_pairs_loses_them(tmp_path) -> None:
    from tuning.data import load_splits

    rows = [(f"문장 {i} 가", f"문장 {i} 나", i % 6) for i in range(40)]

    def write(name: str, part: list) -> str:
        path = tmp_path / name
        path.write_text(
            "sentence1,sentence2,label\n" + "".join(f"{a},{b},{s}\n" for a, b, s in part), encoding="utf-8"
        )
        return str(path)

    cfg = DataConfig(
        source="files",
        train=write("train.csv", rows[:20]),
        validation=write("dev.csv", rows[20:30]),
        test=write("test.csv", [(b, a, s) for a, b, s in rows[25:40]]),  # 5 repeat validation, reversed
    )
    splits = load_splits(cfg)
    assert len(splits["test"]) == 10
