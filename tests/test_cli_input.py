"""Bad input at the command line is refused before Ray starts: one message, exit 2, no traceback.

Each case is what a person could type (issue 16); before these checks, most of them started Ray
and failed every trial, hung, or ended in a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from run_search import build_experiment, parse_args
from tests.conftest import run_cli

# A refusal takes seconds (imports); anything near this limit has started searching.
REFUSED_WITHIN_S = 120
TINY = "model: {name_or_path: 'builtin:tiny'}\n"


def refused(tmp_path: Path, *args: str) -> str:
    """Run ``run_search.py`` with ``args``; check it refused before Ray started; return stderr."""
    storage = tmp_path / "runs"
    proc = run_cli(*args, "--storage", str(storage), timeout=REFUSED_WITHIN_S)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    assert "Started a local Ray instance" not in output
    assert not storage.exists()
    assert proc.stderr.startswith("error: ")
    return proc.stderr


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
        ({"space.yaml": "base: base.yaml\n", "base.yaml": ""}, "base.yaml: the file is empty"),
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
        "search.cpus_per_trial (--cpus-per-trial) must be > 0",
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
