"""The web page: two sentences in, the score and a Korean verdict out.

``tuning/static/index.html`` is a ``string.Template``; the server fills it in for ``GET /`` (an
empty form) and for the plain form ``POST /`` (the result or the error, so the page works without
JavaScript). ``page.js`` upgrades the form to call ``POST /similarity`` without a reload.
"""

from __future__ import annotations

import html
from pathlib import Path
from string import Template

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SIMILAR_TEXT = "비슷한 문장입니다"
DIFFERENT_TEXT = "비슷하지 않은 문장입니다"


def load_template() -> Template:
    return Template((STATIC_DIR / "index.html").read_text(encoding="utf-8"))


def render_page(
    template: Template,
    *,
    model: str,
    max_chars: int,
    max_length: int,
    threshold: float,
    sentence1: str = "",
    sentence2: str = "",
    score: float | None = None,
    error: str | None = None,
) -> str:
    """The page as HTML: the form (refilled with the sentences), and the score or the error."""
    similar = score is not None and score >= threshold
    fields = {
        "model": model,
        "max_chars": max_chars,
        "max_length": max_length,
        "threshold": f"{threshold:.1f}",
        "sentence1": sentence1,
        "sentence2": sentence2,
        "similar_text": SIMILAR_TEXT,
        "different_text": DIFFERENT_TEXT,
        "result_hidden": "" if score is not None else "hidden",
        "verdict_class": "similar" if similar else "different",
        "verdict": "" if score is None else SIMILAR_TEXT if similar else DIFFERENT_TEXT,
        "score": "" if score is None else f"유사도 점수: {score:.2f} / 5",
        "error_hidden": "" if error else "hidden",
        "error": error or "",
    }
    return template.substitute({k: html.escape(str(v)) for k, v in fields.items()})
