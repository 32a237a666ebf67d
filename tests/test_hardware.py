"""Settings resolved from the machine: precision, resources per trial, and fidelity fitted to the
budget (tuning.hardware), and a search that ends without a model failing loudly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from run_search import build_experiment, parse_args
from tests.conftest import run_cli
from tuning import hardware
from tuning.hardware import CpuFacts, resolve_precision, resolve_resources
from tuning.settings import SearchConfig, TrainingConfig

NATIVE = CpuFacts(capability="AVX512", avx512_bf16=True, amx=False, onednn_bf16=True)
AMX = CpuFacts(capability="AVX512", avx512_bf16=False, amx=True, onednn_bf16=True)
AVX2_ONLY = CpuFacts(capability="AVX2", avx512_bf16=False, amx=False, onednn_bf16=False)
# An AVX-512 BF16 CPU with torch's kernels lowered (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2).
IMITATED_AVX2 = CpuFacts(capability="AVX2", avx512_bf16=True, amx=False, onednn_bf16=False)


def never_measured() -> float:
    raise AssertionError("a CPU without native bf16 needs no measurement under `auto`")


# --- precision -----------------------------------------------------------------------------------


@pytest.mark.parametrize("facts", [NATIVE, AMX], ids=["avx512_bf16", "amx"])
def test_auto_takes_bf16_on_a_cpu_that_computes_it_natively_and_measures_faster(facts: CpuFacts) -> None:
    choice = resolve_precision("auto", cuda=False, facts=facts, speedup=lambda: 1.9)
    assert choice.precision == "bf16" and choice.warning is None
    assert "native bf16" in choice.reason and "1.90x" in choice.reason


@pytest.mark.parametrize("facts", [AVX2_ONLY, IMITATED_AVX2], ids=["avx2", "imitated-avx2"])
def test_auto_takes_fp32_without_native_bf16_and_does_not_measure(facts: CpuFacts) -> None:
    choice = resolve_precision("auto", cuda=False, facts=facts, speedup=never_measured)
    assert choice.precision == "fp32" and choice.warning is None
    assert "no native bf16" in choice.reason and "AVX2" in choice.reason


def test_auto_takes_fp32_where_bf16_measures_slower_despite_the_flags() -> None:
    # The flags say native, but bf16 measures slow (a throttled or oddly configured CPU).
    choice = resolve_precision("auto", cuda=False, facts=NATIVE, speedup=lambda: 0.1)
    assert choice.precision == "fp32"
    assert "not faster" in choice.reason and "0.10x" in choice.reason


def test_explicit_bf16_without_native_support_is_honoured_with_the_measured_reason() -> None:
    choice = resolve_precision("bf16", cuda=False, facts=AVX2_ONLY, speedup=lambda: 0.1)
    assert choice.precision == "bf16"
    assert choice.warning and "without native bf16" in choice.warning and "0.10x" in choice.warning
    assert "`auto`" in choice.warning


def test_explicit_bf16_on_a_native_cpu_has_no_warning() -> None:
    choice = resolve_precision("bf16", cuda=False, facts=NATIVE, speedup=lambda: 1.7)
    assert (choice.precision, choice.warning) == ("bf16", None)


def test_fp16_on_a_cpu_falls_back_to_fp32_with_a_warning() -> None:
    choice = resolve_precision("fp16", cuda=False, facts=NATIVE, speedup=never_measured)
    assert choice.precision == "fp32" and choice.warning and "CUDA GPU" in choice.warning


def test_explicit_fp32_is_kept() -> None:
    assert resolve_precision("fp32", cuda=False, facts=NATIVE, speedup=never_measured).precision == "fp32"


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16"), (False, "fp16")], ids=["h100", "t4"])
def test_auto_on_a_gpu_follows_its_bf16_support(bf16: bool, expected: str) -> None:
    choice = resolve_precision("auto", cuda=True, cuda_bf16=bf16, facts=AVX2_ONLY, speedup=never_measured)
    assert (choice.precision, choice.warning) == (expected, None)


def test_explicit_bf16_on_a_gpu_without_it_is_warned_about() -> None:
    choice = resolve_precision("bf16", cuda=True, cuda_bf16=False)
    assert choice.precision == "bf16" and choice.warning and "fp16" in choice.warning


def test_this_machines_facts_and_measurement_are_consistent() -> None:
    facts = hardware.cpu_facts()
    speedup = hardware.measure_cpu_bf16_speedup()
    assert math.isfinite(speedup) and speedup > 0
    choice = resolve_precision("auto", cuda=False)
    assert choice.precision == (
        "bf16" if facts.native_bf16 and speedup >= hardware.MIN_BF16_SPEEDUP else "fp32"
    )


def test_the_tiny_test_model_trains_in_fp32_under_auto() -> None:
    assert hardware.trial_precision("auto", hardware.TINY_MODEL) == "fp32"
    native = resolve_precision(
        "auto", cuda=False, facts=NATIVE, speedup=never_measured, model=hardware.TINY_MODEL
    )
    assert native.precision == "fp32" and "test-size model" in native.reason
    assert hardware.trial_precision("bf16", hardware.TINY_MODEL) == "bf16"


# --- resources -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpus", "gpus", "expected"),
    [(2, 0, (1.0, 0.0)), (1, 0, (1.0, 0.0)), (8, 0, (4.0, 0.0)), (64, 0, (4.0, 0.0)), (16, 2, (8.0, 1.0))],
    ids=["2-core laptop", "1 core", "8 cores", "64 cores", "2 GPUs"],
)
def test_auto_resources_follow_the_machine(cpus: int, gpus: int, expected: tuple[float, float]) -> None:
    r = resolve_resources("auto", "auto", cpus, gpus)
    assert (r.cpus, r.gpus) == expected
    assert r.reason.startswith("auto:")


def test_a_file_that_asks_for_gpu_fractions_shares_the_cores_among_them() -> None:
    r = resolve_resources("auto", 0.5, cpus=16, gpus=1)
    assert (r.cpus, r.gpus) == (8.0, 0.5)  # two trials on the GPU, 8 cores each
    assert (resolve_resources(3, 0, 16, 0).cpus, resolve_resources(3, 0, 16, 0).reason) == (3.0, "as asked")


def test_a_smoke_test_without_a_profile_runs_on_a_cpu_only_machine(tmp_path: Path) -> None:
    """The default space asks for `auto` resources: here, CPU trials sized to the cores."""
    exp = build_experiment(parse_args(["--smoke-test", "--data", "korsts", "--storage", str(tmp_path)]))
    expected = resolve_resources("auto", "auto", hardware.cpu_count(), hardware.torch.cuda.device_count())
    assert (exp.search.cpus_per_trial, exp.search.gpus_per_trial) == (expected.cpus, expected.gpus)
    assert exp.search.cpus_per_trial <= hardware.cpu_count()


# --- throughput probe and fidelity plan ----------------------------------------------------------


def tiny_settings(**training: object):
    from tuning.settings import DataConfig, ModelConfig
    from tuning.trial_config import TrialSettings

    return TrialSettings(
        data=DataConfig(source="korsts"),
        model=ModelConfig(name_or_path="builtin:tiny", architecture="bi", max_length=64),
        training=TrainingConfig(batch_size=16, precision="fp32", **training),  # type: ignore[arg-type]
    )


def test_the_probe_measures_a_tiny_model(small_splits) -> None:
    t = hardware.probe_throughput(tiny_settings(), small_splits, min_seconds=0.1)
    assert math.isfinite(t.train_pairs_s) and t.train_pairs_s > 0
    assert math.isfinite(t.eval_pairs_s) and t.eval_pairs_s > 0
    assert (t.threads, t.precision) == (1, "fp32")


SIZES = {"train": 5749, "validation": 500}


def test_a_budget_that_holds_the_rungs_changes_nothing() -> None:
    t = hardware.Throughput(train_pairs_s=20.0, eval_pairs_s=100.0, threads=1, precision="fp32", seconds=1)
    training = TrainingConfig(num_epochs=1, eval_every_pairs=720)
    search = SearchConfig(grace_period=0.125, num_samples=12, time_budget=840.0, top_k=2)
    plan = hardware.plan_fidelity(t, training, search, SIZES, concurrent=2, test_pairs=3398)
    assert plan.changed is None and plan.eval_every_pairs == 720
    assert plan.first_rung_pairs == 718 and plan.first_rung_s == pytest.approx(0.125 * 5749 / 20 + 5)
    assert plan.trial_s == pytest.approx(5749 / 20 + 8 * 5)
    # The top 2, the recipe and the untuned model on the test splits; all but the untuned model
    # on validation too (the paired comparisons).
    assert plan.scoring_s == pytest.approx((4 * 3398 + 3 * 500) / 100)
    assert "first rung (718 pairs) takes ~41 s" in plan.summary(840)


def test_a_slow_machine_gets_a_shorter_first_rung() -> None:
    """bf16 on an AVX2-only CPU: ~0.7 pairs/s; the 720-pair rung alone would outlast the budget."""
    t = hardware.Throughput(train_pairs_s=0.7, eval_pairs_s=10.0, threads=1, precision="bf16", seconds=1)
    training = TrainingConfig(num_epochs=1, eval_every_pairs=720, batch_size=32)
    search = SearchConfig(grace_period=0.125, num_samples=12, time_budget=840.0, top_k=2)
    plan = hardware.plan_fidelity(t, training, search, SIZES, concurrent=2, test_pairs=3398)
    assert plan.changed and "first rung was cut" in plan.changed
    assert plan.eval_every_pairs is not None and plan.eval_every_pairs < 720
    assert plan.eval_every_pairs % 32 == 0 and plan.grace_period == pytest.approx(
        plan.eval_every_pairs / 5749
    )
    # Half the budget would hold fewer than four batches: the floor, two waves still within the budget.
    assert plan.eval_every_pairs == 4 * 32 and 2 * plan.first_rung_s <= 840


def test_a_budget_too_small_for_any_rung_is_refused_with_the_numbers() -> None:
    t = hardware.Throughput(train_pairs_s=0.7, eval_pairs_s=10.0, threads=1, precision="bf16", seconds=1)
    training = TrainingConfig(num_epochs=1, eval_every_pairs=720, batch_size=32)
    search = SearchConfig(grace_period=0.125, num_samples=12, time_budget=60.0)
    with pytest.raises(hardware.BudgetTooSmall) as err:
        hardware.plan_fidelity(t, training, search, SIZES, concurrent=2, test_pairs=3398)
    message = str(err.value)
    assert "0.7 training and 10.0 validation pairs/s" in message and "bf16" in message
    assert "--time-budget" in message


# --- never "success" without a model -------------------------------------------------------------


@pytest.mark.e2e
def test_a_budget_that_ends_before_any_report_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    """Ray's trial workers take seconds to start: a 1-second budget ends before any evaluation."""
    result = run_cli(
        "--method", "optuna", "--profile", "cpu", "--smoke-test", "--time-budget", "1s",
        "--storage", str(tmp_path), "--name", "cut",
    )  # fmt: skip
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no model: the search ended with no evaluated trial" in result.stderr
    assert "time budget 1 s" in result.stderr and "training pairs/s per trial in fp32" in result.stderr
    assert "a longer --time-budget" in result.stderr
    assert not (tmp_path / "cut" / "best_model").exists()
    assert "[run_search] precision fp32" in result.stdout and "measured" in result.stdout


def test_prepare_records_the_plan_of_a_tiny_experiment(small_splits, tmp_path: Path) -> None:
    """The driver's step: precision (fp32 for the tiny model), the probe over the cores the trials
    share, and the plan's figures, as experiment.json keeps them."""
    exp = build_experiment(
        parse_args(
            ["--profile", "cpu", "--smoke-test", "--storage", str(tmp_path), "--training.precision", "auto"]
        )
    )
    plan = hardware.prepare(exp, small_splits, cpus=2)
    assert (plan.precision, plan.precision_requested, exp.training.precision) == ("fp32", "auto", "fp32")
    assert "test-size model" in plan.precision_reason
    assert plan.concurrent == 2 and plan.train_pairs_s and plan.train_pairs_s > 0
    assert plan.first_rung_s is not None and plan.scoring_s is not None and plan.trial_s is not None
    assert plan.fidelity and "2 trial(s) side by side" in plan.fidelity


def test_a_first_rung_already_shorter_than_four_batches_is_kept_or_refused() -> None:
    t = hardware.Throughput(train_pairs_s=100.0, eval_pairs_s=1000.0, threads=1, precision="fp32", seconds=1)
    training = TrainingConfig(num_epochs=2, batch_size=16)
    tight = SearchConfig(grace_period=0.125, num_samples=2, time_budget=0.25)
    plan = hardware.plan_fidelity(t, training, tight, {"train": 64, "validation": 32}, 2, 100)
    assert plan.changed is None and plan.first_rung_pairs == 8  # 0.11 s of rung in a 0.25 s budget
    with pytest.raises(hardware.BudgetTooSmall):
        too_small = SearchConfig(grace_period=0.125, num_samples=2, time_budget=0.05)
        hardware.plan_fidelity(t, training, too_small, {"train": 64, "validation": 32}, 2, 100)
