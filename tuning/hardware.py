"""What this machine can do, measured or asked of torch, and the settings that follow from it.

Three settings depend on the machine a search runs on, never on the one a figure was measured on:

- **precision** (:func:`resolve_precision`): bf16 only where the device computes it natively
  (CUDA: ``torch.cuda.is_bf16_supported()``; CPU: AVX512_BF16 or AMX, enabled for torch's kernels,
  and a sub-second measurement that bf16 autocast is really faster), fp16 on CUDA GPUs without
  bf16, fp32 otherwise. On an AVX2-only CPU bf16 autocast runs about 10x slower than fp32.
- **resources per trial** (:func:`resolve_resources`): ``auto`` asks for one GPU per trial where
  GPUs exist, otherwise CPU trials sized to the cores.
- **fidelity** (:func:`plan_fidelity`): the real model's training and evaluation throughput is
  measured before the search (:func:`probe_throughput`), the time of the first rung and of a whole
  trial printed, and a time budget that cannot hold the first rung of a few trials shrinks the
  evaluation interval (and the ASHA grace period with it) or is refused with the numbers.

Each decision carries its reason; the driver records them in ``experiment.json`` (``hardware``)
and the report shows them.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import numpy as np
import torch

AUTO = "auto"

# bf16 autocast must beat fp32 by this factor in the probe to be chosen on a CPU (native bf16
# measured 1.9x on a Zen 4 EPYC; an AVX2-only CPU measures about 0.1x).
MIN_BF16_SPEEDUP = 1.2


@dataclass(frozen=True)
class CpuFacts:
    """What torch says about this CPU's bf16 support (injected in tests)."""

    capability: str
    """``torch.backends.cpu.get_cpu_capability()``: the kernels torch dispatches to (``AVX512``,
    ``AVX2``, ``DEFAULT``); ``ATEN_CPU_CAPABILITY`` lowers it."""
    avx512_bf16: bool
    """The CPU has AVX512_BF16 (cpuinfo)."""
    amx: bool
    """The CPU has AMX tiles (cpuinfo)."""
    onednn_bf16: bool
    """oneDNN may use bf16 kernels (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``;
    ``ONEDNN_MAX_CPU_ISA`` lowers it)."""

    @property
    def native_bf16(self) -> bool:
        """bf16 instructions exist and torch's kernels may use them."""
        return (self.avx512_bf16 or self.amx) and self.onednn_bf16 and self.capability.startswith("AVX512")

    def describe(self) -> str:
        flags = [name for name, on in (("AVX512_BF16", self.avx512_bf16), ("AMX", self.amx)) if on]
        return f"CPU capability {self.capability}" + (f" with {'+'.join(flags)}" if flags else "")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_facts() -> CpuFacts:
    """This CPU, as torch reports it."""
    cpu = torch.cpu
    return CpuFacts(
        capability=torch.backends.cpu.get_cpu_capability(),
        avx512_bf16=bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()),
        amx=bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)()),
        onednn_bf16=bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    )


@cache
def measure_cpu_bf16_speedup(threads: int = 1) -> float:
    """fp32 time / bf16-autocast time of a transformer-sized MLP's forward and backward pass on
    this CPU (> 1: bf16 is faster). Sub-second: a slow bf16 is cut short after one pass."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        generator = torch.Generator().manual_seed(0)
        layers = torch.nn.Sequential(torch.nn.Linear(384, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 384))
        x = torch.randn(512, 384, generator=generator)

        def once(bf16: bool) -> float:
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = layers(x).float().pow(2).mean()
            loss.backward()
            return time.perf_counter() - start

        once(False)  # warm-up: first-call allocations
        fp32 = min(once(False) for _ in range(3))
        once(True)
        bf16 = once(True)
        if bf16 < 2 * fp32:  # close: take the best of more passes
            bf16 = min(bf16, *(once(True) for _ in range(2)))
        return fp32 / bf16
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision trials train in, and why."""

    precision: str
    """``fp32``, ``bf16`` or ``fp16``."""
    requested: str
    """What the settings asked for (``auto`` or an explicit precision)."""
    reason: str
    """Why: the device's support and, on a CPU, the measured bf16 speed."""
    warning: str | None = None
    """Set when an explicit request goes against the hardware (honoured, but slow or emulated)."""


def resolve_precision(
    requested: str,
    cuda: bool | None = None,
    cuda_bf16: bool | None = None,
    facts: CpuFacts | None = None,
    speedup: Callable[[], float] | None = None,
    model: str = "",
) -> PrecisionChoice:
    """The precision a trial on this machine trains in.

    The test-size model (``builtin:tiny``) always trains in fp32 under ``auto``: its small weight
    changes vanish in bf16 outputs (every trial would score the same), and it gains no speed.

    Args:
        requested: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        cuda: whether trials train on a CUDA GPU (default: one is visible).
        cuda_bf16: whether that GPU computes bf16 (default: ``torch.cuda.is_bf16_supported()``).
        facts: the CPU's bf16 support (default: :func:`cpu_facts`).
        speedup: measures bf16 over fp32 on the CPU (default: :func:`measure_cpu_bf16_speedup`).
        model: the model's name (``builtin:tiny`` is the test-size one).
    """
    if requested == AUTO and model == TINY_MODEL:
        return PrecisionChoice(
            "fp32", AUTO, "a test-size model: fp32 (bf16 would round its small updates away)"
        )
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if cuda:
        if cuda_bf16 is None:
            cuda_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        name = "the GPU"
        if requested == AUTO:
            if cuda_bf16:
                return PrecisionChoice("bf16", requested, f"{name} computes bf16 natively")
            return PrecisionChoice("fp16", requested, f"{name} has no native bf16: fp16 mixed precision")
        if requested == "bf16" and not cuda_bf16:
            return PrecisionChoice(
                "bf16",
                requested,
                f"bf16 as asked; {name} has no native bf16",
                f"training.precision bf16: {name} has no native bf16, so it is emulated (slow) or "
                "refused; `auto` would choose fp16.",
            )
        return PrecisionChoice(requested, requested, f"{requested} as asked, on {name}")
    if requested == "fp16":  # the Trainer refuses fp16 on a CPU: say so before a trial fails
        return PrecisionChoice(
            "fp32",
            requested,
            "fp16 mixed precision needs a CUDA GPU; this machine trains on the CPU in fp32",
            "training.precision fp16 needs a CUDA GPU; training in fp32 instead (`auto` chooses for you).",
        )
    if requested not in (AUTO, "bf16"):
        return PrecisionChoice(requested, requested, f"{requested} as asked, on the CPU")
    facts = facts or cpu_facts()
    measured = (speedup or measure_cpu_bf16_speedup)() if facts.native_bf16 or requested == "bf16" else None
    speed = f"; bf16 autocast measured {measured:.2f}x the speed of fp32" if measured is not None else ""
    native = facts.native_bf16 and measured is not None and measured >= MIN_BF16_SPEEDUP
    if requested == AUTO:
        if native:
            return PrecisionChoice("bf16", requested, f"{facts.describe()}: native bf16{speed}")
        why = "no native bf16" if not facts.native_bf16 else "bf16 is not faster here"
        return PrecisionChoice("fp32", requested, f"{facts.describe()}: {why}{speed}")
    if native:
        return PrecisionChoice("bf16", requested, f"bf16 as asked; {facts.describe()}: native bf16{speed}")
    return PrecisionChoice(
        "bf16",
        requested,
        f"bf16 as asked; {facts.describe()}: no native bf16{speed}",
        f"training.precision bf16 on a CPU without native bf16 ({facts.describe()}{speed}): trials will "
        "train slower than in fp32; `auto` (the default) would choose fp32.",
    )


TINY_MODEL = "builtin:tiny"


@cache
def trial_precision(requested: str, model: str = "") -> str:
    """The precision a trial process trains ``model`` in (``auto`` resolved once per process)."""
    return resolve_precision(requested, model=model).precision if requested == AUTO else requested


@dataclass(frozen=True)
class Resources:
    """What each trial asks Ray for, and why."""

    cpus: float
    gpus: float
    reason: str


# CPU threads of a CPU-only trial at most: more trials side by side give ASHA more trials per
# rung, and intra-op threads of a small encoder are expected to scale sub-linearly. A choice, not
# a measurement: only 2-core machines were available (issue 24).
MAX_CPU_TRIAL_THREADS = 4
# CPU threads that feed one GPU trial at most (tokenized batches are cheap to collate).
MAX_GPU_TRIAL_THREADS = 8


def resolve_resources(cpus_per_trial: Any, gpus_per_trial: Any, cpus: int, gpus: int) -> Resources:
    """Per-trial requests with ``auto`` replaced from the machine (``cpus`` cores, ``gpus`` GPUs).

    ``gpus_per_trial: auto`` is 1 where GPUs exist, else 0. ``cpus_per_trial: auto`` is the cores
    shared among the trials that fit on the GPUs (at most 8 each), or, on a CPU-only machine, half
    the cores (at least 1, at most 4): two or more trials side by side. Explicit numbers are kept
    (a request the machine cannot meet is refused elsewhere).
    """
    said = []
    if gpus_per_trial == AUTO:
        gpus_per_trial = 1.0 if gpus else 0.0
        said.append(f"{gpus_per_trial:g} GPU per trial ({gpus or 'no'} GPUs here)")
    if cpus_per_trial == AUTO:
        if gpus_per_trial:
            side_by_side = max(1, int(gpus / gpus_per_trial))
            cpus_per_trial = float(max(1, min(MAX_GPU_TRIAL_THREADS, cpus // side_by_side)))
        else:
            cpus_per_trial = float(max(1, min(MAX_CPU_TRIAL_THREADS, cpus // 2)))
        said.append(f"{cpus_per_trial:g} CPU{'s' * (cpus_per_trial != 1)} per trial ({cpus} cores here)")
    reason = "auto: " + ", ".join(said) if said else "as asked"
    return Resources(float(cpus_per_trial), float(gpus_per_trial), reason)


def this_machine() -> tuple[int, int]:
    """CPU cores this process may use and the CUDA GPUs torch sees."""
    return cpu_count(), torch.cuda.device_count()


def apply_resources(search: Any, cpus: int | None = None, gpus: int = 0) -> Resources:
    """Replace ``auto`` in ``search``'s per-trial requests (a ``SearchConfig``), in place, for a
    machine of ``cpus`` cores and ``gpus`` GPUs (default: this one); returns what was chosen."""
    if cpus is None:
        cpus, gpus = this_machine()
    chosen = resolve_resources(search.cpus_per_trial, search.gpus_per_trial, cpus, gpus)
    search.cpus_per_trial, search.gpus_per_trial = chosen.cpus, chosen.gpus
    return chosen


@dataclass(frozen=True)
class Throughput:
    """One trial's speed on this machine, measured with the real model and settings."""

    train_pairs_s: float
    """Training pairs per second (forward, backward, optimizer step)."""
    eval_pairs_s: float
    """Validation pairs per second (forward only)."""
    threads: int
    precision: str
    seconds: float
    """How long the probe took."""


def probe_throughput(
    settings: Any, splits: Any, gpu: bool = False, steps: int = 3, min_seconds: float | None = None
) -> Throughput:
    """Train ``settings``' model for a few optimizer steps on real training pairs and score
    validation pairs, in this process, with the trial's threads and precision.

    Args:
        settings: a ``TrialSettings`` (its precision resolved, not ``auto``).
        splits: ``train`` and ``validation`` (canonical columns).
        gpu: train on the GPU (trials ask for GPUs and one is visible here).
        steps: timed optimizer steps at least (after the untimed warm-up steps).
        min_seconds: time the training steps for at least this long (small models are fast);
            default 0.5 s on a CPU, 2 s on a GPU.

    The rate is the median of the timed steps' (each synchronized with the device). A GPU loads
    (and may compile) each kernel the first time a shape needs it: on an H200 the first steps
    took 4.9 and 2.6 s, later ones 0.03-0.3 s, and a step with a new padded length 2.6 s again.
    So on a GPU every sampled batch (``steps + 3`` of them) is first run untimed, then timed;
    a trial, too, soon has seen most lengths. With one warm-up step and the mean, the probe
    measured 16 pairs/s for trials that trained at ~300 (docs/benchmarks.md, issue 28).
    """
    from tuning.model import PairCollator, encode
    from tuning.trial import trial_model

    started = time.perf_counter()
    previous = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        torch.manual_seed(0)
        train, validation = splits["train"], splits["validation"]
        batch = settings.training.batch_size
        # A seeded random sample: the first rows of a file may be shorter or longer than most.
        device = "cuda" if gpu and torch.cuda.is_available() else "cpu"
        warmup = 3 if device == "cuda" else 1
        if min_seconds is None:
            min_seconds = 2.0 if device == "cuda" else 0.5
        picked = np.random.default_rng(0).permutation(len(train))[: batch * (steps + warmup)]
        sample = train.select(sorted(int(i) for i in picked))
        tokenizer, model, _ = trial_model(settings, train)
        arch, max_len = settings.model.architecture, settings.model.max_length
        encoded = encode(sample, tokenizer, arch, max_len)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
        collate = PairCollator(tokenizer.pad_token_id)
        model.to(device)
        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(settings.training.precision)

        def autocast() -> Any:
            return torch.autocast(device, dtype=half or torch.float32, enabled=half is not None)

        def inputs(rows: list[Any]) -> dict[str, torch.Tensor]:
            return {k: v.to(device) for k, v in collate(rows).items()}

        def sync() -> None:
            if device == "cuda":
                torch.cuda.synchronize()

        model.train()

        def step(rows: list[int]) -> None:
            with autocast():
                out = model(**inputs([encoded[i] for i in rows]))
            out["raw"].float().pow(2).mean().backward()  # the loss's own cost is negligible
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        batches = [list(range(i, min(i + batch, len(encoded)))) for i in range(0, len(encoded), batch)]
        # A GPU warms up on every batch it is then timed on (each padded length is a new shape);
        # a CPU on the first batch only.
        for rows in batches if device == "cuda" else batches[:warmup]:
            step(rows)
        sync()
        timed = batches if device == "cuda" else batches[warmup:] or batches
        rates: list[float] = []
        start = time.perf_counter()
        while len(rates) < steps or time.perf_counter() - start < min_seconds:
            rows = timed[len(rates) % len(timed)]
            began = time.perf_counter()
            step(rows)
            sync()
            rates.append(len(rows) / (time.perf_counter() - began))
        train_pairs_s = float(np.median(rates))
        model.eval()
        rows = validation.select(range(min(len(validation), 2 * settings.training.eval_batch_size)))
        val = encode(rows, tokenizer, arch, max_len)
        size = settings.training.eval_batch_size
        chunks = [[val[k] for k in range(j, min(j + size, len(val)))] for j in range(0, len(val), size)]
        with torch.no_grad(), autocast():
            for rows in chunks if device == "cuda" else chunks[:1]:  # warm-up: every shape on a GPU
                model(**inputs(rows))
            sync()
            start = time.perf_counter()
            for rows in chunks:
                model(**inputs(rows))
            sync()
        eval_pairs_s = len(val) / max(time.perf_counter() - start, 1e-9)
    finally:
        torch.set_num_threads(previous)
    return Throughput(
        train_pairs_s,
        eval_pairs_s,
        settings.threads,
        settings.training.precision,
        time.perf_counter() - started,
    )


@dataclass(frozen=True)
class FidelityPlan:
    """How long a trial takes on this machine, and what was changed to fit the time budget."""

    throughput: Throughput
    concurrent: int
    """Trials that run side by side."""
    first_rung_pairs: int
    """Training pairs before a trial is first judged (ASHA's grace period, or the first report)."""
    first_rung_s: float
    trial_s: float
    """A whole trial: every epoch and every evaluation."""
    scoring_s: float
    """Scoring the untuned model and the top trials on the test splits after the search."""
    eval_every_pairs: int | None
    grace_period: float
    changed: str | None = None
    """What was adapted to the budget, and why (``None``: nothing)."""

    def summary(self, budget_s: float | None) -> str:
        t = self.throughput
        text = (
            f"measured {t.train_pairs_s:.1f} training and {t.eval_pairs_s:.1f} validation pairs/s per trial "
            f"({t.threads} thread{'s' * (t.threads != 1)}, {t.precision}); {self.concurrent} trial(s) side by side: "
            f"the first rung ({self.first_rung_pairs:,} pairs) takes ~{_duration(self.first_rung_s)}, a whole trial "
            f"~{_duration(self.trial_s)}, scoring after the search ~{_duration(self.scoring_s)}"
        )
        if budget_s:
            text += f"; time budget {_duration(budget_s)}"
        return text + (f". {self.changed}" if self.changed else ".")


class BudgetTooSmall(ValueError):
    """The time budget cannot hold the first rung of a few trials, even at the smallest rung."""


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def plan_fidelity(
    throughput: Throughput,
    training: Any,
    search: Any,
    sizes: dict[str, int],
    concurrent: int,
    test_pairs: int,
) -> FidelityPlan:
    """Times of a rung and a trial from the measured throughput; a time budget that cannot hold
    the first rung of a few trials gets a shorter first rung (``eval_every_pairs`` and ASHA's
    ``grace_period`` with it), down to four batches.

    Args:
        throughput: :func:`probe_throughput`'s measurement.
        training, search: the experiment's ``TrainingConfig`` and ``SearchConfig``.
        sizes: split name -> pairs (``train``, ``validation``).
        concurrent: trials that run side by side.
        test_pairs: pairs scored per model after the search (all test splits).

    Raises:
        BudgetTooSmall: naming the measured times, the budget and what to change.
    """
    n_train, n_val = sizes["train"], sizes["validation"]
    train_s = 1 / throughput.train_pairs_s
    eval_s = n_val / throughput.eval_pairs_s
    every = training.eval_every_pairs
    per_epoch = max(1, round(n_train / every)) if every else 1
    report_pairs = n_train / per_epoch
    asha = search.scheduler == "asha"
    rung_pairs = search.grace_period * n_train if asha else report_pairs

    def rung_s(pairs: float) -> float:
        return pairs * train_s + max(1, round(pairs / report_pairs)) * eval_s

    trial_s = training.num_epochs * (n_train * train_s + per_epoch * eval_s)
    # The top-k, the recipe's trial (the control) and the untuned model on the test splits; the
    # top-k and the recipe on validation too (the paired comparisons, ``tuning.control``).
    scored = search.top_k + int(search.start_from_recipe)
    scoring_s = ((scored + 1) * test_pairs + scored * n_val) / throughput.eval_pairs_s
    few = min(search.num_samples, 2 * concurrent)
    waves = math.ceil(few / concurrent)
    budget = search.time_budget
    plan = FidelityPlan(
        throughput,
        concurrent,
        int(rung_pairs),
        rung_s(rung_pairs),
        trial_s,
        scoring_s,
        every,
        search.grace_period,
    )
    if not budget or waves * rung_s(rung_pairs) <= budget / 2:
        return plan
    # The first rung of `few` trials should take at most half the budget: the rest ranks them.
    floor = 4 * training.batch_size
    if rung_pairs <= floor:  # already as short as a first rung gets: it fits the budget or nothing does
        if waves * rung_s(rung_pairs) <= budget:
            return plan
        pairs = int(rung_pairs)
    else:
        target = (budget / 2 / waves - eval_s) / train_s
        pairs = int(max(floor, min(rung_pairs, target)) // training.batch_size * training.batch_size)
    if waves * rung_s(pairs) > budget:
        raise BudgetTooSmall(
            f"the time budget ({_duration(budget)}) cannot hold the first rung of {few} trials on this machine: "
            f"measured {throughput.train_pairs_s:.1f} training and {throughput.eval_pairs_s:.1f} validation "
            f"pairs/s per trial in {throughput.precision} ({throughput.threads} thread(s)), so even a first rung of "
            f"{pairs:,} pairs and one validation of {n_val:,} pairs takes ~{_duration(rung_s(pairs))} per wave of "
            f"{concurrent}. Give a longer --time-budget (at least {_duration(2 * waves * rung_s(pairs))}), a smaller "
            "--data.validation_size, fewer layers (--model.num_hidden_layers), or drop --time-budget."
        )
    grace = pairs / n_train
    changed = (
        f"To fit the budget, the first rung was cut from {int(rung_pairs):,} to {pairs:,} pairs "
        f"(training.eval_every_pairs {every} -> {pairs}, search.grace_period {search.grace_period:g} -> {grace:.4g})"
    )
    return replace(
        plan,
        first_rung_pairs=pairs,
        first_rung_s=rung_s(pairs),
        trial_s=training.num_epochs * (n_train * train_s + round(n_train / pairs) * eval_s),
        eval_every_pairs=pairs,
        grace_period=grace,
        changed=changed,
    )


def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def prepare(exp: Any, splits: Any, cpus: int, local: bool = True) -> Any:
    """Resolve ``exp``'s machine-dependent settings in place, before the search, and say why.

    The precision (where trials train here, ``local``; on a cluster each trial resolves ``auto``
    on its own node), then one trial's throughput measured with the real model, the time of a
    rung and of a trial, and the fidelity fitted to ``search.time_budget``.

    Args:
        exp: the ``ExperimentConfig``, its per-trial resources already resolved
            (:func:`resolve_resources`).
        splits: the loaded splits (``train``, ``validation``, the test splits).
        cpus: CPU cores trials share (for how many run side by side).
        local: trials run on this machine (else only the precision request is recorded).

    Returns:
        A ``store.MachinePlan`` for ``experiment.json``.

    Raises:
        BudgetTooSmall: the time budget cannot hold the first rung of a few trials.
    """
    from tuning.store import MachinePlan
    from tuning.trial_config import TrialSettings, trial_config

    search, training = exp.search, exp.training
    if local:
        cuda = bool(search.gpus_per_trial) and torch.cuda.is_available()
        choice = resolve_precision(training.precision, cuda=cuda, model=exp.model.name_or_path)
    else:
        choice = PrecisionChoice(training.precision, training.precision, "resolved by each trial on its node")
    training.precision = choice.precision
    plan = MachinePlan(
        precision=choice.precision,
        precision_requested=choice.requested,
        precision_reason=choice.reason,
        precision_warning=choice.warning,
        cpus_per_trial=search.cpus_per_trial,
        gpus_per_trial=search.gpus_per_trial,
    )
    if not local:
        return plan
    settings = TrialSettings.from_dict(trial_config(exp))
    gpus = torch.cuda.device_count()
    fits = [cpus / search.cpus_per_trial] + ([gpus / search.gpus_per_trial] if search.gpus_per_trial else [])
    concurrent = max(1, int(min(fits)))
    if search.max_concurrent_trials:
        concurrent = min(concurrent, search.max_concurrent_trials)
    gpu = bool(search.gpus_per_trial)
    if gpu or concurrent == 1:
        throughput = probe_throughput(settings, splits, gpu=gpu)
    else:
        # CPU trials side by side share caches, memory bandwidth and (on SMT vCPUs) the cores
        # themselves: a trial alone ran 2x faster than each of two side by side on a 2-vCPU
        # machine (measured, issue 24). So the probe uses every core the trials will share and
        # gives each trial its share: conservative where the cores scale well.
        shared = replace(settings, threads=max(1, min(cpus, int(settings.threads * concurrent))))
        whole = probe_throughput(shared, splits)
        throughput = replace(
            whole,
            train_pairs_s=whole.train_pairs_s / concurrent,
            eval_pairs_s=whole.eval_pairs_s / concurrent,
            threads=settings.threads,
        )
    sizes = {name: len(split) for name, split in splits.items()}
    tests = sum(n for name, n in sizes.items() if name not in ("train", "validation"))
    fidelity = plan_fidelity(throughput, training, search, sizes, concurrent, tests)
    if fidelity.changed:
        training.eval_every_pairs, search.grace_period = fidelity.eval_every_pairs, fidelity.grace_period
    return plan.model_copy(
        update={
            "train_pairs_s": throughput.train_pairs_s,
            "eval_pairs_s": throughput.eval_pairs_s,
            "concurrent": concurrent,
            "first_rung_pairs": fidelity.first_rung_pairs,
            "first_rung_s": fidelity.first_rung_s,
            "trial_s": fidelity.trial_s,
            "scoring_s": fidelity.scoring_s,
            "fidelity": fidelity.summary(search.time_budget),
        }
    )
