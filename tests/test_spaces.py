"""Tests of tuning.spaces: every domain type, fixed values, every refusal, grids, shipped files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tuning.schedules import SCHEDULES
from tuning.settings import ConfigError, load_experiment
from tuning.spaces import check_experiment, grid_size, has_grid, to_tune

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(REPO.glob("search_spaces/**/*.yaml"))


def error_of(space: dict[str, Any], where: str = "") -> str:
    with pytest.raises(ConfigError) as err:
        to_tune(space, where)
    return str(err.value)


# --- domains ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "sampler"),
    [("loguniform", "LogUniform"), ("uniform", "Uniform")],
)
def test_float_domain_keeps_its_bounds_and_sampler(kind: str, sampler: str) -> None:
    domain = to_tune({"learning_rate": {"type": kind, "low": 1.0e-5, "high": 5.0e-5}})["learning_rate"]
    assert (domain.lower, domain.upper) == (1.0e-5, 5.0e-5)
    assert str(domain.get_sampler()) == sampler


def test_randint_includes_high() -> None:
    domain = to_tune({"num_hidden_layers": {"type": "randint", "low": 2, "high": 4}})["num_hidden_layers"]
    # Ray's randint excludes its upper bound; the file's `high` is included.
    assert (domain.lower, domain.upper) == (2, 5)
    assert set(domain.sample(size=300, random_state=0)) == {2, 3, 4}


def test_randint_with_equal_bounds_is_that_value() -> None:
    domain = to_tune({"seed": {"type": "randint", "low": 7, "high": 7}})["seed"]
    assert (domain.lower, domain.upper) == (7, 8)


def test_choice_keeps_its_categories_in_order() -> None:
    domain = to_tune({"batch_size": {"type": "choice", "values": [32, 8, 16]}})["batch_size"]
    assert domain.categories == [32, 8, 16]


def test_grid_becomes_grid_search_in_order() -> None:
    assert to_tune({"lr_schedule": {"type": "grid", "values": ["step", "linear"]}}) == {
        "lr_schedule": {"grid_search": ["step", "linear"]}
    }


def test_fixed_values_pass_through() -> None:
    fixed = {"seed": 42, "lr_schedule": "cosine", "standardize_targets": False, "num_hidden_layers": None}
    assert to_tune(fixed) == fixed


def test_yaml_string_numbers_become_floats() -> None:
    # PyYAML (YAML 1.1) reads `1e-5` without a dot as a string.
    out = to_tune(
        {
            "learning_rate": {"type": "loguniform", "low": "1e-5", "high": "5e-5"},
            "weight_decay": {"type": "choice", "values": ["1e-2", "0"]},
            "warmup_ratio": "1e-1",
            "lr_schedule": {"type": "grid", "values": ["linear", "step"]},
        }
    )
    assert (out["learning_rate"].lower, out["learning_rate"].upper) == (1e-5, 5e-5)
    assert out["weight_decay"].categories == [0.01, 0.0]
    assert out["warmup_ratio"] == 0.1
    assert out["lr_schedule"] == {"grid_search": ["linear", "step"]}


def test_yaml_key_lambda_maps_to_mtl_lambda() -> None:
    out = to_tune({"lambda": {"type": "uniform", "low": 0.1, "high": 0.9}})
    assert list(out) == ["mtl_lambda"]
    assert (out["mtl_lambda"].lower, out["mtl_lambda"].upper) == (0.1, 0.9)


def test_empty_space_is_empty() -> None:
    assert to_tune({}) == {}


# --- refusals --------------------------------------------------------------------------------


def test_unknown_hyperparameter_lists_the_accepted_names() -> None:
    message = error_of({"learnig_rate": 1e-5})
    assert "unknown hyperparameter 'learnig_rate'" in message
    assert "accepted: learning_rate, batch_size," in message
    assert "name_or_path, architecture, num_hidden_layers, max_length" in message


def test_bare_list_suggests_choice_or_grid() -> None:
    message = error_of({"batch_size": [8, 16]})
    assert "batch_size: a bare list is ambiguous" in message
    assert "{type: choice, values: [8, 16]}" in message
    assert "{type: grid, values: [8, 16]}" in message


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"type": "uniform", "low": 0.2, "high": 0.1},
            "warmup_ratio: `low <= high` must hold, but got (low=0.2, high=0.1).",
        ),
        (
            {"type": "loguniform", "low": 0.0, "high": 0.1},
            "warmup_ratio: loguniform needs low > 0, got low=0.0.",
        ),
        (
            {"type": "loguniform", "low": -1.0, "high": 0.1},
            "warmup_ratio: loguniform needs low > 0, got low=-1.0.",
        ),
        (
            {"type": "uniform", "low": "small", "high": 0.1},
            "warmup_ratio: low and high must be numbers, got ('small', 0.1).",
        ),
        (
            {"type": "uniform", "low": 0.0, "high": float("inf")},
            "warmup_ratio: low and high must be numbers, got (0.0, inf).",
        ),
        (
            {"type": "randint", "low": 0.5, "high": 2},
            "warmup_ratio: randint needs whole numbers, got (0.5, 2.0).",
        ),
        (
            {"type": "choice", "values": []},
            "warmup_ratio: choice needs a non-empty list of values, got [].",
        ),
        (
            {"type": "grid", "values": 0.1},
            "warmup_ratio: grid needs a non-empty list of values, got 0.1.",
        ),
        (
            {"type": "uniform", "low": 0.0},
            "warmup_ratio: a uniform domain takes exactly ['high', 'low', 'type']; missing ['high'].",
        ),
        (
            {"type": "choice", "values": [0.1], "low": 0.0},
            "warmup_ratio: a choice domain takes exactly ['type', 'values']; unknown ['low'].",
        ),
        (
            {"type": "normal", "mean": 0.1},
            "warmup_ratio: type must be one of ['loguniform', 'uniform', 'randint', 'choice', 'grid'], "
            "got 'normal'.",
        ),
        (
            {"low": 0.0, "high": 0.1},
            "warmup_ratio: type must be one of ['loguniform', 'uniform', 'randint', 'choice', 'grid'], got None.",
        ),
    ],
    ids=[
        "low-above-high",
        "loguniform-zero-low",
        "loguniform-negative-low",
        "non-number-bound",
        "infinite-bound",
        "randint-fraction",
        "empty-values",
        "values-not-a-list",
        "missing-key",
        "unknown-key",
        "unknown-type",
        "no-type",
    ],
)
def test_bad_domain_is_refused_with_a_message(spec: dict[str, Any], expected: str) -> None:
    assert error_of({"warmup_ratio": spec}, where="f.yaml: space: ") == f"f.yaml: space: {expected}"


def test_several_problems_are_reported_in_one_message() -> None:
    message = error_of(
        {
            "learnig_rate": 1e-5,
            "batch_size": [8, 16],
            "weight_decay": {"type": "uniform", "low": 0.2, "high": 0.1},
            "seed": 1,
            "warmup_ratio": {"type": "beta"},
        }
    )
    lines = message.splitlines()
    assert len(lines) == 4
    assert "unknown hyperparameter 'learnig_rate'" in lines[0]
    assert "batch_size: a bare list is ambiguous" in lines[1]
    assert "weight_decay: `low <= high` must hold" in lines[2]
    assert "warmup_ratio: type must be one of" in lines[3]


# --- values checked by the fields' rules (issue 16) ----------------------------------------------

VALUE_PROBLEMS = [
    (
        {"type": "uniform", "low": -1e-4, "high": 1e-3},
        "learning_rate",
        "learning_rate must be > 0, got low=-0.0001.",
    ),
    (
        {"type": "choice", "values": [16, "big"]},
        "batch_size",
        "batch_size must be a number (int), got 'big'.",
    ),
    ({"type": "choice", "values": [16, 0]}, "batch_size", "batch_size must be >= 1, got 0."),
    ({"type": "grid", "values": [8, 12.5]}, "batch_size", "batch_size must be a whole number, got 12.5."),
    (0, "eval_batch_size", "eval_batch_size must be >= 1, got 0."),
    (
        {"type": "loguniform", "low": 8, "high": 64},
        "batch_size",
        "batch_size takes whole numbers, but a loguniform domain samples fractions; use randint or choice.",
    ),
    (
        {"type": "uniform", "low": 0.0, "high": 1.0},
        "warmup_ratio",
        "warmup_ratio must be in [0, 1), got high=1.0.",
    ),
    ({"type": "randint", "low": -1, "high": 5}, "seed", "seed must be in [0, 4294967295], got low=-1."),
    (
        {"type": "randint", "low": 0, "high": 2},
        "num_hidden_layers",
        "num_hidden_layers must be >= 1 or null, got low=0.",
    ),
    (
        {"type": "choice", "values": ["linear", "exp"]},
        "lr_schedule",
        f"lr_schedule must be one of {sorted(SCHEDULES)}, got 'exp'.",
    ),
    (
        {"type": "uniform", "low": 0, "high": 1},
        "lr_schedule",
        "lr_schedule is a str: a uniform domain gives numbers; use choice or grid.",
    ),
    (
        {"type": "choice", "values": [True, "no"]},
        "standardize_targets",
        "standardize_targets must be true or false, got 'no'.",
    ),
    (
        {"type": "choice", "values": ["builtin:tiny", "./no-such-model"]},
        "name_or_path",
        "name_or_path must be a Hub id (`org/name`), a local folder that exists, or 'builtin:tiny', "
        "got './no-such-model'.",
    ),
    (None, "max_length", "max_length must be set (int), got null."),
]


@pytest.mark.parametrize(
    ("spec", "name", "expected"),
    VALUE_PROBLEMS,
    ids=[f"{name}={spec}" for spec, name, _ in VALUE_PROBLEMS],
)
def test_value_a_domain_can_take_obeys_the_fields_rule(spec: Any, name: str, expected: str) -> None:
    assert error_of({name: spec}, where="f.yaml: space: ") == f"f.yaml: space: {expected}"


def test_listed_values_take_the_fields_type() -> None:
    out = to_tune(
        {
            "batch_size": {"type": "choice", "values": [8.0, "16"]},
            "weight_decay": {"type": "grid", "values": [0, "1e-2"]},
            "num_epochs": 3.0,
        }
    )
    assert out["batch_size"].categories == [8, 16]
    assert all(type(v) is int for v in out["batch_size"].categories)
    assert out["weight_decay"] == {"grid_search": [0.0, 0.01]}
    assert type(out["num_epochs"]) is int


def test_range_whose_ends_obey_the_rule_is_accepted() -> None:
    out = to_tune(
        {
            "warmup_ratio": {"type": "uniform", "low": 0.0, "high": 0.99},
            "batch_size": {"type": "randint", "low": 1, "high": 64},
            "seed": {"type": "randint", "low": 0, "high": 2**32 - 2},
        }
    )
    assert (out["batch_size"].lower, out["batch_size"].upper) == (1, 65)


def test_every_problem_of_space_and_stages_is_listed_once() -> None:
    with pytest.raises(ConfigError) as err:
        check_experiment(
            {"learning_rate": {"type": "uniform", "low": -1e-4, "high": 1e-3}, "eval_batch_size": 0},
            [{"name": "a", "space": {"batch_size": {"type": "choice", "values": [16, "big"]}}}],
            "f.yaml",
        )
    assert str(err.value).splitlines() == [
        "f.yaml: space: learning_rate must be > 0, got low=-0.0001.",
        "f.yaml: space: eval_batch_size must be >= 1, got 0.",
        "f.yaml: stages[0]: batch_size must be a number (int), got 'big'.",
    ]


# --- grids -----------------------------------------------------------------------------------


def test_space_without_grid() -> None:
    space = to_tune({"batch_size": {"type": "choice", "values": [8, 16]}, "seed": 1})
    # A fixed nested mapping (the trial's data/model sections) is not a grid either.
    space["data"] = {"source": "korsts"}
    assert not has_grid(space)
    assert grid_size(space) == 1


def test_grid_size_multiplies_the_grids() -> None:
    space = to_tune(
        {
            "lr_schedule": {"type": "grid", "values": ["linear", "cosine", "step"]},
            "batch_size": {"type": "grid", "values": [8, 16]},
            "weight_decay": {"type": "choice", "values": [0.0, 0.1]},
            "seed": 1,
        }
    )
    assert has_grid(space)
    assert grid_size(space) == 6


# --- shipped files ---------------------------------------------------------------------------


def test_search_spaces_folder_ships_files() -> None:
    assert SHIPPED, "no search_spaces/**/*.yaml found"


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_shipped_spaces_convert(path: Path) -> None:
    exp = load_experiment(path)
    spaces = [("space", exp.space)] + [
        (f"stages[{i}]", s.get("space") or {}) for i, s in enumerate(exp.stages)
    ]
    for where, space in spaces:
        out = to_tune(space, f"{path}: {where}: ")
        assert len(out) == len(space), where


def _exp(**raw):
    from tuning.settings import parse_experiment

    return parse_experiment({"model": {"name_or_path": "builtin:tiny"}, **raw}, "space.yaml")


def test_settings_that_cannot_train_together_are_refused_before_any_trial():
    from tuning.spaces import combination_problems

    assert combination_problems(_exp(model={"architecture": "bi"}, training={"loss": "cosent"})) == []
    fixed = combination_problems(_exp(model={"architecture": "cross"}, training={"loss": "angle"}))
    assert fixed == [
        "space.yaml: loss ['angle'] ranks a bi-encoder's two embeddings, but model.architecture is cross; "
        "use architecture bi or another loss."
    ]
    searched = _exp(
        model={"architecture": "cross"},
        stages=[{"name": "loss", "space": {"loss": {"type": "grid", "values": ["mse", "cosent"]}}}],
    )
    assert "loss ['cosent'] ranks" in combination_problems(searched)[0]
    # builtin:tiny has 2 layers: freezing 3 cannot train.
    frozen = _exp(space={"freeze_layers": {"type": "choice", "values": [0, 3]}})
    assert combination_problems(frozen) == [
        "space.yaml: freeze_layers reaches 3, but the encoder has 2 layers; freeze at most 2."
    ]
