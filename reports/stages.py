"""Report sections of staged, seeded and comparing methods: per-stage tables, seed spread, the
method comparison. Pure: each returns markdown lines."""

from __future__ import annotations

from reports.summary import method_rows, seed_spread, stage_cost
from reports.tables import fmt, mean_std, ranking_table, table
from tuning.ranking import Row
from tuning.store import ExperimentRecord


def stages_section(exp: ExperimentRecord, rows: list[Row]) -> list[str]:
    """One table per stage with what it searched, what it carried forward, and its winner."""
    out = ["## Stages", ""]
    for stage in exp.stages:
        name = stage.stage
        cost = stage_cost(stage, exp.stage_trials(name))
        out += [f"### {name}", ""]
        searched = ", ".join(stage.searched) or "nothing (fixed configuration)"
        out.append(
            f"- Searched: {searched}; {cost['trials']} trials, {cost['trial_epochs']} trial-epochs, "
            f"{cost['wall_s'] / 60:.1f} min wall; status {stage.status}."
        )
        for key, source in stage.carried.items():
            out.append(
                f"- Carried forward: {key} = {fmt(source.value)} (winner of stage {source.from_stage}, trial {source.trial_id})."
            )
        if stage.repeats:
            out.append(f"- Repeats: {stage.repeats} over seeds.")
        winner = stage.winner
        if winner:
            shown = ", ".join(f"{k}={fmt(v)}" for k, v in winner.params.items()) or "the fixed configuration"
            out.append(
                f"- Winner: `{name}/{winner.trial_id}` ({winner.metric} {fmt(winner.value)}): {shown}."
            )
        stage_rows = [r for r in rows if r.stage == name]
        pairs = exp.meta.data_sizes.get("validation")
        out += ["", ranking_table(stage_rows, stage.metric, stage.searched, pairs), ""]
    return out


def seeds_section(exp: ExperimentRecord) -> list[str]:
    """Mean ± std over seeds for every seed-repeat stage."""
    stages = [s for s in exp.stages if s.role == "seeds"]
    if not stages:
        return []
    spreads = {s.stage: seed_spread(s.stage, exp) for s in stages}
    splits = sorted({split for sp in spreads.values() for split in sp["test"]})
    header = ["stage", "repeats", "seeds", "validation pearson", "validation f1"]
    header += [f"{split} {m}" for split in splits for m in ("pearson", "f1")]
    body = []
    for s in stages:
        sp = spreads[s.stage]
        body.append(
            [
                s.stage,
                s.repeats or "-",
                sp["validation"]["pearson"][2],
                mean_std(sp["validation"]["pearson"]),
                mean_std(sp["validation"]["f1"]),
            ]
            + [
                mean_std(sp["test"][split][m]) if split in sp["test"] else "-"
                for split in splits
                for m in ("pearson", "f1")
            ]
        )
    return [
        "## Seed repeats (mean ± std)",
        "",
        "Scores vary by seed: a single run's best seed is tuning on noise, so each repeated "
        "configuration is shown with its spread.",
        "",
        table(header, body),
        "",
    ]


def compare_section(exp: ExperimentRecord, figures: dict[str, str]) -> list[str]:
    """The method comparison: the search's cost and the winner's seed spread per method."""
    rows = method_rows(exp)
    if not rows:
        return []
    splits = sorted({split for r in rows if r["seeds"] for split in r["seeds"]["test"]})
    header = ["method", "trials", "trial-epochs", "CPU-s", "GPU-s", "wall min", "search best pearson"]
    header += ["validation pearson", "validation f1"] + [
        f"{s} {m}" for s in splits for m in ("pearson", "f1")
    ]
    body = []
    for r in rows:
        c, seeds, winner = r["cost"], r["seeds"], r["winner"]
        body.append(
            [
                r["method"],
                c["trials"],
                c["trial_epochs"],
                round(c["cpu_s"]),
                round(c["gpu_s"]),
                f"{c['wall_s'] / 60:.1f}",
                winner.value if winner else "-",
            ]
            + (
                [mean_std(seeds["validation"]["pearson"]), mean_std(seeds["validation"]["f1"])]
                if seeds
                else ["-", "-"]
            )
            + [
                mean_std(seeds["test"][s][m]) if seeds and s in seeds["test"] else "-"
                for s in splits
                for m in ("pearson", "f1")
            ]
        )
    out = [
        "## Method comparison",
        "",
        "Each method searched with its own file's budget; its winner was then re-run over seeds "
        "(mean ± std) and scored on the test split(s). Compute is what the search itself spent.",
        "",
        table(header, body),
        "",
    ]
    if figures.get("compare"):
        out += [f"![Method comparison]({figures['compare']})", ""]
    return out
