"""Bad input at the command line is refused before Ray starts: one message, exit 2, no traceback.

Each case is what a person could type (issue 16); before these checks, most of them started Ray
and failed every trial, hung, or ended in a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray
import torch

from run_search import build_experiment, flag_overrides, parse_args
from tests.conftest import run_cli, run_main
from tuning.settings import SECTIONS, ConfigError

TINY = "model: {name_or_path: 'builtin:tiny'}\n"


def refused(tmp_path: Path, *args: str) -> str:
    """Run ``run_search.main`` with ``args`` (in this process: nothing may start); check it
    refused before Ray started and wrote nothing; return stderr. (One case runs as a real
    process too: :func:`test_a_refusal_is_the_same_from_a_fresh_interpreter`.)"""
    storage = tmp_path / "runs"
    ray_before = ray.is_initialized()
    proc = run_main(*args, "--storage", str(storage))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert ray.is_initialized() == ray_before, "Ray was started before the refusal"
    assert not storage.exists()
    assert proc.stderr.startswith("error: ")
    return proc.stderr


def test_a_refusal_is_the_same_from_a_fresh_interpreter(tmp_path: Path) -> None:
    """What :func:`refused` checks in process holds for the command a user types: exit 2, one
    message on stderr, no traceback, no Ray."""
    args = (
        "--profile",
        "cpu",
        "--smoke-test",
        "--training.batch_size",
        "2.5",
        "--storage",
        str(tmp_path / "runs"),
    )
    proc, same = run_cli(*args, timeout=120), run_main(*args)
    assert (proc.returncode, proc.stderr) == (same.returncode, same.stderr) == (2, same.stderr)
    assert proc.stderr == "error: --training.batch_size must be a whole number, got 2.5.\n"
    assert "Traceback" not in proc.stdout + proc.stderr and "Started a local Ray" not in proc.stdout
    assert not (tmp_path / "runs").exists()


def space(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_bad_values_inside_a_space_are_listed_once(tmp_path: Path) -> None:
    path = space(
        tmp_path,
        TINY + "training: {eval_batch_size: 0}\n"
        "space:\n"
        "  learning_rate: {type: uniform, low: -1e-4, high: 1e-3}\n"
        "  batch_size: {type: choice, values: [16, big]}\n",
    )
    stderr = refused(tmp_path, "--space", str(path))
    for expected in (
        "training.eval_batch_size must be >= 1, got 0.",
        f"{path}: space: learning_rate must be > 0, got low=-0.0001.",
        f"{path}: space: batch_size must be a number (int), got 'big'.",
    ):
        assert stderr.count(expected) == 1, stderr


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"space.yaml": "name: caf\u00e9\n".encode("latin-1")},
            "space.yaml: not UTF-8 text (byte 0xe9 at offset 9)",
        ),
        ({"space.yaml": "[optuna]\n"}, "space.yaml: expected a YAML mapping of `name:`, `space:`"),
        # Names the base file, and the file given (issue 28).
        ({"space.yaml": "base: base.yaml\n", "base.yaml": ""}, "space.yaml): the file is empty"),
        ({"space.yaml": "base: [base.yaml]\n"}, "space.yaml: base: must be one file name"),
        (
            {"space.yaml": "base: base.yaml\n", "base.yaml": "base: space.yaml\n"},
            "`base:` files include each other",
        ),
    ],
    ids=["not-utf8", "a-list", "empty-base", "base-list", "base-loop"],
)
def test_bad_search_space_file_is_one_message(
    tmp_path: Path, files: dict[str, str | bytes], expected: str
) -> None:
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    stderr = refused(tmp_path, "--space", str(tmp_path / "space.yaml"))
    assert expected in stderr
    assert len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seed_outside_numpys_range_is_refused(tmp_path: Path, seed: str) -> None:
    stderr = refused(tmp_path, "--space", str(space(tmp_path, TINY)), "--seed", seed)
    assert f"training.seed (--seed) must be in [0, 4294967295], got {seed}." in stderr


@pytest.mark.parametrize("value", ["0", "-1"])
def test_counts_below_one_are_refused_all_at_once(tmp_path: Path, value: str) -> None:
    # --smoke-test used to replace --num-samples, hiding a bad value until... never.
    flags = ("--num-samples", "--max-concurrent-trials", "--top-k", "--cpus-per-trial")
    args = [arg for flag in flags for arg in (flag, value)]
    stderr = refused(tmp_path, "--profile", "cpu", "--smoke-test", *args)
    assert "4 problem(s)" in stderr
    for label in (
        "search.num_samples (--num-samples) must be >= 1",
        "search.max_concurrent_trials (--max-concurrent-trials) must be >= 1 or null",
        "search.top_k (--top-k) must be >= 1",
        "search.cpus_per_trial (--cpus-per-trial) must be 'auto' or > 0",
    ):
        assert label in stderr


def test_local_model_path_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    missing = str(tmp_path / "models" / "e5")
    stderr = refused(tmp_path, "--profile", "cpu", "--model", missing)
    assert (
        "model.name_or_path (--model) must be a Hub id (`org/name`), a local folder that exists, "
        f"or 'builtin:tiny', got {missing!r}." in stderr
    )


def test_trial_larger_than_the_machine_is_refused(tmp_path: Path) -> None:
    cpus, gpus = os.cpu_count() or 1, torch.cuda.device_count()
    stderr = refused(
        tmp_path,
        "--profile",
        "cpu",
        "--smoke-test",
        "--cpus-per-trial",
        str(cpus + 1),
        "--gpus-per-trial",
        str(gpus + 1),
    )
    assert (
        f"asks for {cpus + 1} CPUs per trial, but this machine has {cpus}; pass --cpus-per-trial {cpus}"
        in stderr
    )
    assert f"asks for {gpus + 1} GPU(s) per trial, but this machine has {gpus or 'none'}" in stderr


# --- flags with --smoke-test (in process: nothing runs) ----------------------------------------


def test_smoke_test_keeps_an_explicit_num_samples_and_model(tmp_path: Path) -> None:
    model = tmp_path / "my-model"
    model.mkdir()
    args = ["--profile", "cpu", "--smoke-test", "--num-samples", "5", "--model", str(model)]
    exp = build_experiment(parse_args([*args, "--storage", str(tmp_path)]))
    assert (exp.search.num_samples, exp.model.name_or_path) == (5, str(model))
    assert (exp.data.train_size, exp.training.num_epochs) == (64, 2)  # still test-size otherwise


def test_smoke_test_alone_uses_the_tiny_model_and_two_samples(tmp_path: Path) -> None:
    exp = build_experiment(parse_args(["--profile", "cpu", "--smoke-test", "--storage", str(tmp_path)]))
    assert (exp.search.num_samples, exp.model.name_or_path) == (2, "builtin:tiny")


# --- flags generated from the config fields (in process, but the one refusal) ------------------


def test_a_generated_flag_lands_in_the_config(tmp_path: Path) -> None:
    args = [
        "--profile",
        "cpu",
        "--smoke-test",
        "--training.learning_rate",
        "3e-5",
        "--training.lambda",
        "0.25",
    ]
    exp = build_experiment(parse_args([*args, "--storage", str(tmp_path)]))
    assert (exp.training.learning_rate, exp.training.mtl_lambda) == (3e-5, 0.25)
    assert exp.overrides == {"training.learning_rate": 3e-5, "training.mtl_lambda": 0.25}


def test_a_generated_flag_of_the_wrong_type_is_refused_naming_it(tmp_path: Path) -> None:
    stderr = refused(
        tmp_path, "--profile", "cpu", "--training.batch_size", "2.5", "--search.full_grid", "maybe"
    )
    assert stderr == (
        "error: --training.batch_size must be a whole number, got 2.5.\n"
        "--full-grid / --search.full_grid must be true or false, got 'maybe'.\n"
    )


def test_a_generated_flag_obeys_the_field_rule(tmp_path: Path) -> None:
    args = parse_args(["--profile", "cpu", "--training.learning_rate", "-1", "--storage", str(tmp_path)])
    with pytest.raises(ConfigError, match=r"training\.learning_rate must be > 0, got -1\.0\."):
        build_experiment(args)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--model", "builtin:tiny"], {"model.name_or_path": "builtin:tiny"}),
        (["--seed", "7"], {"training.seed": 7, "search.seed": 7}),
        (["--seed", "7", "--training.seed", "9"], {"training.seed": 9, "search.seed": 7}),
        (["--num-samples", "5"], {"search.num_samples": 5}),
        (["--cpus-per-trial", "2"], {"search.cpus_per_trial": 2.0}),
        (["--gpus-per-trial", "0.5"], {"search.gpus_per_trial": 0.5}),
        (["--max-concurrent-trials", "3"], {"search.max_concurrent_trials": 3}),
        (["--time-budget", "1.5h"], {"search.time_budget": 5400.0}),
        (["--top-k", "2"], {"search.top_k": 2}),
        (["--seeds", "4"], {"search.seeds": 4}),
        (["--full-grid"], {"search.full_grid": True}),
        (["--data", "klue-sts"], {"data.source": "klue-sts"}),
        (
            ["--data", "pairs.csv", "--data.validation", "dev.csv"],
            {
                "data.source": "files",
                "data.train": "pairs.csv",
                "data.validation": "dev.csv",
                "data.test": None,
                "data.extra_test": {},
            },
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_short_flags_set_what_they_always_set(flags: list[str], expected: dict[str, object]) -> None:
    assert flag_overrides(parse_args(flags)) == expected


def test_from_is_resolved_and_still_checked_against_the_method(tmp_path: Path) -> None:
    args = parse_args(["--from", "runs/done"])
    assert flag_overrides(args) == {"search.from_experiment": str(Path("runs/done").resolve())}
    with pytest.raises(ConfigError, match="use it with --method seeds"):
        build_experiment(parse_args(["--search.from_experiment", "runs/done", "--storage", str(tmp_path)]))


def test_help_lists_the_flags_by_section(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    titles = [line for line in out.splitlines() if line.endswith("of the search-space file):")]
    assert titles == [f"{s} (overrides `{s}:` of the search-space file):" for s in SECTIONS]
    assert "Peak learning rate of AdamW." in out  # the field's docstring is its help
    assert "--num-samples INT, --search.num_samples INT" in out
    assert "--training.mtl_lambda FLOAT, --training.lambda FLOAT" in out
    assert out.startswith("usage: run_search.py [--method METHOD]")


def test_a_name_with_hangul_says_which_characters_are_allowed(tmp_path: Path) -> None:
    """Hangul is letters: the refusal must say that only ASCII ones are allowed, not "not a letter"."""
    stderr = refused(tmp_path, "--space", str(space(tmp_path, TINY)), "--name", "실험-1")
    assert "name must use only ASCII letters A-Z a-z, digits, '.', '_' and '-' (no Hangul" in stderr
    assert "'실험-1'" in stderr


def test_space_naming_a_folder_says_it_is_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "spaces"
    folder.mkdir()
    stderr = refused(tmp_path, "--space", str(folder))
    assert f"search-space file '{folder}' is a folder; pass --space with a YAML file" in stderr
    assert "does not exist" not in stderr


def test_help_lists_every_method_with_a_line_and_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    from tuning.methods import METHODS

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = capsys.readouterr().out
    listed = out.split("methods (--method):\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split()[0] for line in listed] == list(METHODS)
    assert all(len(line.split()) > 3 for line in listed)  # a name and what it does
    assert "['" not in out.split("methods (--method):")[0].split("--method METHOD", 2)[-1][:200]
    assert "\n  report DIR" in out and "\n  serve DIR" in out


def test_the_shared_seed_flag_says_what_each_seed_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "--seed INT Sets --training.seed (seed of model initialisation, dropout and data order) and " in out
    )
    assert "--search.seed (seed of the searcher)." in out


def test_a_base_file_that_is_not_a_mapping_names_the_file_given(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("just a string\n", encoding="utf-8")
    given = tmp_path / "mine.yaml"
    given.write_text("base: base.yaml\nname: x\n", encoding="utf-8")
    stderr = refused(tmp_path, "--space", str(given))
    assert f"{tmp_path / 'base.yaml'} (the `base:` of {given.resolve()}): expected" in stderr
