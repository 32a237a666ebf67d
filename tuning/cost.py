"""Serving cost: what a configuration costs at every request, measured on this machine.

A model's serving cost is set by a few model settings — encoder depth (``num_hidden_layers``,
the bottom k layers of the pretrained encoder), ``max_length`` and ``architecture`` — not by how
it was trained. So each distinct *cost level* (a combination of those) a search space can reach
is measured once, before the search, with the project's own scorer
(:class:`tuning.serving.scorer.ServedModel`) on held-out sentences, and cached in
``<experiment>/serving_cost.json``. Each trial reports its level's figures with its metrics, so
Optuna can optimise accuracy and cost together (``search.cost``) and the report can draw the
front.

Two figures per level: ``latency_ms``, the median time to score one pair (a request), and
``pairs_per_s``, pairs scored per second in batches of 32 (a bulk job).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

COST_KEYS = ("architecture", "num_hidden_layers", "max_length")
"""The model settings that set a model's serving cost."""
LATENCY_MS = "latency_ms"
PAIRS_PER_S = "pairs_per_s"
COST_MODES = {LATENCY_MS: "min", PAIRS_PER_S: "max"}
"""The figures a search may optimise as its second objective (``search.cost``), and their direction."""
COST_FILE = "serving_cost.json"
SERVING_COST = "serving_cost"
"""The trial config's key for the measured levels (level -> figures)."""
MAX_LEVELS = 24
BATCH = 32


@dataclass(frozen=True)
class Cost:
    """One cost level's measured serving cost."""

    latency_ms: float
    """Median milliseconds to score one pair."""
    pairs_per_s: float
    """Pairs scored per second, 32 at a time."""
    threads: int
    """Torch threads the scorer used (this machine's default)."""
    seconds: float
    """How long the measurement took."""


def level_key(model: dict[str, Any]) -> str:
    """A cost level's name: ``bi layers=6 max_length=64`` (``layers=all``: the model's own depth;
    no ``/``, which Ray's searchers read as nesting)."""
    layers = model.get("num_hidden_layers") or "all"
    return f"{model.get('architecture')} layers={layers} max_length={model.get('max_length')}"


class CostSpaceError(ValueError):
    """The space searches a cost setting over values that cannot be listed."""


def cost_levels(model: dict[str, Any], searched: dict[str, Any]) -> list[dict[str, Any]]:
    """The model sections of every cost level ``searched`` can reach, in order.

    Args:
        model: the fixed ``model`` section of the trial config.
        searched: setting name -> Ray Tune domain or grid (``tuning.spaces.to_tune``).

    Raises:
        CostSpaceError: a cost setting is searched over a continuous range, or the levels are
            more than :data:`MAX_LEVELS` (each is measured before the search).
    """
    from ray.tune.search.sample import Categorical, Integer

    values: dict[str, list[Any]] = {}
    for key in COST_KEYS:
        domain = searched.get(key)
        if domain is None:
            continue
        if isinstance(domain, dict) and "grid_search" in domain:
            values[key] = list(domain["grid_search"])
        elif isinstance(domain, Categorical):
            values[key] = list(domain.categories)
        elif isinstance(domain, Integer):
            values[key] = list(range(int(domain.lower), int(domain.upper)))  # Tune's upper is exclusive
        else:
            raise CostSpaceError(
                f"space: {key} is a cost setting and must be searched over listed values "
                f"(type: choice, grid or randint), so that each level is measured once before the search."
            )
    combos = list(itertools.product(*values.values())) if values else [()]
    if len(combos) > MAX_LEVELS:
        raise CostSpaceError(
            f"space: {' x '.join(values)} make {len(combos)} cost levels; at most {MAX_LEVELS} are "
            "measured before a search. List fewer values."
        )
    return [{**model, **dict(zip(values, combo))} for combo in combos]


def measure(model_section: dict[str, Any], pairs: Sequence[tuple[str, str]], repeats: int = 30) -> Cost:
    """Time the project's scorer on ``pairs`` with the model of ``model_section`` (untrained
    head: the cost does not depend on the weights), in this process, fp32, on the CPU: the
    median of ``repeats`` one-pair calls, and the rate of the fastest of 3 passes over the same
    256 pairs in batches of 32 (after warm-up calls: one timing on a shared machine is noisy,
    and other work only ever slows a pass down)."""
    from tuning.model import build_model, load_tokenizer
    from tuning.serving.scorer import ServedModel
    from tuning.settings import ModelConfig

    started = time.perf_counter()
    config = ModelConfig(**model_section)
    tokenizer = load_tokenizer(config, [a for a, _ in pairs] + [b for _, b in pairs])
    model = build_model(config, tokenizer)
    served = ServedModel(model.eval(), tokenizer, Path("."), config.max_length)
    one = list(pairs[: max(repeats, 1)])
    served.score(one[:3], batch_size=1)  # warm-up
    times = []
    for pair in one:
        t = time.perf_counter()
        served.score([pair], batch_size=1)
        times.append(time.perf_counter() - t)
    bulk = list(itertools.islice(itertools.cycle(pairs), 8 * BATCH))
    served.score(bulk[: 2 * BATCH], batch_size=BATCH)  # warm-up
    rounds = []
    for _ in range(3):
        t = time.perf_counter()
        served.score(bulk, batch_size=BATCH)
        rounds.append(time.perf_counter() - t)
    return Cost(
        float(np.median(times)) * 1000,
        len(bulk) / min(rounds),
        torch.get_num_threads(),
        time.perf_counter() - started,
    )


def probe_pairs(split: Any, n: int = 256) -> list[tuple[str, str]]:
    """The sentence pairs the cost is measured on: the first ``n`` of a split no model trains on."""
    return list(zip(split["sentence1"], split["sentence2"]))[:n]


def full_depth(model: dict[str, Any]) -> dict[str, Any]:
    """``model`` with its depth spelled out (``None``: the encoder's own, read from its config),
    so the whole model and the same depth searched are one cost level."""
    if model.get("num_hidden_layers") is not None:
        return model
    from tuning.model import encoder_depth

    return {**model, "num_hidden_layers": encoder_depth(str(model.get("name_or_path")))}


def read_costs(experiment_dir: str | Path) -> dict[str, Cost]:
    """The experiment's measured levels (empty when none were measured)."""
    path = Path(experiment_dir, COST_FILE)
    if not path.is_file():
        return {}
    return {k: Cost(**v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}


def measure_levels(
    experiment_dir: str | Path,
    levels: list[dict[str, Any]],
    pairs: Sequence[tuple[str, str]],
    log: Any = print,
) -> dict[str, Cost]:
    """Each level's cost, measured once: levels already in ``serving_cost.json`` are reused."""
    from tuning import store

    costs = read_costs(experiment_dir)
    for level in levels:
        key = level_key(level)
        if key in costs:
            continue
        costs[key] = measure(level, pairs)
        c = costs[key]
        log(
            f"serving cost {key}: {c.latency_ms:.1f} ms a pair, {c.pairs_per_s:.0f} pairs/s "
            f"at batch {BATCH} ({c.threads} threads, measured in {c.seconds:.0f} s)"
        )
        store.write_json(Path(experiment_dir, COST_FILE), {k: asdict(v) for k, v in costs.items()})
    return costs


def cost_table(costs: dict[str, Cost]) -> dict[str, dict[str, float]]:
    """What travels to each trial (``serving_cost`` in its config): level -> figures."""
    return {k: {LATENCY_MS: c.latency_ms, PAIRS_PER_S: c.pairs_per_s} for k, c in costs.items()}


def trial_cost(report: dict[str, Any], cost: str) -> float | None:
    """A report's cost figure (``latency_ms`` or ``pairs_per_s``), if it carries one."""
    value = report.get(cost)
    return float(value) if isinstance(value, (int, float)) else None


def front(points: Sequence[tuple[float, float]], metric_mode: str, cost: str) -> list[int]:
    """Indices of the non-dominated ``(metric, cost)`` points: no other point is at least as
    good on both and better on one (the metric in ``metric_mode``'s direction, the cost in
    :data:`COST_MODES`'). Ordered from the cheapest."""
    m = 1.0 if metric_mode == "max" else -1.0
    c = -1.0 if COST_MODES[cost] == "min" else 1.0
    keyed = [(m * a, c * b) for a, b in points]  # both larger-is-better
    out = []
    for i, (a, b) in enumerate(keyed):
        dominated = any(
            (a2 >= a and b2 >= b) and (a2 > a or b2 > b) for j, (a2, b2) in enumerate(keyed) if j != i
        )
        if not dominated:
            out.append(i)
    return sorted(out, key=lambda i: -keyed[i][1])


def select(candidates: Sequence[tuple[float, float]], rule: float, metric_mode: str, cost: str) -> int:
    """The index of the candidate ``search.select`` picks: the cheapest whose metric is within
    ``rule`` of the best metric (``rule`` 0: the best; ties on cost go to the better metric)."""
    m = 1.0 if metric_mode == "max" else -1.0
    c = 1.0 if COST_MODES[cost] == "min" else -1.0
    best = max(m * a for a, _ in candidates)
    near = [i for i, (a, _) in enumerate(candidates) if m * a >= best - rule - 1e-12]
    return min(near, key=lambda i: (c * candidates[i][1], -m * candidates[i][0]))
