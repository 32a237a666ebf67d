"""Markdown rendering of an experiment record: a pure function returning a string.

The same record and figure names always give the same bytes, so ``run_search.py report``
rebuilds an identical report from storage.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from reports.cost import cost_section
from reports.importance import EVALUATOR, METRICS, Importance, domain_text, experiment_importances
from reports.stages import compare_section, seeds_section, stages_section
from reports.tables import STATUS_TEXT, fmt, human, ranking_table, table
from tuning.ranking import Row, pareto_front, rank, to_rows
from tuning.store import (
    DEVICE,
    ELAPSED_S,
    PAIRS,
    Control,
    ExperimentRecord,
    Gap,
    MachinePlan,
    Soup,
    TestScore,
    Untuned,
    portable,
)


def render(exp: ExperimentRecord, figures: dict[str, str] | None = None) -> str:
    """The experiment's report as markdown; ``figures`` maps figure names to files beside it."""
    figures = figures or {}
    rows = to_rows(exp.trials, exp.metric)
    params = sorted({p for s in exp.stages for p in s.searched})
    importances = experiment_importances(exp)
    out = [f"# Tuning report: {exp.meta.settings.name}", ""]
    out += unreadable_section(exp)  # 0. what this report could not read, before anything it says
    out += summary_section(exp, rows, importances)  # 1. what ran and what won
    out += test_scores_section(exp)  # 2. the winners on the test split(s)
    out += cost_section(exp, figures)  # ... and against their serving cost
    out += compare_section(exp, figures)  # 3. what a comparing, seeded or staged method did
    out += seeds_section(exp)
    if len(exp.stages) > 1:
        out += stages_section(exp, rows)
    out += rankings_section(rows, params, figures, exp)  # 4. every trial, ranked
    out += importance_section(exp, importances, figures)  # 5. why: importance, learning curves
    out += curves_section(figures)
    tb = exp.meta.tensorboard_dir
    out += tensorboard_section(shown(exp, tb) if tb else None, Path(exp.path).name)  # 6. monitoring, ...
    out += disk_section(exp)
    out += reproducibility_section(exp)
    return "\n".join(out)


def shown(exp: ExperimentRecord, value: Any) -> Any:
    """``value`` with machine paths as a reader should see them (``tuning.store.portable``):
    relative to the experiment folder where it is now and where it was when the search ran (a
    moved folder's report names no old location), ``${SHARED}/...`` for the offline data."""
    settings = exp.meta.settings
    recorded = Path(settings.storage, settings.name)
    return (
        portable(portable(value, recorded), exp.path) if recorded.is_absolute() else portable(value, exp.path)
    )


def unreadable_section(exp: ExperimentRecord) -> list[str]:
    """The files the report could not read (torn, foreign, damaged), each with the cause."""
    if not exp.unreadable:
        return []
    return [
        "## Files that could not be read",
        "",
        "This report leaves out what they hold: a trial marked `unreadable` below is shown with only "
        "the reports that could be read (the rankings may miss its best epoch), and how it ended is "
        "not known. Restore the files from a copy and rebuild the report (`run_search.py report`).",
        "",
        *[f"- {problem}" for problem in exp.unreadable],
        "",
    ]


def summary_section(exp: ExperimentRecord, rows: list[Row], importances: list[Importance]) -> list[str]:
    """The method, model and data; trial counts; the best by Pearson and by F1; the untuned
    start; how the budget was spent; the most important hyperparameter."""
    meta = exp.meta
    settings = meta.settings
    counts = {s: sum(r.status == s for r in rows) for s in STATUS_TEXT}
    best_p = rank(rows, "pearson")[0] if rows else None
    best_f = rank(rows, "f1")[0] if rows else None
    out = [
        f"- Method: **{settings.method}**; model `{shown(exp, settings.model.name_or_path)}` "
        f"({settings.model.architecture}); data `{settings.data.source}`.",
        f"- Trials: {len(rows)} ({', '.join(f'{n} {STATUS_TEXT[s]}' for s, n in counts.items() if n)}); "
        f"trial-epochs trained: {sum(r.epochs_run for r in rows):.3g}; wall time: {(meta.wall_time_s or 0) / 60:.1f} min.",
        f"- Trials are ranked by each one's best epoch by validation **{exp.metric}** (the checkpoint it keeps).",
    ]
    if best_p and best_p.metrics:
        out.append(
            f"- Best by Pearson: `{best_p.stage}/{best_p.trial_id}` — Pearson {fmt(best_p.metrics['pearson'])}, "
            f"F1 {fmt(best_p.metrics.get('f1', float('nan')))}, with {_params(best_p)}."
        )
    if best_f and best_f.metrics:
        out.append(
            f"- Best by F1: `{best_f.stage}/{best_f.trial_id}` — F1 {fmt(best_f.metrics['f1'])}, "
            f"Pearson {fmt(best_f.metrics.get('pearson', float('nan')))}, with {_params(best_f)}."
        )
    top = _top(exp)
    if meta.untuned and best_p and best_p.metrics:
        out.append(untuned_line(meta.untuned, best_p.metrics["pearson"], top[0] if top else None))
    if meta.control:
        out.append(recipe_line(meta.control, trained_pairs(exp)))
        tied = tied_with_winner(meta.control)
        if tied:
            out.append(
                f"- Within noise on validation: `{meta.control.winner}` and {', '.join(f'`{t}`' for t in tied)} "
                "(paired bootstrap, see the ranking): the search cannot tell them apart; "
                f"`{meta.control.winner}` is the first by validation {exp.metric}, not a clear best."
            )
    if meta.soup:
        out.append(soup_line(meta.soup))
    out += budget_lines(exp)
    out += machine_lines(meta.hardware)
    decisive = [
        f"{i.params[0]} in `{i.stage}` ({fmt(i.values['pearson'][i.params[0]])})"
        for i in importances
        if i.values
    ]
    if decisive:
        out.append(f"- Most important hyperparameter for validation Pearson: {'; '.join(decisive)}.")
    return [*out, ""]


def machine_lines(plan: MachinePlan | None) -> list[str]:
    """What was resolved from the machine before the search (precision, resources, fidelity), and why."""
    if plan is None:
        return []
    out = [
        f"- Precision **{plan.precision}** (asked: {plan.precision_requested}; {plan.precision_reason}); "
        f"per trial {plan.cpus_per_trial:g} CPU, {plan.gpus_per_trial:g} GPU ({plan.resources or 'as asked'})."
    ]
    if plan.precision_warning:
        out.append(f"- Warning: {plan.precision_warning}")
    if plan.fidelity:
        out.append(f"- Before the search, {plan.fidelity}")
    return out


def _top(exp: ExperimentRecord) -> list[TestScore]:
    return [w for w in exp.test_scores if w.role == "top"]


def test_scores_section(exp: ExperimentRecord) -> list[str]:
    """The best configurations' test scores, and where the winner was exported."""
    top = _top(exp)
    if not top:
        return []
    splits = list(top[0].test)
    header = ["trial", "validation pearson", "validation f1"]
    header += [f"{s} {m}" for s in splits for m in ("pearson", "f1")]
    body = [
        [f"{w.stage}/{w.trial_id}", w.validation.get("pearson", "-"), w.validation.get("f1", "-")]
        + [w.test[s][m] for s in splits for m in ("pearson", "f1")]
        for w in top
    ]
    out = ["## Test scores of the best configurations", "", table(header, body), ""]
    if exp.meta.best_model:
        soup = exp.meta.soup
        sel = exp.meta.selection
        what = (
            f"`{sel.chosen}`, chosen by `--select {sel.rule}` (see below), is"
            if sel and sel.chosen != sel.best
            else f"The greedy soup of {', '.join(f'`{n}`' for n in soup.ingredients)} (see above) is"
            if soup and len(soup.ingredients) > 1
            else "The winner is"
        )
        out += [
            f"{what} exported to `{shown(exp, exp.meta.best_model)}` (in this report's folder): a "
            "sentence-transformers folder with a "
            "model card (load with `SentenceTransformer(dir)` for `bi`, `CrossEncoder(dir)` for `cross`, "
            "or `STSModel.from_pretrained(dir)`).",
            "",
        ]
    return out


def rankings_section(
    rows: list[Row], params: list[str], figures: dict[str, str], exp: ExperimentRecord
) -> list[str]:
    """Every trial ranked by validation F1 and by Pearson (each with its budget and interval),
    whether the top trials are apart beyond noise, and the Pareto front of the two metrics."""
    n = exp.meta.data_sizes.get("validation")
    out = ["## Ranking by validation F1", "", ranking_table(rows, "f1", params, n), ""]
    out += ["## Ranking by validation Pearson", "", ranking_table(rows, "pearson", params, n), ""]
    out += [
        "`pairs`: training pairs the kept checkpoint had seen (trials stopped early ran on less: their "
        f"scores are not comparable at equal budget). `pearson 95% CI`: Fisher's z over the {n or '?'} "
        "validation pairs, each trial on its own; the paired comparison of the top trials is below.",
        "",
    ]
    out += noise_lines(exp.meta.control)
    front = pareto_front(rows)
    if front:
        out += [
            "## Pareto front (Pearson and F1)",
            "",
            "Trials no other trial beats on both metrics: "
            + ", ".join(
                f"`{r.stage}/{r.trial_id}` ({fmt(r.metrics['pearson'])}, {fmt(r.metrics['f1'])})"
                for r in front
            ),
            "",
        ]
        if figures.get("pareto"):
            out += [f"![Pearson against F1, Pareto front highlighted]({figures['pareto']})", ""]
    return out


def curves_section(figures: dict[str, str]) -> list[str]:
    """The learning-curves figure, when drawn."""
    if not figures.get("curves"):
        return []
    return [
        "## Learning curves",
        "",
        "Validation Pearson at every report (each epoch, or every `training.eval_every_pairs` pairs) against "
        "training pairs seen, one line per trial: the stage's winner bold, the profile's recipe dashed, the "
        "others faint (see the legend); the last point shows how the trial ended (a red cross: stopped early "
        "by ASHA).",
        "",
        f"![Learning curves]({figures['curves']})",
        "",
    ]


def reproducibility_section(exp: ExperimentRecord) -> list[str]:
    """Command, commit, data fingerprint, machine, versions, devices, and the resolved config."""
    meta = exp.meta
    out = ["## Reproducibility", ""]
    for label, value in (
        ("Command", shown(exp, meta.command) or None),
        ("Git commit", meta.git_commit),
        ("Data fingerprint", meta.data_fingerprint or None),
        ("Split sizes", meta.data_sizes or None),
        ("Machine", meta.machine or None),
        ("Ray resources", meta.ray_resources),
        ("Package versions", meta.versions or None),
    ):
        if value is not None:
            out.append(f"- {label}: `{value}`")
    devices = Counter(str(e[DEVICE]) for t in exp.trials for e in t.reports[:1] if e.get(DEVICE))
    if devices:
        out.append("- Trials trained on: " + ", ".join(f"`{d}` ({n})" for d, n in sorted(devices.items())))
    return [*out, "", "Resolved configuration:", "", "```json", _json(shown(exp, meta.config)), "```", ""]


def untuned_line(untuned: Untuned, best: float, winner: TestScore | None = None) -> str:
    """How the winner compares with the pretrained model before any fine-tuning, on validation
    and on every test split both were scored on; says plainly whether tuning won."""
    start = untuned.validation["pearson"]
    pairs = [("validation", best, start)]
    for split, metrics in (winner.test if winner else {}).items():
        if split in untuned.test:
            pairs.append((split, metrics["pearson"], untuned.test[split]["pearson"]))
    shown = "; ".join(
        f"{split} {fmt(tuned)} vs {fmt(base)} ({tuned - base:+.4f})" for split, tuned, base in pairs
    )
    lost = [split for split, tuned, base in pairs if tuned <= base]
    verdict = (
        "tuning won on every split"
        if not lost
        else f"tuning did NOT beat the untuned model on {', '.join(lost)}"
    )
    return f"- Untuned start ({untuned.what}), Pearson, winner vs untuned: {shown}: **{verdict}**."


VERDICT_TEXT = {"better": "better", "tied": "tied (within noise)", "worse": "worse"}


def gap_text(gap: Gap) -> str:
    """``0.8182 vs 0.8100 (+0.0082, 95% CI +0.0021 to +0.0143)``."""
    return f"{fmt(gap.model)} vs {fmt(gap.other)} ({gap.gap:+.4f}, 95% CI {gap.low:+.4f} to {gap.high:+.4f})"


def trained_pairs(exp: ExperimentRecord) -> dict[str, int]:
    """``stage/trial_id`` -> training pairs the trial had seen at its last report."""
    out = {}
    for t in exp.trials:
        last = t.reports[-1] if t.reports else {}
        if last.get(PAIRS) is not None:
            out[f"{t.stage}/{t.trial_id}"] = int(last[PAIRS])
    return out


def recipe_line(control: Control, trained: dict[str, int] | None = None) -> str:
    """The winner against the recipe trained to the same budget, per held-out split, with a
    paired bootstrap interval and one verdict each; or why there is no such comparison.
    ``trained``: the pairs each trial trained (:func:`trained_pairs`), to tell the budget each
    trial had from the checkpoint it kept."""
    if control.recipe is None:
        return f"- Recipe control: none, {control.note}."
    trained = trained or {}
    budget_text = "; ".join(
        _budget(label, trained.get(name), kept)
        for label, name, kept in (
            ("recipe", control.recipe, control.recipe_pairs),
            ("winner", control.winner, control.winner_pairs),
        )
    )
    what = ", ".join(f"{k}={fmt(v)}" for k, v in control.recipe_params.items()) or "the fixed configuration"
    if control.recipe == control.winner and not control.exported:
        return (
            f"- Recipe control: the recipe's own trial `{control.recipe}` ({what}) is the winner: the "
            "search found nothing better on validation."
        )
    splits = "; ".join(
        f"{split} {gap_text(gap)}: **{VERDICT_TEXT[gap.verdict]}**" for split, gap in control.held_out.items()
    )
    ours = f"The exported {control.exported}" if control.exported else "Winner"
    return (
        f"- {ours} vs the recipe (`{control.recipe}`: {what}; never stopped early, it is the search's "
        f"control; {budget_text}; a kept checkpoint is the trial's best on validation), Pearson on "
        f"held-out pairs, paired bootstrap over {control.resamples} resamples: "
        f"{splits or 'no held-out split was scored'}."
    )


def soup_line(soup: Soup) -> str:
    """What was exported: the greedy soup's ingredients, what each candidate did on validation,
    and the soup's held-out gain over the best single trial (paired bootstrap)."""
    first = soup.ingredients[0]
    tried = "; ".join(
        f"`{name}` {'kept' if name in soup.ingredients else 'left out'} ({soup.metric} {fmt(value)})"
        for name, value in soup.tried.items()
    )
    skipped = "; ".join(f"`{name}` not averaged: {why}" for name, why in soup.skipped.items())
    how = "; ".join(t for t in (tried, skipped) if t)
    if len(soup.ingredients) == 1:
        return (
            f"- Exported model: `{first}`'s checkpoint. The greedy soup added no other checkpoint "
            f"(added one at a time, best first, only if validation {soup.metric} rose above "
            f"{fmt(soup.validation.get(soup.metric, float('nan')))}: {how or 'no other candidate'})."
        )
    gains = "; ".join(
        f"{split} {gap_text(gap)}: **{VERDICT_TEXT[gap.verdict]}**" for split, gap in soup.versus_best.items()
    )
    return (
        f"- Exported model: a greedy soup (uniform weight average, Wortsman et al. 2022) of "
        f"{', '.join(f'`{n}`' for n in soup.ingredients)}; validation {soup.metric} "
        f"{fmt(soup.validation.get(soup.metric, float('nan')))} ({how}). Against `{first}` alone, "
        f"Pearson on held-out pairs (validation chose the ingredients, so only these count): "
        f"{gains or 'no held-out split was scored'}."
    )


def _budget(label: str, trained: int | None, kept: int | None) -> str:
    """``the recipe trained 5,749 pairs and kept its checkpoint at 2,880``."""
    out = f"the {label} trained {trained:,} pairs" if trained is not None else f"the {label}"
    if kept is not None:
        out += (
            f" and kept its checkpoint at {kept:,}"
            if trained is not None
            else f" kept its checkpoint at {kept:,} pairs"
        )
    return out if trained is not None or kept is not None else f"the {label}'s budget unknown"


def tied_with_winner(control: Control | None) -> list[str]:
    """The scored top trials the winner does not beat beyond noise on validation."""
    return [name for name, gap in (control.runners_up if control else {}).items() if gap.verdict != "better"]


def noise_lines(control: Control | None) -> list[str]:
    """The winner against each other scored top trial on validation, paired bootstrap."""
    if not control or not control.runners_up:
        return []
    out = [
        f"The winner `{control.winner}` against the other top trials on the same validation pairs "
        f"(Pearson, paired bootstrap 95% interval over {control.resamples} resamples):",
        "",
    ]
    out += [
        f"- vs `{name}`: {gap_text(gap)}: {VERDICT_TEXT[gap.verdict]}"
        for name, gap in control.runners_up.items()
    ]
    tied = tied_with_winner(control)
    verdict = (
        f"The top {len(tied) + 1} are within noise of each other: the ranking among them is not a finding."
        if tied
        else "The winner leads every other top trial beyond noise."
    )
    return [*out, "", verdict, ""]


def budget_lines(exp: ExperimentRecord) -> list[str]:
    """How the search spent its budget: ASHA's rungs in training pairs, and the time budget."""
    out = []
    for stage in exp.stages:
        asha, every, n = stage.asha, stage.eval_every_pairs, stage.train_pairs
        if asha and n:
            rungs = ", ".join(f"{r:,} ({r / n:.3g} epochs)" for r in asha.rungs) or "none"
            out.append(
                f"- `{stage.stage}`: ASHA counts training pairs seen: grace period {asha.grace_period:,} "
                f"pairs, rungs at {rungs}, largest budget {asha.max_t:,} pairs "
                f"({asha.max_t / n:.3g} epochs of {n:,}); a trial reports every "
                + (f"{every:,} pairs" if every else "epoch")
                + (
                    f"; a rung stops no trial before {asha.min_trials} have reached it (one that came "
                    "earlier is judged at its next report)."
                    if asha.min_trials > 1
                    else "; the first trial at a rung always continues (Ray's ASHA)."
                )
            )
        if asha and stage.cost:
            out.append(
                f"- `{stage.stage}`: with the cost objective `{stage.cost}`, a rung compares a trial only "
                "with trials of its cost level (the same depth and max length)."
            )
        warm = stage.warm_start
        if warm:
            out.append(
                f"- `{stage.stage}`: Warm start from `{warm.source}`: "
                + (
                    f"the same problem; its {warm.evaluated} trials that trained their whole budget were given "
                    "to the searcher as evaluated (not trained again)."
                    if warm.same_problem
                    else f"another problem ({'; '.join(warm.differences)}); its top {warm.enqueued} "
                    "configurations were tried first."
                )
            )
        budget = stage.time_budget_s
        if budget:
            trials = exp.stage_trials(stage.stage)
            spent = sum(float(t.reports[-1].get(ELAPSED_S, 0)) for t in trials if t.reports)
            ended = "it ended the search" if stage.ended_by == "time_budget" else "the search ended before it"
            out.append(
                f"- `{stage.stage}`: time budget {budget / 60:.1f} min; {ended}. Trials trained "
                f"{spent / 60:.1f} trial-minutes in all: "
                + ", ".join(
                    f"`{t.trial_id}` {float(t.reports[-1].get(ELAPSED_S, 0)) / 60:.1f} min "
                    f"({int(t.reports[-1].get(PAIRS, 0)):,} pairs)"
                    for t in trials
                    if t.reports
                )
                + "."
            )
    return out


def importance_section(
    exp: ExperimentRecord, importances: list[Importance], figures: dict[str, str]
) -> list[str]:
    """Per stage: how much each varied hyperparameter decided validation Pearson and F1, or why
    that was not computed; the importance figure, when drawn."""
    if not importances:
        return []
    out = [
        "## Why: hyperparameter importance",
        "",
        f"How much each searched hyperparameter decided the validation scores, per stage, by {EVALUATOR}: "
        "it compares where the best trials' values lie with where all trials' values lie "
        "(importances sum to 1 per metric; near 0: the best trials are spread like all the others). "
        "Each trial counts with its kept epoch, a trial stopped by ASHA with the best epoch it reached.",
        "",
    ]
    for imp in (i for i in importances if not i.skipped):
        stage = exp.stage(imp.stage)
        space, winner = stage.space, stage.winner.params if stage.winner else {}
        body = [
            [
                p,
                domain_text(space.get(p)),
                *[imp.values.get(m, {}).get(p, "-") for m in METRICS],
                winner.get(p, "-"),
            ]
            for p in imp.params
        ]
        compared = ", ".join(f"the best {k} by {m}" for m, k in imp.top.items())
        caution = " Few trials: read it as a hint, not a measurement." if imp.trials < 10 else ""
        out += [
            f"### Importance in {imp.stage}",
            "",
            f"{imp.trials} trials{budget_spread(exp, imp.stage)}; compared with all of them: {compared}.{caution}",
            "",
            table(
                ["hyperparameter", "searched", *[f"importance for {m}" for m in METRICS], "stage winner"],
                body,
            ),
            "",
        ]
        out += [f"Not computed for {note}" for note in imp.notes] + ([""] if imp.notes else [])
    skipped = [i for i in importances if i.skipped]
    if skipped:
        out += [f"- Not computed for `{i.stage}`: {i.skipped}" for i in skipped] + [""]
    if figures.get("importance"):
        out += [f"![Hyperparameter importance]({figures['importance']})", ""]
    return out


def budget_spread(exp: ExperimentRecord, stage: str) -> str:
    """`` at budgets of 64–1,024 training pairs (median 128)``: what the stage's trials' kept
    checkpoints had seen, so an importance resting on short trials says so."""
    pairs = sorted(r.pairs for r in to_rows(exp.stage_trials(stage), exp.metric) if r.pairs is not None)
    if not pairs:
        return ""
    median = pairs[len(pairs) // 2]
    if pairs[0] == pairs[-1]:
        return f" at one budget, {median:,} training pairs"
    return f" at budgets of {pairs[0]:,}–{pairs[-1]:,} training pairs (median {median:,})"


def tensorboard_section(tb: str | None, name: str = "<name>") -> list[str]:
    """Where the TensorBoard runs are, and how to open them here and on a Ray cluster.

    Args:
        tb: the TensorBoard folder, relative to the experiment folder (``tensorboard``).
        name: the experiment's folder name, for the command on a cluster's head node.
    """
    if not tb:
        return []
    return [
        "## TensorBoard",
        "",
        f"Per-trial training loss, learning rate and validation metrics are in `{tb}` (in this report's "
        "folder); the HParams tab lists every trial's hyperparameters with its best validation Pearson and "
        "F1. In this folder:",
        "",
        f"    tensorboard --logdir {tb}",
        "",
        "On a Ray cluster (the folder on the head node, under the `--storage` folder the search used), "
        "forward the port, then open http://localhost:6006:",
        "",
        f"    ray exec cluster.yaml 'tensorboard --logdir <storage>/{name}/{tb} --port 6006' --port-forward 6006",
        "",
    ]


def disk_section(exp: ExperimentRecord) -> list[str]:
    """Disk the experiment folder uses (when the record was measured)."""
    d = exp.disk
    if d is None:
        return []
    return [
        "## Disk",
        "",
        f"- Experiment folder (this report's): {human(d.total)} in {d.files} files (this report and its "
        "figures not counted).",
        f"- Trial checkpoints (each trial keeps its best): {human(d.checkpoints)}; exported best model: "
        f"{human(d.best_model)}; TensorBoard: {human(d.tensorboard)}.",
        "",
    ]


def _params(row: Row) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in row.params.items()) or "the fixed configuration"


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
