"""Tests of tuning.settings: parsing, coercion, ${SHARED}, file errors, validation, shipped files,
the flags generated from the fields, and the stored config --resume reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuning.settings import (
    SECTIONS,
    SHARED_ENV,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    FieldKind,
    SearchConfig,
    TrainingConfig,
    apply_overrides,
    config_flags,
    experiment_from_dict,
    field_docs,
    field_kinds,
    field_label,
    field_names,
    flag_value,
    load_experiment,
    make_smoke,
    parse_experiment,
    read_number,
    resource_problems,
    shared_dir,
    validate,
)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(REPO.glob("search_spaces/**/*.yaml"))


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- shipped files ---------------------------------------------------------------------------


def test_search_spaces_folder_ships_files() -> None:
    assert SHIPPED, "no search_spaces/**/*.yaml found"


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_shipped_file_loads_and_validates(path: Path) -> None:
    exp = load_experiment(path)
    validate(exp)
    assert exp.source_file == str(path)


# --- parse_experiment ------------------------------------------------------------------------


def test_empty_mapping_gives_defaults_named_after_source() -> None:
    exp = parse_experiment({}, "dir/my-space.yaml")
    assert exp.name == "my-space"
    assert exp.method == "optuna"
    assert exp.training == TrainingConfig()
    assert exp.space == {}
    assert exp.stages == []


def test_values_from_every_section_are_read() -> None:
    exp = parse_experiment(
        {
            "name": "x",
            "method": "grid",
            "description": "free text, ignored",
            "data": {"source": "files", "train": "t.tsv", "extra_test": {"klue": "k.json"}},
            "model": {"name_or_path": "builtin:tiny", "architecture": "bi", "num_hidden_layers": 2},
            "training": {"batch_size": 16, "standardize_targets": False},
            "search": {"metric": "f1", "gpus_per_trial": 0.5},
            "space": {"seed": 1},
            "stages": [{"name": "a", "space": {"seed": 2}}],
        }
    )
    assert (exp.name, exp.method) == ("x", "grid")
    assert (exp.data.source, exp.data.train, exp.data.extra_test) == ("files", "t.tsv", {"klue": "k.json"})
    assert (exp.model.architecture, exp.model.num_hidden_layers) == ("bi", 2)
    assert (exp.training.batch_size, exp.training.standardize_targets) == (16, False)
    assert (exp.search.metric, exp.search.gpus_per_trial) == ("f1", 0.5)
    assert exp.space == {"seed": 1}
    assert exp.stages == [{"name": "a", "space": {"seed": 2}}]


def test_top_level_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"f\.yaml: expected a YAML mapping at the top level, got list"):
        parse_experiment([1, 2], "f.yaml")  # type: ignore[arg-type]


def test_unknown_top_level_key_names_it_and_the_accepted_keys() -> None:
    with pytest.raises(ConfigError) as err:
        parse_experiment({"trainig": {}}, "f.yaml")
    message = str(err.value)
    assert "f.yaml: unknown top-level key 'trainig'" in message
    accepted = message.split("accepted keys: ", 1)[1].rstrip(".").split(", ")
    assert {"name", "method", "space", "stages", "data", "model", "training", "search"} <= set(accepted)


def test_unknown_section_key_names_it_and_lists_the_section_fields() -> None:
    with pytest.raises(ConfigError) as err:
        parse_experiment({"search": {"num_sample": 3}}, "f.yaml")
    message = str(err.value)
    assert "f.yaml: search: unknown key 'num_sample'" in message
    assert "accepted keys: metric, num_samples, searcher, scheduler," in message


def test_several_problems_are_reported_in_one_error() -> None:
    raw = {
        "bogus": 1,
        "model": {"archtecture": "bi"},
        "training": {"learning_rate": "fast", "batch_size": 2.5},
        "search": "asha",
        "space": [1],
        "stages": {"a": 1},
    }
    with pytest.raises(ConfigError) as err:
        parse_experiment(raw, "f.yaml")
    message = str(err.value)
    for expected in (
        "unknown top-level key 'bogus'",
        "model: unknown key 'archtecture'",
        "training: learning_rate must be a number",
        "training: batch_size must be a whole number, got 2.5",
        "search: expected a mapping of SearchConfig fields, got 'asha'",
        "space: expected a mapping of hyperparameter -> domain, got [1]",
        "stages: expected a list of {name, space} mappings",
    ):
        assert expected in message


def test_yaml_1_1_exponent_string_becomes_a_float(tmp_path: Path) -> None:
    # PyYAML (YAML 1.1) reads `1e-5` without a dot as the string "1e-5".
    exp = load_experiment(write(tmp_path, "training:\n  learning_rate: 1e-5\n  num_epochs: '3'\n"))
    assert exp.training.learning_rate == 1e-5
    assert isinstance(exp.training.learning_rate, float)
    assert exp.training.num_epochs == 3
    assert isinstance(exp.training.num_epochs, int)


def test_int_for_a_float_field_becomes_a_float() -> None:
    exp = parse_experiment({"training": {"weight_decay": 0}}, "f.yaml")
    assert exp.training.weight_decay == 0.0
    assert isinstance(exp.training.weight_decay, float)


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("training", "learning_rate", "fast", "training: learning_rate must be a number (float), got 'fast'"),
        ("training", "learning_rate", True, "training: learning_rate must be a number (float), got True"),
        ("training", "batch_size", 2.5, "training: batch_size must be a whole number, got 2.5"),
        ("training", "standardize_targets", "yes", "training: standardize_targets must be true or false"),
        ("training", "loss", 3, "training: loss must be a string, got 3"),
        ("data", "extra_test", ["a"], "data: extra_test must be a mapping, got ['a']"),
        ("training", "seed", None, "training: seed must be set (int), got null"),
    ],
    ids=["non-number", "bool-as-number", "non-whole-int", "non-bool", "non-string", "non-mapping", "null"],
)
def test_wrongly_typed_value_is_refused_naming_the_field(
    section: str, key: str, value: object, expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_experiment({section: {key: value}}, "f.yaml")
    assert f"f.yaml: {expected}" in str(err.value)


def test_null_for_an_optional_field_keeps_none() -> None:
    exp = parse_experiment({"data": {"train_size": None}, "search": {"max_concurrent_trials": None}})
    assert exp.data.train_size is None
    assert exp.search.max_concurrent_trials is None


def test_yaml_key_lambda_sets_mtl_lambda(tmp_path: Path) -> None:
    exp = load_experiment(write(tmp_path, "training:\n  lambda: 0.3\nspace:\n  lambda: 0.7\n"))
    assert exp.training.mtl_lambda == 0.3
    assert exp.space == {"mtl_lambda": 0.7}


# --- ${SHARED} and shared_dir ----------------------------------------------------------------


def test_shared_dir_reads_the_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SHARED_ENV, str(tmp_path))
    assert shared_dir() == tmp_path.resolve()


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_shared_dir_defaults_to_the_folder_beside_the_repo(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv(SHARED_ENV, raising=False)
    else:
        monkeypatch.setenv(SHARED_ENV, value)
    assert shared_dir() == (REPO.parent / "shared").resolve()


def test_shared_placeholder_is_expanded_in_sections_space_and_stages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(SHARED_ENV, str(tmp_path))
    root = str(tmp_path.resolve())
    exp = parse_experiment(
        {
            "model": {"name_or_path": "${SHARED}/models/m"},
            "data": {"extra_test": {"klue": "${SHARED}/data/k.json"}},
            "space": {"name_or_path": {"type": "choice", "values": ["${SHARED}/a", "b"]}},
            "stages": [{"name": "s", "space": {"name_or_path": "${SHARED}/c"}}],
        },
        "f.yaml",
    )
    assert exp.model.name_or_path == f"{root}/models/m"
    assert exp.data.extra_test == {"klue": f"{root}/data/k.json"}
    assert exp.space == {"name_or_path": {"type": "choice", "values": [f"{root}/a", "b"]}}
    assert exp.stages == [{"name": "s", "space": {"name_or_path": f"{root}/c"}}]


# --- load_experiment file errors -------------------------------------------------------------


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_experiment(path)
    assert str(path) in str(err.value)


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "training: {learning_rate: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_experiment(path)
    assert str(err.value).startswith(f"{path}: ")


def test_yaml_1_2_floats_are_read_as_numbers_everywhere(tmp_path: Path) -> None:
    # One loader for every file: `1e-5` is a number in sections and in spaces alike.
    exp = load_experiment(
        write(
            tmp_path,
            "training: {weight_decay: 1e-2}\nspace:\n  learning_rate: {type: loguniform, low: 1e-5, high: 2E-4}\n",
        )
    )
    assert exp.training.weight_decay == 0.01
    assert exp.space["learning_rate"] == {"type": "loguniform", "low": 1e-5, "high": 2e-4}
    assert isinstance(exp.space["learning_rate"]["low"], float)


def test_file_that_is_not_utf8_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert str(err.value) == f"{path}: not UTF-8 text (byte 0xe9 at offset 9); save the file as UTF-8."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty; a search-space file is a YAML mapping of `name:`, `space:`"),
        ("# only a comment\n", "the file is empty;"),
        (
            "- a\n- b\n",
            "expected a YAML mapping of `name:`, `space:`, `training:`, ... (see search_spaces/), got a list: ['a', 'b'].",
        ),
        (
            "optuna\n",
            "expected a YAML mapping of `name:`, `space:`, `training:`, ... (see search_spaces/), got a string: 'optuna'.",
        ),
        (
            "42\n",
            "expected a YAML mapping of `name:`, `space:`, `training:`, ... (see search_spaces/), got a number: 42.",
        ),
    ],
    ids=["empty", "comment-only", "list", "string", "number"],
)
def test_file_that_is_not_a_mapping_is_one_message(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert str(err.value).startswith(f"{path}: {expected}")


@pytest.mark.parametrize(
    ("base_text", "expected"),
    [("", "the file is empty"), ("[1, 2]\n", "expected a YAML mapping of `name:`")],
    ids=["empty", "list"],
)
def test_base_that_is_empty_or_not_a_mapping_names_the_base_file(
    tmp_path: Path, base_text: str, expected: str
) -> None:
    base = write(tmp_path, base_text, "base.yaml")
    path = write(tmp_path, "base: base.yaml\nname: x\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    # The base file, and the file the user gave (issue 28).
    assert str(err.value).startswith(f"{base} (the `base:` of {path.resolve()}): {expected}")


@pytest.mark.parametrize(
    "base", ["[a.yaml, b.yaml]", "3", "''", "null"], ids=["list", "number", "empty", "null"]
)
def test_base_that_is_not_one_file_name_is_refused(tmp_path: Path, base: str) -> None:
    path = write(tmp_path, f"base: {base}\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert str(err.value).startswith(
        f"{path}: base: must be one file name, relative to this file (e.g. `base: baseline.yaml`), got "
    )


def test_missing_base_names_both_files(tmp_path: Path) -> None:
    path = write(tmp_path, "base: nope.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert str(err.value) == (
        f"{path}: base: {tmp_path / 'nope.yaml'} does not exist; name a YAML file relative to {tmp_path}."
    )


def test_base_chain_that_loops_is_refused(tmp_path: Path) -> None:
    a = write(tmp_path, "base: b.yaml\n", "a.yaml")
    b = write(tmp_path, "base: c.yaml\n", "b.yaml")
    write(tmp_path, "base: a.yaml\n", "c.yaml")
    with pytest.raises(ConfigError) as err:
        load_experiment(a)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'c.yaml'}: `base:` files include each other (")
    assert message.endswith(f"{a} -> {b} -> {tmp_path / 'c.yaml'} -> {a}); remove one `base:`.")


def test_file_that_is_its_own_base_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "base: space.yaml\n")
    with pytest.raises(ConfigError, match="`base:` files include each other"):
        load_experiment(path)


def test_base_values_sit_under_the_file_and_its_name_is_dropped(tmp_path: Path) -> None:
    write(tmp_path, "name: base\ntraining: {batch_size: 8, num_epochs: 2}\n", "base.yaml")
    exp = load_experiment(write(tmp_path, "base: base.yaml\ntraining: {batch_size: 16}\n"))
    assert (exp.name, exp.training.batch_size, exp.training.num_epochs) == ("space", 16, 2)


def test_problem_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "trainig: {}\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert str(err.value).startswith(f"{path}: unknown top-level key 'trainig'")


# --- validate --------------------------------------------------------------------------------


def test_defaults_validate() -> None:
    validate(ExperimentConfig())


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("training", "warmup_ratio", 0.0),
        ("training", "alpha", 1.0),
        ("training", "weight_decay", 0.0),
        ("training", "mtl_lambda", 0.0),
        ("model", "max_length", 8),
        ("model", "num_hidden_layers", 1),
        ("search", "gpus_per_trial", 0.5),
        ("search", "gpus_per_trial", 2.0),
        ("search", "gpus_per_trial", 1.0),
        ("search", "max_concurrent_trials", 1),
        ("search", "reduction_factor", 2),
        ("search", "max_failures", 0),
        ("search", "metric", "mse"),
        ("data", "validation_fraction", 0.5),
        ("training", "seed", 0),
        ("training", "seed", 2**32 - 1),
        ("training", "step_gamma", 1.0),
        ("model", "name_or_path", "klue/roberta-base"),
        ("model", "name_or_path", "e5-small-ko"),
        ("model", "name_or_path", "builtin:tiny"),
        ("model", "name_or_path", str(REPO / "tests")),
    ],
)
def test_boundary_values_are_accepted(section: str, field: str, value: object) -> None:
    exp = ExperimentConfig()
    setattr(getattr(exp, section), field, value)
    validate(exp)


INVALID = [
    ("training", "learning_rate", 0.0, "training.learning_rate must be > 0, got 0.0"),
    ("training", "batch_size", 0, "training.batch_size must be >= 1, got 0"),
    ("training", "num_epochs", 0, "training.num_epochs must be >= 1, got 0"),
    ("training", "weight_decay", -0.1, "training.weight_decay must be >= 0, got -0.1"),
    ("training", "warmup_ratio", 1.0, "training.warmup_ratio must be in [0, 1), got 1.0"),
    ("training", "alpha", 1.5, "training.alpha must be in [0, 1], got 1.5"),
    ("training", "mtl_lambda", -1.0, "training.lambda must be >= 0, got -1.0"),
    (
        "training",
        "head",
        "pairwise",
        "training.head must be one of ['regression', 'multitask'], got 'pairwise'",
    ),
    (
        "training",
        "precision",
        "fp8",
        "training.precision must be one of ['auto', 'fp32', 'bf16', 'fp16'], got 'fp8'",
    ),
    ("model", "architecture", "siamese", "model.architecture must be one of ['cross', 'bi'], got 'siamese'"),
    ("model", "max_length", 7, "model.max_length must be >= 8, got 7"),
    ("model", "num_hidden_layers", 0, "model.num_hidden_layers must be >= 1 or null, got 0"),
    ("search", "num_samples", 0, "search.num_samples (--num-samples) must be >= 1, got 0"),
    ("search", "searcher", "grid", "search.searcher must be one of ['tpe', 'random'], got 'grid'"),
    ("search", "scheduler", "pbt", "search.scheduler must be one of ['asha', 'fifo'], got 'pbt'"),
    ("search", "grace_period", 0, "search.grace_period must be > 0 (epochs), got 0"),
    ("search", "reduction_factor", 1, "search.reduction_factor must be >= 2, got 1"),
    (
        "search",
        "cpus_per_trial",
        0.0,
        "search.cpus_per_trial (--cpus-per-trial) must be 'auto' or > 0, got 0.0",
    ),
    (
        "search",
        "gpus_per_trial",
        -1.0,
        "search.gpus_per_trial (--gpus-per-trial) must be 'auto' or a fraction in [0, 1] or a whole number, got -1.0",
    ),
    (
        "search",
        "gpus_per_trial",
        1.5,
        "search.gpus_per_trial (--gpus-per-trial) must be 'auto' or a fraction in [0, 1] or a whole number, got 1.5",
    ),
    ("search", "top_k", 0, "search.top_k (--top-k) must be >= 1, got 0"),
    ("search", "max_failures", -1, "search.max_failures must be >= 0, got -1"),
    ("data", "validation_fraction", 0.0, "data.validation_fraction must be in (0, 1), got 0.0"),
    ("data", "validation_fraction", 1.0, "data.validation_fraction must be in (0, 1), got 1.0"),
    # Issue 16: fields validate() did not check; every trial failed on them after Ray started.
    ("training", "eval_batch_size", 0, "training.eval_batch_size must be >= 1, got 0"),
    ("training", "logging_steps", 0, "training.logging_steps must be >= 1, got 0"),
    ("training", "step_epochs", 0, "training.step_epochs must be >= 1, got 0"),
    ("training", "step_gamma", 0.0, "training.step_gamma must be in (0, 1], got 0.0"),
    ("training", "seed", -1, "training.seed (--seed) must be in [0, 4294967295], got -1"),
    ("training", "seed", 2**32, "training.seed (--seed) must be in [0, 4294967295], got 4294967296"),
    ("search", "seed", -1, "search.seed (--seed) must be in [0, 4294967295], got -1"),
    ("data", "split_seed", -1, "data.split_seed must be in [0, 4294967295], got -1"),
    ("data", "train_size", 0, "data.train_size must be >= 1 or null, got 0"),
    (
        "search",
        "max_concurrent_trials",
        0,
        "search.max_concurrent_trials (--max-concurrent-trials) must be >= 1 or null, got 0",
    ),
    (
        "search",
        "max_concurrent_trials",
        -2,
        "search.max_concurrent_trials (--max-concurrent-trials) must be >= 1 or null, got -2",
    ),
    ("search", "seeds", 0, "search.seeds (--seeds) must be >= 1, got 0"),
    ("search", "perturbation_interval", 0, "search.perturbation_interval must be >= 1, got 0"),
    (
        "model",
        "name_or_path",
        "./no-such-model",
        "model.name_or_path (--model) must be a Hub id (`org/name`), a local folder that exists, "
        "or 'builtin:tiny', got './no-such-model'",
    ),
    ("model", "name_or_path", "~/no/such/model", "got '~/no/such/model'"),
    ("model", "name_or_path", "models/no/such", "got 'models/no/such'"),
]


@pytest.mark.parametrize(
    ("section", "field", "value", "expected"),
    INVALID,
    ids=[f"{s}.{f}={v}" for s, f, v, _ in INVALID],
)
def test_invalid_value_is_reported_naming_the_field(
    section: str, field: str, value: object, expected: str
) -> None:
    exp = ExperimentConfig()
    setattr(getattr(exp, section), field, value)
    with pytest.raises(ConfigError) as err:
        validate(exp)
    message = str(err.value)
    assert message.startswith("1 problem(s):")
    assert expected in message


@pytest.mark.parametrize(
    ("section", "field", "value", "known"),
    [
        ("training", "loss", "huber", "'corr_mae'"),
        ("training", "lr_schedule", "exp", "'cosine'"),
        ("search", "metric", "accuracy", "'spearman'"),
    ],
)
def test_registry_name_outside_the_registry_lists_the_known_names(
    section: str, field: str, value: str, known: str
) -> None:
    exp = ExperimentConfig()
    setattr(getattr(exp, section), field, value)
    with pytest.raises(ConfigError) as err:
        validate(exp)
    message = str(err.value)
    assert f"{section}.{field} must be one of [" in message
    assert known in message
    assert f"got {value!r}" in message


@pytest.mark.parametrize("name", ["has space", "a/b", ""])
def test_invalid_experiment_name_is_reported(name: str) -> None:
    with pytest.raises(
        ConfigError, match=r"name must use only ASCII letters A-Z a-z, digits, '\.', '_' and '-'"
    ):
        validate(ExperimentConfig(name=name))


def test_validate_reports_every_problem_at_once_naming_the_file() -> None:
    exp = ExperimentConfig(source_file="f.yaml")
    exp.training.learning_rate = -1.0
    exp.model.architecture = "siamese"
    exp.search.top_k = 0
    with pytest.raises(ConfigError) as err:
        validate(exp)
    message = str(err.value)
    assert message.startswith("3 problem(s) in f.yaml:\n- ")
    for field in ("training.learning_rate", "model.architecture", "search.top_k"):
        assert field in message


# --- flags on top of --smoke-test ------------------------------------------------------------


def test_smoke_keeps_the_flags_the_user_gave() -> None:
    exp = ExperimentConfig()
    apply_overrides(
        exp, {"search.num_samples": 5, "model.name_or_path": "klue/roberta-small", "search.top_k": 3}
    )
    make_smoke(exp)
    assert (exp.search.num_samples, exp.model.name_or_path, exp.search.top_k) == (5, "klue/roberta-small", 3)
    assert (exp.data.train_size, exp.training.num_epochs) == (64, 2)  # the rest is still test-size


def test_smoke_without_flags_is_test_size() -> None:
    exp = ExperimentConfig()
    make_smoke(exp)
    assert (exp.search.num_samples, exp.model.name_or_path, exp.search.top_k) == (2, "builtin:tiny", 2)


# --- resources -------------------------------------------------------------------------------


def test_requests_the_machine_can_fit_pass() -> None:
    assert resource_problems(SearchConfig(cpus_per_trial=2, gpus_per_trial=0.5), cpus=2, gpus=1) == []
    assert resource_problems(SearchConfig(cpus_per_trial=0.5, gpus_per_trial=0), cpus=1, gpus=0) == []


def test_requests_larger_than_the_machine_name_request_supply_and_flag() -> None:
    problems = resource_problems(SearchConfig(cpus_per_trial=100, gpus_per_trial=1), cpus=2, gpus=0)
    assert problems == [
        "search.cpus_per_trial (--cpus-per-trial) asks for 100 CPUs per trial, but this machine has 2; "
        "pass --cpus-per-trial 2 or less.",
        "search.gpus_per_trial (--gpus-per-trial) asks for 1 GPU(s) per trial, but this machine has none "
        "(CUDA GPUs torch sees); pass --gpus-per-trial 0 to train on the CPU.",
    ]
    (more_gpus,) = resource_problems(SearchConfig(gpus_per_trial=4), cpus=2, gpus=2)
    assert more_gpus.endswith(
        "but this machine has 2 (CUDA GPUs torch sees); pass --gpus-per-trial 2 or less."
    )


def test_a_request_no_cluster_node_or_node_type_meets_is_named():
    from tuning.settings import SearchConfig, node_problems

    nodes = [{"CPU": 8.0}, {"CPU": 4.0, "GPU": 1.0}]
    assert node_problems(SearchConfig(cpus_per_trial=4, gpus_per_trial=0.5), nodes, "auto") == []
    (problem,) = node_problems(SearchConfig(cpus_per_trial=2, gpus_per_trial=2), nodes, "auto")
    assert problem.startswith("a trial asks for 2 CPUs and 2 GPUs")
    assert "most CPUs on one: 8; most GPUs: 1" in problem


# --- types from the annotations --------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "name", "expected"),
    [
        (TrainingConfig, "learning_rate", FieldKind(float, False, "float")),
        (DataConfig, "train_size", FieldKind(int, True, "int | None")),
        (DataConfig, "extra_test", FieldKind(dict, False, "dict[str, str]")),
        (SearchConfig, "full_grid", FieldKind(bool, False, "bool")),
        (SearchConfig, "from_experiment", FieldKind(str, True, "str | None")),
    ],
)
def test_field_kinds_come_from_the_annotations(cls: type, name: str, expected: FieldKind) -> None:
    assert field_kinds(cls)[name] == expected


def test_every_section_field_has_a_kind_and_a_docstring() -> None:
    # A field's docstring is its flag's help: a field without one would be a flag without help.
    for cls in SECTIONS.values():
        assert set(field_kinds(cls)) == set(field_names(cls))
        assert {n for n, doc in field_docs(cls).items() if doc} == set(field_names(cls)), cls.__name__


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), (2.5, 2.5), ("1e-5", 1e-5), ("3", 3.0), (True, None), ("fast", None), (None, None), ([1], None)],
)
def test_read_number(value: object, expected: object) -> None:
    number = read_number(value)
    assert number == expected
    assert type(number) is type(expected)


# --- command-line flags generated from the fields ---------------------------------------------


def test_every_field_is_a_flag_named_section_dot_field_with_its_docstring_as_help() -> None:
    flags = {key: flag for flag in config_flags() for key in flag.keys if len(flag.keys) == 1}
    expected = {f"{section}.{name}" for section, cls in SECTIONS.items() for name in field_names(cls)}
    assert set(flags) == expected
    for key, flag in flags.items():
        assert f"--{key}" in flag.names
        assert flag.section == key.split(".")[0]
    assert flags["training.learning_rate"].help == "Peak learning rate of AdamW."
    assert flags["training.mtl_lambda"].names == ("--training.mtl_lambda", "--training.lambda")
    assert flags["search.full_grid"].switch and not flags["search.top_k"].switch


def test_short_flags_are_declared_beside_their_fields() -> None:
    short = {flag.names[0]: flag.keys for flag in config_flags() if not flag.names[0].count(".")}
    assert short == {
        "--model": ("model.name_or_path",),
        "--num-samples": ("search.num_samples",),
        "--max-concurrent-trials": ("search.max_concurrent_trials",),
        "--cpus-per-trial": ("search.cpus_per_trial",),
        "--gpus-per-trial": ("search.gpus_per_trial",),
        "--top-k": ("search.top_k",),
        "--seeds": ("search.seeds",),
        "--full-grid": ("search.full_grid",),
        "--from": ("search.from_experiment",),
        "--time-budget": ("search.time_budget",),
        "--cost": ("search.cost",),
        "--select": ("search.select",),
        "--warm-start": ("search.warm_start",),
        "--seed": ("training.seed", "search.seed"),  # one flag, both seeds
    }
    assert field_label("search.top_k") == "search.top_k (--top-k)"
    assert field_label("training.seed") == "training.seed (--seed)"
    assert field_label("training.mtl_lambda") == "training.lambda"


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("training.learning_rate", "3e-5", 3e-5),
        ("training.batch_size", "16", 16),
        ("search.cpus_per_trial", "2", 2.0),
        ("search.full_grid", "true", True),
        ("training.group_by_length", "false", False),
        ("search.time_budget", "20m", 1200.0),
        ("search.max_concurrent_trials", "null", None),
        ("data.train", "null", None),
        ("data.extra_test", "{klue_dev: k.json}", {"klue_dev": "k.json"}),
        ("model.name_or_path", "1e5", "1e5"),  # a text field takes the text as typed
        ("data.source", "null", "null"),  # ... even `null`, where null is not allowed
    ],
)
def test_flag_value_is_read_as_the_same_yaml_value(key: str, text: str, expected: object) -> None:
    value, problem = flag_value(key, text)
    assert problem is None
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("training.batch_size", "2.5", "batch_size must be a whole number, got 2.5."),
        ("training.learning_rate", "fast", "learning_rate must be a number (float), got 'fast'."),
        ("search.full_grid", "maybe", "full_grid must be true or false, got 'maybe'."),
        ("training.seed", "null", "seed must be set (int), got null."),
        ("data.columns", "[a, b]", "columns must be a mapping, got ['a', 'b']."),
        ("search.time_budget", "soon", "time_budget: a duration must be a positive number"),
    ],
)
def test_flag_value_of_the_wrong_type_is_the_yaml_message(key: str, text: str, expected: str) -> None:
    _, problem = flag_value(key, text)
    assert problem is not None and problem.startswith(expected)


# --- experiment_from_dict (--resume reads experiment.json) ------------------------------------


def test_stored_config_round_trips() -> None:
    exp = parse_experiment(
        {"training": {"lambda": 0.3}, "search": {"time_budget": "20m"}, "space": {"seed": 1}}, "f.yaml"
    )
    apply_overrides(exp, {"search.num_samples": 5})
    stored = json.loads(json.dumps(exp.to_dict()))
    assert experiment_from_dict(stored, "runs/x/experiment.json") == exp


def test_stored_config_with_an_unknown_top_level_key_is_refused() -> None:
    stored = {**ExperimentConfig().to_dict(), "sampler": "tpe"}
    with pytest.raises(ConfigError) as err:
        experiment_from_dict(stored, "runs/x/experiment.json")
    message = str(err.value)
    assert message.startswith("runs/x/experiment.json: config: unknown key 'sampler'; accepted keys: name,")
    assert "probably written by another version of this tool" in message


def test_stored_config_with_an_unknown_section_key_is_refused() -> None:
    stored = ExperimentConfig().to_dict()
    stored["training"]["label_smoothing"] = 0.1
    stored["search"]["num_samples"] = "many"
    with pytest.raises(ConfigError) as err:
        experiment_from_dict(stored, "runs/x/experiment.json")
    message = str(err.value)
    assert (
        "runs/x/experiment.json: config.training: unknown key 'label_smoothing'; accepted keys: " in message
    )
    assert "runs/x/experiment.json: config.search: num_samples must be a number (int), got 'many'." in message
    assert message.endswith(
        "probably written by another version of this tool: resume with that version, or start a new experiment."
    )
