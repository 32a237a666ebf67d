"""Hyperparameter importance: which searched hyperparameters decided a stage's scores. Pure.

The stored trials become Optuna ``FrozenTrial`` objects (values: each trial's best epoch by the
search metric, as in the rankings; distributions: the stage's ``space`` in ``stage.json``), and
Optuna's PED-ANOVA evaluator scores them. PED-ANOVA is Optuna 5's default evaluator and needs
nothing beyond numpy; fANOVA and mean-decrease-impurity need scikit-learn's random forests,
which this project does not install. PED-ANOVA is deterministic (no seed to set): it compares
where the best trials' values lie (a Parzen estimate on a grid) with where all trials' lie.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from tuning.store import ExperimentRecord, StageRecord, TrialRecord

MIN_TRIALS = 4
"""Fewer trials with a score than this and importance is noise: the section says so instead."""
METRICS = ("pearson", "f1")
EVALUATOR = "PED-ANOVA (Optuna)"


@dataclass
class Importance:
    """A stage's hyperparameter importances, or why they were not computed."""

    stage: str
    params: list[str] = field(default_factory=list)
    """The hyperparameters that varied, most important (for the first metric) first."""
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    """metric -> hyperparameter -> importance (each metric's importances sum to 1)."""
    trials: int = 0
    """Trials the importances were computed from."""
    top: dict[str, int] = field(default_factory=dict)
    """metric -> how many best trials PED-ANOVA compared with all of them."""
    skipped: str | None = None
    """Why nothing was computed, in words; ``None`` when ``values`` holds the result."""
    notes: list[str] = field(default_factory=list)
    """Metrics left out, and why (e.g. every trial had the same F1)."""


def distribution(spec: Any, name: str | None = None) -> Any:
    """A ``space`` entry of ``stage.json`` -> Optuna distribution; ``None`` for a fixed value.

    The entry is read by ``tuning.spaces.parse_domain`` (the one reader of the space grammar);
    with the hyperparameter's ``name``, listed values are read as its type, as the trials got them.
    An entry it refuses (a hand-edited file) counts as not searched.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from tuning.spaces import parse_domain  # here: importing it imports Ray Tune

    try:
        domain = parse_domain(spec, name)
    except ValueError:
        return None
    if domain is None:
        return None
    if domain.kind in ("choice", "grid"):
        return CategoricalDistribution(list(domain.values))
    if domain.kind == "randint":
        return IntDistribution(int(domain.low), int(domain.high))
    return FloatDistribution(domain.low, domain.high, log=domain.kind == "loguniform")


def top_count(values: list[float]) -> int:
    """How many of the best trials PED-ANOVA compares with all: about 5 (its documentation asks
    for at least 5), at least the best 10% and at most the better half of ``values`` (higher is
    better), moved to the nearest place where the scores differ so that tied trials are never
    split (small validation sets give many equal F1 scores). 0 when all scores are equal."""
    ranked = sorted(values, reverse=True)
    n = len(ranked)
    want = round(min(0.5, max(0.1, 5 / n)) * n) or 1
    # A boundary after position k (1-based) exists where the k-th and (k+1)-th scores differ.
    cuts = [k for k in range(1, n) if ranked[k - 1] > ranked[k]]
    if not cuts:
        return 0
    return min(cuts, key=lambda k: (abs(k - want), k))


def _frozen(trials: list[TrialRecord], dists: dict[str, Any], metric: str, by: str) -> list[Any]:
    """FrozenTrials of the trials with a score whose values all lie in the distributions."""
    import optuna

    out = []
    for t in trials:
        best = t.best(by)
        value = best.get(metric) if best else None
        params = {k: t.params.get(k) for k in dists}
        if value is None or not math.isfinite(value) or any(v is None for v in params.values()):
            continue
        try:
            out.append(optuna.trial.create_trial(params=params, distributions=dists, value=float(value)))
        except ValueError:  # a value outside the stored space (e.g. the file was edited)
            continue
    return out


def stage_importance(stage: StageRecord, trials: list[TrialRecord], by: str = "pearson") -> Importance:
    """Importances of the stage's searched hyperparameters for validation Pearson and F1.

    Args:
        stage: the stage's record (``stage``, ``space``, ``scheduler``).
        trials: the stage's trials; each one counts with its best epoch by ``by`` (an ASHA-stopped
            trial with the best epoch it reached), failed trials without a score do not count.
        by: the search metric that picks each trial's best epoch.
    """
    name = stage.stage
    if stage.scheduler == "PopulationBasedTraining":
        return Importance(
            name, skipped="PBT changes hyperparameters during a trial, so no value belongs to one setting."
        )
    dists = {k: distribution(v, k) for k, v in sorted(stage.space.items())}
    dists = {k: d for k, d in dists.items() if d is not None and not d.single()}
    scored = [t for t in trials if (t.best(by) or {}).get(METRICS[0]) is not None]
    # 1. Hyperparameters that took at least two values among the scored trials.
    varying = [k for k in dists if len({repr(t.params.get(k)) for t in scored}) > 1]
    if len(varying) < 2:
        shown = f" ({', '.join(varying)})" if varying else ""
        return Importance(
            name,
            params=varying,
            trials=len(scored),
            skipped=f"{len(varying)} hyperparameter{'' if len(varying) == 1 else 's'} varied{shown}; "
            "importance compares at least 2.",
        )
    dists = {k: dists[k] for k in varying}
    # 2. Trials as Optuna sees them, one list per metric.
    frozen = {m: _frozen(scored, dists, m, by) for m in METRICS}
    n = len(frozen[METRICS[0]])
    if n < MIN_TRIALS:
        return Importance(
            name,
            params=varying,
            trials=n,
            skipped=f"{n} trial{'' if n == 1 else 's'} with a validation score; importance needs at least {MIN_TRIALS}.",
        )
    # 3. PED-ANOVA per metric, comparing the best trials with all of them.
    values, top, notes = {}, {}, []
    for metric, ts in frozen.items():
        if len(ts) < MIN_TRIALS:
            notes.append(f"{metric}: {len(ts)} trials with a score, fewer than {MIN_TRIALS}.")
            continue
        k = top_count([t.value for t in ts])
        if not k:
            notes.append(f"{metric}: all {len(ts)} trials scored the same.")
            continue
        # Optuna keeps the trials at or above the ceil(q * n)-th best score: q = (k - 0.5) / n picks k.
        values[metric], top[metric] = _ped_anova(ts, (k - 0.5) / len(ts)), k
    if METRICS[0] not in values:
        return Importance(
            name, params=varying, trials=n, skipped=f"all {n} trials scored the same {METRICS[0]}."
        )
    order = sorted(varying, key=lambda k: (-values[METRICS[0]][k], k))
    return Importance(name, params=order, values=values, trials=n, top=top, notes=notes)


def _ped_anova(trials: list[Any], quantile: float) -> dict[str, float]:
    """Normalized importances of a maximized objective's trials (an in-memory Optuna study)."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        study = optuna.create_study(direction="maximize")
        study.add_trials(trials)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "target and region select the same trials" etc.
            result = get_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(target_quantile=quantile)
            )
    finally:
        optuna.logging.set_verbosity(verbosity)
    return {k: float(v) for k, v in result.items()}


def experiment_importances(exp: ExperimentRecord) -> list[Importance]:
    """Every stage's importances (or why not), in the order the stages ran."""
    return [stage_importance(s, exp.stage_trials(s.stage), s.metric) for s in exp.stages]


def domain_text(spec: Any) -> str:
    """A ``space`` entry in words: ``loguniform 1e-05..0.0002``, ``choice 8, 16``."""
    if not isinstance(spec, dict):
        return f"fixed {spec}"
    if "values" in spec:
        return f"{spec['type']} {', '.join(str(v) for v in spec['values'])}"
    return f"{spec['type']} {spec['low']}..{spec['high']}"
