"""Figures beside ``report.md``: PNG files written with matplotlib (Agg, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COMPARE_PNG = "compare.png"


def compare_chart(rows: list[dict[str, Any]], folder: str | Path) -> str | None:
    """Bar chart per method: validation and test Pearson / F1 of the winner over seeds (± std).

    Returns:
        The file name written in ``folder``, or ``None`` when no method has seed results.
    """
    rows = [r for r in rows if r["seeds"] and r["seeds"]["validation"]["pearson"][2]]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
