"""The report's "accuracy against serving cost" section and its figure (``search.cost``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reports.figures import COST_PNG
from reports.tables import table
from tuning.cost import LATENCY_MS, PAIRS_PER_S, front, full_depth, level_key, read_costs
from tuning.store import ExperimentRecord, TestScore, trial_value


def cost_stage(exp: ExperimentRecord) -> str | None:
    """The cost the search optimised with its metric, if any."""
    return next((s.cost for s in exp.stages if s.cost), None)


def _split(score: TestScore) -> str | None:
    """The first held-out split (KorSTS test in the profiles)."""
    return next(iter(score.test), None)


def scored_points(exp: ExperimentRecord) -> list[TestScore]:
    """The scored models that carry a measured cost, each once."""
    seen, out = set(), []
    for s in exp.test_scores:
        if s.cost and (s.stage, s.trial_id) not in seen:
            seen.add((s.stage, s.trial_id))
            out.append(s)
    return out


def _depth(score: TestScore) -> Any:
    layers = score.params.get("num_hidden_layers")
    return layers if layers is not None else "all"


def untuned_cost(exp: ExperimentRecord) -> dict[str, float] | None:
    """The untuned model's measured cost (its level, the experiment's fixed model), if measured."""
    level = read_costs(exp.path).get(level_key(full_depth(dict(vars(exp.meta.settings.model)))))
    return {LATENCY_MS: level.latency_ms, PAIRS_PER_S: level.pairs_per_s} if level else None


def marks(exp: ExperimentRecord) -> tuple[str | None, str | None]:
    """``stage/trial`` of the recipe's trial and of the exported model (what ``--select`` chose,
    else the winner), for the table's notes and the figure's markers."""
    control, selection = exp.meta.control, exp.meta.selection
    recipe = control.recipe if control else None
    exported = selection.chosen if selection else (control.winner if control else None)
    return recipe, exported


def cost_section(exp: ExperimentRecord, figures: dict[str, str]) -> list[str]:
    """Each measured cost level, the scored models with their held-out Pearson and cost, the
    validation front, what ``search.select`` exported, and the figure."""
    cost = cost_stage(exp)
    if not cost:
        return []
    metric = exp.metric
    costs = read_costs(exp.path)
    out = ["## Accuracy against serving cost", ""]
    if costs:
        any_cost = next(iter(costs.values()))
        out += [
            f"Measured before the search, on the machine it ran on, with the project's scorer (fp32, {any_cost.threads} "
            f"threads): the median latency of one pair, and pairs/s scored 32 at a time, per cost level "
            f"(`serving_cost.json`). The search optimised validation {metric} and `{cost}` together.",
            "",
            table(
                ["cost level", "latency (ms)", "pairs/s", "speed-up (pairs/s)"],
                [
                    [
                        k,
                        round(c.latency_ms, 1),
                        round(c.pairs_per_s),
                        f"{c.pairs_per_s / min(x.pairs_per_s for x in costs.values()):.2f}x",
                    ]
                    for k, c in sorted(costs.items(), key=lambda kv: kv[1].latency_ms)
                ],
            ),
            "",
        ]
    points = scored_points(exp)
    if not points:
        return out
    split_names = list(points[0].test)
    on_front = {
        (points[i].stage, points[i].trial_id)
        for i in front([(p.validation.get(metric, float("nan")), p.cost[cost]) for p in points], "max", cost)
    }
    recipe, exported = marks(exp)
    header = ["model", "layers", "max_length", "latency (ms)", "pairs/s", f"validation {metric}"]
    header += [f"{s} pearson" for s in split_names] + ["on the validation front", "note"]
    body = []
    for p in sorted(points, key=lambda p: p.cost.get(LATENCY_MS, 0)):
        name = f"{p.stage}/{p.trial_id}"
        notes = [n for n, on in (("exported", name == exported), ("recipe", name == recipe)) if on]
        body.append(
            [f"`{name}`", _depth(p), trial_value(p.params, "max_length") or exp.meta.settings.model.max_length,
             round(p.cost.get(LATENCY_MS, float("nan")), 1), round(p.cost.get(PAIRS_PER_S, float("nan"))),
             p.validation.get(metric, "-")]
            + [p.test[s].get("pearson", "-") for s in split_names]
            + ["yes" if (p.stage, p.trial_id) in on_front else "", ", ".join(notes)]
        )  # fmt: skip
    untuned = exp.meta.untuned
    u_cost = untuned_cost(exp)
    if untuned:
        body.append(
            ["untuned", exp.meta.settings.model.num_hidden_layers or "all", exp.meta.settings.model.max_length,
             round(u_cost[LATENCY_MS], 1) if u_cost else "-", round(u_cost[PAIRS_PER_S]) if u_cost else "-",
             untuned.validation.get(metric, "-")]
            + [untuned.test.get(s, {}).get("pearson", "-") for s in split_names]
            + ["", "the pretrained model, not fine-tuned"]
        )  # fmt: skip
    out += [
        f"The scored models (the top {exp.meta.settings.search.top_k}, the recipe's trial, the trials on "
        f"the front of validation {metric} against `{cost}` and the best of each cost level), cheapest "
        "first; held-out splits took no part in choosing or stopping trials:",
        "",
        table(header, body),
        "",
    ]
    sel = exp.meta.selection
    if sel:
        chosen = next((p for p in points if f"{p.stage}/{p.trial_id}" == sel.chosen), None)
        best = next((p for p in points if f"{p.stage}/{p.trial_id}" == sel.best), None)
        if chosen and best and chosen is not best:
            ratio = (
                chosen.cost[PAIRS_PER_S] / best.cost[PAIRS_PER_S]
                if PAIRS_PER_S in chosen.cost
                else float("nan")
            )
            gaps = "; ".join(
                f"{s} {chosen.test[s]['pearson'] - best.test[s]['pearson']:+.4f}" for s in split_names
            )
            out += [
                f"`--select {sel.rule}` exported `{sel.chosen}` ({_depth(chosen)} layers, "
                f"{chosen.cost[LATENCY_MS]:.1f} ms a pair, {ratio:.2f}x the pairs/s of the best) instead of the "
                f"best by validation {metric}, `{sel.best}` ({_depth(best)} layers); held-out Pearson, exported "
                f"minus best: {gaps}.",
                "",
            ]
        else:
            out += [
                f"`--select {sel.rule}` exported the best by validation {metric}, `{sel.best}`: no cheaper model was within the gap.",
                "",
            ]
    if figures.get("cost"):
        out += [f"![Held-out Pearson against latency]({figures['cost']})", ""]
    return out


def cost_chart(exp: ExperimentRecord, folder: str | Path) -> str | None:
    """Held-out Pearson (the first test split) against the latency of one pair: every scored
    model, the held-out front as a line, the untuned model, the recipe and the exported model marked."""
    from reports.figures import _pyplot, _save

    cost = cost_stage(exp)
    points = [p for p in scored_points(exp) if LATENCY_MS in p.cost and _split(p)]
    if not cost or not points:
        return None
    split = str(_split(points[0]))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.8, 4.2))
    xs = [p.cost[LATENCY_MS] for p in points]
    ys = [p.test[split]["pearson"] for p in points]
    ax.scatter(xs, ys, s=26, color="tab:gray", alpha=0.7, label="scored model")
    idx = front(list(zip(ys, xs)), "max", LATENCY_MS)
    fx, fy = zip(*sorted((xs[i], ys[i]) for i in idx))
    ax.plot(fx, fy, color="tab:red", linewidth=1, marker="o", label="front (held-out)")
    for p, x, y in zip(points, xs, ys):
        ax.annotate(f"{_depth(p)}L", (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    recipe, exported = marks(exp)
    for p, x, y in zip(points, xs, ys):
        name = f"{p.stage}/{p.trial_id}"
        if name == recipe:
            ax.scatter([x], [y], s=120, marker="*", color="tab:blue", zorder=4, label="recipe")
        if name == exported:
            ax.scatter([x], [y], s=140, facecolors="none", edgecolors="black", zorder=5, label="exported")
    u_cost = untuned_cost(exp)
    untuned = exp.meta.untuned
    if untuned and u_cost and split in untuned.test:
        ax.scatter(
            [u_cost[LATENCY_MS]],
            [untuned.test[split]["pearson"]],
            s=60,
            marker="x",
            color="tab:green",
            label="untuned",
        )
    ax.set_xlabel("latency of one pair (ms, median)")
    ax.set_ylabel(f"{split} Pearson")
    ax.set_title("Accuracy against serving cost", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(plt, fig, folder, COST_PNG)
