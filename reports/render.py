"""Markdown rendering of an experiment record: a pure function returning a string."""

from __future__ import annotations

from typing import Any

from reports.rank import METRIC_COLUMNS, Row, pareto_front, rank, to_rows
from reports.records import ExperimentRecord
from reports.summary import method_rows, seed_spread, stage_cost

STATUS_TEXT = {
    "finished": "finished",
    "stopped": "stopped early (ASHA)",
    "failed": "failed",
    "incomplete": "incomplete (interrupted or still running)",
}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-2 and value != 0 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _status(row: Row) -> str:
    text = STATUS_TEXT.get(row.status, row.status)
    if row.status == "stopped":
        text = f"stopped by ASHA after {row.epochs_run}/{row.planned_epochs} epochs"
    if row.retries:
        text += f", retried {row.retries}x from checkpoint"
    if row.error and row.status == "failed":
        text += f": {row.error[:120]}"
    return text


def ranking_table(rows: list[Row], by: str, params: list[str]) -> str:
    """Rows best first by ``by``, one column per searched hyperparameter and metric."""
    header = ["rank", "trial", *params, "best epoch", *METRIC_COLUMNS, "status"]
    body = [
        [
            i,
            f"{r.stage}/{r.trial_id}",
            *[r.params.get(p, "") for p in params],
            r.best_epoch if r.best_epoch is not None else "-",
            *[r.metrics.get(m, "-") for m in METRIC_COLUMNS],
            _status(r),
        ]
        for i, r in enumerate(rank(rows, by), start=1)
    ]
    return _table(header, body)


def _ms(stat: tuple[float, float, int]) -> str:
    mean, std, n = stat
    return "-" if not n else f"{mean:.4f} ± {std:.4f}"


def stages_section(exp: ExperimentRecord, rows: list[Row]) -> list[str]:
    """One table per stage with what it searched, what it carried forward, and its winner."""
    out = ["## Stages", ""]
    for stage in exp.stages:
        name = stage["stage"]
        trials = [t for t in exp.trials if t.stage == name]
        cost = stage_cost(stage, trials)
        out += [f"### {name}", ""]
        searched = ", ".join(stage.get("searched", [])) or "nothing (fixed configuration)"
        out.append(
            f"- Searched: {searched}; {cost['trials']} trials, {cost['trial_epochs']} trial-epochs, "
            f"{cost['wall_s'] / 60:.1f} min wall; status {stage.get('status', '?')}."
        )
        for key, source in (stage.get("carried") or {}).items():
            out.append(
                f"- Carried forward: {key} = {_fmt(source['value'])} (winner of stage {source['from_stage']}, trial {source['trial_id']})."
            )
        if stage.get("repeats"):
            out.append(f"- Repeats: {stage['repeats']} over seeds.")
        winner = stage.get("winner")
        if winner:
            shown = (
                ", ".join(f"{k}={_fmt(v)}" for k, v in winner["params"].items()) or "the fixed configuration"
            )
            out.append(
                f"- Winner: `{name}/{winner['trial_id']}` ({winner['metric']} {_fmt(winner['value'])}): {shown}."
            )
        stage_rows = [r for r in rows if r.stage == name]
        out += ["", ranking_table(stage_rows, stage.get("metric", "pearson"), stage.get("searched", [])), ""]
    return out


def seeds_section(exp: ExperimentRecord) -> list[str]:
    """Mean ± std over seeds for every seed-repeat stage."""
    stages = [s for s in exp.stages if s.get("role") == "seeds"]
    if not stages:
        return []
    spreads = {s["stage"]: seed_spread(s["stage"], exp) for s in stages}
    splits = sorted({split for sp in spreads.values() for split in sp["test"]})
    header = ["stage", "repeats", "seeds", "validation pearson", "validation f1"]
    header += [f"{split} {m}" for split in splits for m in ("pearson", "f1")]
    body = []
    for s in stages:
        sp = spreads[s["stage"]]
        body.append(
            [
                s["stage"],
                s.get("repeats", "-"),
                sp["validation"]["pearson"][2],
                _ms(sp["validation"]["pearson"]),
                _ms(sp["validation"]["f1"]),
            ]
            + [
                _ms(sp["test"][split][m]) if split in sp["test"] else "-"
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
        _table(header, body),
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
                winner["value"] if winner else "-",
            ]
            + ([_ms(seeds["validation"]["pearson"]), _ms(seeds["validation"]["f1"])] if seeds else ["-", "-"])
            + [
                _ms(seeds["test"][s][m]) if seeds and s in seeds["test"] else "-"
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
        _table(header, body),
        "",
    ]
    if figures.get("compare"):
        out += [f"![Method comparison]({figures['compare']})", ""]
    return out


def render(exp: ExperimentRecord, figures: dict[str, str] | None = None) -> str:
    """The experiment's report as markdown; ``figures`` maps figure names to files beside it."""
    figures = figures or {}
    meta = exp.meta
    config = meta.get("config", {})
    search = config.get("search", {})
    metric = search.get("metric", "pearson")
    mode = "min" if metric == "mse" else "max"
    rows = to_rows(exp.trials, metric, mode)
    params = sorted({p for s in exp.stages for p in s.get("searched", [])})
    out = [f"# Tuning report: {config.get('name', '?')}", ""]

    # 1. Summary: what ran and what won.
    counts = {s: sum(r.status == s for r in rows) for s in STATUS_TEXT}
    best_p = rank(rows, "pearson")[0] if rows else None
    best_f = rank(rows, "f1")[0] if rows else None
    out += [
        f"- Method: **{config.get('method', '?')}**; model `{config.get('model', {}).get('name_or_path', '?')}` "
        f"({config.get('model', {}).get('architecture', '?')}); data `{config.get('data', {}).get('source', '?')}`.",
        f"- Trials: {len(rows)} ({', '.join(f'{n} {STATUS_TEXT[s]}' for s, n in counts.items() if n)}); "
        f"trial-epochs trained: {sum(r.epochs_run for r in rows)}; wall time: {meta.get('wall_time_s', 0) / 60:.1f} min.",
        f"- Trials are ranked by each one's best epoch by validation **{metric}** (the checkpoint it keeps).",
    ]
    if best_p and best_p.metrics:
        out.append(
            f"- Best by Pearson: `{best_p.stage}/{best_p.trial_id}` — Pearson {_fmt(best_p.metrics['pearson'])}, "
            f"F1 {_fmt(best_p.metrics.get('f1', float('nan')))}, with {_params(best_p)}."
        )
    if best_f and best_f.metrics:
        out.append(
            f"- Best by F1: `{best_f.stage}/{best_f.trial_id}` — F1 {_fmt(best_f.metrics['f1'])}, "
            f"Pearson {_fmt(best_f.metrics.get('pearson', float('nan')))}, with {_params(best_f)}."
        )
    out.append("")

    # 2. Test scores of the winners.
    top = [w for w in exp.test_scores if w.get("role", "top") == "top"]
    if top:
        splits = list(top[0]["test"])
        header = ["trial", "validation pearson", "validation f1"]
        header += [f"{s} {m}" for s in splits for m in ("pearson", "f1")]
        body = [
            [
                f"{w['stage']}/{w['trial_id']}",
                w["validation"].get("pearson", "-"),
                w["validation"].get("f1", "-"),
            ]
            + [w["test"][s][m] for s in splits for m in ("pearson", "f1")]
            for w in top
        ]
        out += ["## Test scores of the best configurations", "", _table(header, body), ""]
        if meta.get("best_model"):
            out += [
                f"The winner is exported to `{meta['best_model']}` (load with `STSModel.from_pretrained`).",
                "",
            ]

    # 3. What a staged, seeded or comparing method did.
    out += compare_section(exp, figures)
    out += seeds_section(exp)
    if len(exp.stages) > 1:
        out += stages_section(exp, rows)

    # 4. Rankings.
    out += ["## Ranking by validation F1", "", ranking_table(rows, "f1", params), ""]
    out += ["## Ranking by validation Pearson", "", ranking_table(rows, "pearson", params), ""]
    front = pareto_front(rows)
    if front:
        out += [
            "## Pareto front (Pearson and F1)",
            "",
            "Trials no other trial beats on both metrics: "
            + ", ".join(
                f"`{r.stage}/{r.trial_id}` ({_fmt(r.metrics['pearson'])}, {_fmt(r.metrics['f1'])})"
                for r in front
            ),
            "",
        ]

    # 5. Monitoring and reproducibility.
    tb = meta.get("tensorboard_dir")
    if tb:
        out += [
            "## TensorBoard",
            "",
            f"Per-trial training loss, learning rate and validation metrics are in `{tb}`:",
            "",
            f"    tensorboard --logdir {tb}",
            "",
        ]
    out += ["## Reproducibility", ""]
    for key, label in (
        ("command", "Command"),
        ("git_commit", "Git commit"),
        ("data_fingerprint", "Data fingerprint"),
        ("data_sizes", "Split sizes"),
        ("machine", "Machine"),
        ("ray_resources", "Ray resources"),
        ("versions", "Package versions"),
    ):
        if meta.get(key) is not None:
            out.append(f"- {label}: `{meta[key]}`")
    out += ["", "Resolved configuration:", "", "```json", _json(config), "```", ""]
    return "\n".join(out)


def _params(row: Row) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in row.params.items()) or "the fixed configuration"


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
