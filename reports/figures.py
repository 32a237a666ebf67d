"""Figures beside ``report.md``: PNG files written with matplotlib (Agg, no display).

Each function draws from what the report already computed (records, rows, importances) and
returns the file name it wrote in ``folder``, or ``None`` when there is nothing to draw. The
names are fixed, so rebuilding a report rewrites the same files and links.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from reports.importance import METRICS, Importance
from tuning.metrics import MODES
from tuning.ranking import Row, ranked
from tuning.store import EPOCH, PAIRS, TrialRecord, TrialStatus

COMPARE_PNG = "compare.png"
CURVES_PNG = "learning_curves.png"
PARETO_PNG = "pareto.png"
IMPORTANCE_PNG = "importance.png"
COST_PNG = "cost_front.png"
FIGURE_FILES = (COMPARE_PNG, CURVES_PNG, PARETO_PNG, IMPORTANCE_PNG, COST_PNG)

# How each way a trial ended is marked at its last epoch: (marker, colour, legend text).
END_MARKERS: dict[TrialStatus, tuple[str, str | None, str]] = {
    "finished": ("o", None, "finished"),
    "stopped": ("X", "tab:red", "stopped early by ASHA"),
    "budget": ("D", "tab:orange", "stopped by the time budget"),
    "failed": ("v", "black", "failed"),
    "incomplete": ("s", "tab:gray", "incomplete"),
    "unreadable": ("P", "tab:purple", "unreadable (a file could not be read)"),
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(plt: Any, n: int, width: float, height: float) -> tuple[Any, list[Any]]:
    """A figure of ``n`` panels, at most 3 a row; unused cells hidden."""
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _save(plt: Any, fig: Any, folder: str | Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(Path(folder, name), dpi=110)
    plt.close(fig)
    return name


def learning_curves(
    trials: list[TrialRecord],
    stages: list[str],
    folder: str | Path,
    metric: str = "pearson",
    winners: dict[str, str] | None = None,
    recipes: dict[str, str] | None = None,
) -> str | None:
    """Draw :func:`curves_figure` into ``folder``; the file name, or ``None`` with nothing to draw."""
    fig = curves_figure(trials, stages, metric, winners, recipes)
    return None if fig is None else _save(_pyplot(), fig, folder, CURVES_PNG)


def curves_figure(
    trials: list[TrialRecord],
    stages: list[str],
    metric: str = "pearson",
    winners: dict[str, str] | None = None,
    recipes: dict[str, str] | None = None,
) -> Any:
    """Validation ``metric`` over training pairs seen (epochs for records without ``pairs``),
    one panel per stage: the stage's winner drawn bold and labelled with its best value, the
    recipe trial dashed and labelled ``recipe``, every other trial faint; the last point of each
    line marks how the trial ended (ASHA stops as red crosses); a legend in every panel.

    Args:
        trials: the trial records (any stages; those of ``stages`` with a ``metric`` are drawn).
        stages: the panels, in order.
        metric: the validation metric drawn.
        winners: stage -> its winning trial id (``stage.json``'s winner); default: each stage's
            best trial by ``metric``, chosen as the stage chose it (``tuning.ranking.ranked``).
        recipes: stage -> the trial that ran the file's own values (:func:`recipe_trials`).

    Returns:
        The matplotlib ``Figure`` (the caller saves or closes it), or ``None`` when no trial of
        ``stages`` reported ``metric``.
    """
    by_stage = {
        s: [t for t in trials if t.stage == s and any(e.get(metric) is not None for e in t.reports)]
        for s in stages
    }
    by_stage = {s: ts for s, ts in by_stage.items() if ts}
    if not by_stage:
        return None
    plt = _pyplot()
    fig, axes = _panels(plt, len(by_stage), 4.6, 3.3)
    for ax, (stage, stage_trials) in zip(axes, by_stage.items()):
        winner = (winners or {}).get(stage) or _best_trial(stage_trials, metric)
        _draw_stage(ax, stage_trials, metric, winner, (recipes or {}).get(stage))
        ax.set_title(f"{stage} ({len(stage_trials)} trials)", fontsize=9)
    return fig


def _best_trial(trials: list[TrialRecord], metric: str) -> str | None:
    rows = ranked(trials, metric)
    return rows[0].trial_id if rows else None


def _draw_stage(
    ax: Any, trials: list[TrialRecord], metric: str, winner: str | None, recipe: str | None
) -> None:
    """One panel: the other trials first (faint), then the recipe, then the winner on top."""
    from matplotlib.lines import Line2D

    x = PAIRS if all(PAIRS in e for t in trials for e in t.reports if e.get(metric) is not None) else EPOCH
    order = {winner: 2, recipe: 1}
    handles: dict[str, Any] = {}
    ended: set[str] = set()
    for t in sorted(trials, key=lambda t: (order.get(t.trial_id, 0), t.trial_id)):
        points = [(e[x], e[metric]) for e in t.reports if e.get(metric) is not None]
        best = max(v for _, v in points) if MODES.get(metric) != "min" else min(v for _, v in points)
        if t.trial_id == winner:
            role = "winner (the recipe)" if t.trial_id == recipe else "winner"
            style = {"color": "tab:blue", "linewidth": 2.4, "alpha": 1.0, "zorder": 4}
            label = f"{role} {t.trial_id} ({metric} {best:.4f})"
        elif t.trial_id == recipe:
            style = {"color": "tab:green", "linewidth": 1.8, "linestyle": "--", "alpha": 1.0, "zorder": 3}
            label = f"recipe {t.trial_id} ({metric} {best:.4f})"
        else:
            style = {"color": "tab:gray", "linewidth": 0.9, "alpha": 0.35, "zorder": 2}
            label = "other trials"
        (line,) = ax.plot(*zip(*points), **style)
        handles.setdefault(label, line)
        status = t.status if t.status in END_MARKERS else "incomplete"
        marker, colour, _ = END_MARKERS[status]
        ax.plot(*points[-1], marker=marker, color=colour or style["color"], markersize=6, zorder=5)
        ended.add(status)
    ends = [
        Line2D([], [], linestyle="", marker=m, color=c or "dimgray", label=text)
        for status, (m, c, text) in END_MARKERS.items()
        if status in ended
    ]
    # Winner, recipe, the rest: the reverse of the drawing order (the winner is drawn on top).
    lines = list(reversed(handles.items()))
    ax.legend(
        handles=[h for _, h in lines] + ends,
        labels=[k for k, _ in lines] + [h.get_label() for h in ends],
        fontsize=7,
        loc="lower right",
    )
    ax.set_xlabel("training pairs seen" if x == PAIRS else "epoch")
    ax.set_ylabel(f"validation {metric}")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.grid(alpha=0.3)


def pareto_scatter(rows: list[Row], front: list[Row], folder: str | Path) -> str | None:
    """Validation Pearson against F1 of every trial (its kept epoch), the Pareto front drawn as a
    line through its trials and labelled with their ids."""
    scored = [r for r in rows if "pearson" in r.metrics and "f1" in r.metrics]
    if not scored:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    on_front = {(r.stage, r.trial_id) for r in front}
    rest = [r for r in scored if (r.stage, r.trial_id) not in on_front]
    ax.scatter(
        [r.metrics["pearson"] for r in rest],
        [r.metrics["f1"] for r in rest],
        s=22,
        color="tab:gray",
        alpha=0.6,
        label="trial",
    )
    ordered = sorted(front, key=lambda r: r.metrics["pearson"])
    xs, ys = [r.metrics["pearson"] for r in ordered], [r.metrics["f1"] for r in ordered]
    ax.plot(xs, ys, color="tab:red", linewidth=1, alpha=0.6)
    ax.scatter(xs, ys, s=46, color="tab:red", zorder=3, label="Pareto front")
    for r in ordered:
        ax.annotate(
            r.trial_id,
            (r.metrics["pearson"], r.metrics["f1"]),
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
    ax.set_xlabel("validation Pearson")
    ax.set_ylabel("validation F1")
    ax.ticklabel_format(useOffset=False)
    ax.margins(0.12)  # room for the labels of the front's outer trials
    ax.set_title("Each trial's kept epoch: Pearson and F1", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(plt, fig, folder, PARETO_PNG)


def importance_chart(importances: list[Importance], folder: str | Path) -> str | None:
    """Horizontal bars: each varied hyperparameter's importance for Pearson and F1, a panel per
    stage with importances."""
    done = [imp for imp in importances if imp.values]
    if not done:
        return None
    plt = _pyplot()
    height = 1.6 + 0.45 * max(len(imp.params) for imp in done)
    fig, axes = _panels(plt, len(done), 4.8, height)
    width = 0.8 / len(METRICS)
    for ax, imp in zip(axes, done):
        ys = range(len(imp.params))
        for i, metric in enumerate(METRICS):
            if metric in imp.values:
                values = [imp.values[metric].get(p, 0.0) for p in imp.params]
                ax.barh([y + (i - (len(METRICS) - 1) / 2) * width for y in ys], values, width, label=metric)
        ax.set_yticks(list(ys), imp.params, fontsize=8)
        ax.invert_yaxis()  # most important on top
        ax.set_xlim(0, 1)
        ax.set_xlabel("importance (PED-ANOVA, sums to 1)")
        ax.set_title(f"{imp.stage} ({imp.trials} trials)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    return _save(plt, fig, folder, IMPORTANCE_PNG)


def compare_chart(rows: list[dict[str, Any]], folder: str | Path) -> str | None:
    """Bar chart per method: validation and test Pearson / F1 of the winner over seeds (± std).

    Returns:
        The file name written in ``folder``, or ``None`` when no method has seed results.
    """
    rows = [r for r in rows if r["seeds"] and r["seeds"]["validation"]["pearson"][2]]
    if not rows:
        return None
    plt = _pyplot()
    series = [("validation", "pearson"), ("validation", "f1")]
    test_split = next(iter(rows[0]["seeds"]["test"]), None)
    if test_split:
        series += [(test_split, "pearson"), (test_split, "f1")]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(rows), 4))
    for i, (split, metric) in enumerate(series):
        stats = [
            r["seeds"]["validation"][metric] if split == "validation" else r["seeds"]["test"][split][metric]
            for r in rows
        ]
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(rows))]
        ax.bar(
            xs, [s[0] for s in stats], width, yerr=[s[1] for s in stats], capsize=3, label=f"{split} {metric}"
        )
    ax.set_xticks(range(len(rows)), [r["method"] for r in rows])
    ax.set_ylabel("score (mean ± std over seeds)")
    low = min(s[0] - s[1] for r in rows for s in [r["seeds"]["validation"]["pearson"]])
    ax.set_ylim(max(0.0, low - 0.15), 1.0)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    ax.set_title("Each method's winner, re-run over seeds")
    fig.tight_layout()
    fig.savefig(Path(folder, COMPARE_PNG), dpi=120)
    plt.close(fig)
    return COMPARE_PNG
