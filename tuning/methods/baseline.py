"""The ``baseline`` method: the file's fixed recipe, no search, one trial trained to the end.

For klue/roberta-base that is KLUE's own recipe (lr 5e-5, batch 32, warm-up 0.1, 4 epochs, max
length 128); ``compare`` measures every tuning method against it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuning.methods._stage import run_stage, trial_data
from tuning.settings import ExperimentConfig


def baseline_method(exp: ExperimentConfig, splits: Any, prefix: str = "") -> list[Path]:
    """One trial of the fixed configuration (the file's ``space`` is not searched)."""
    return [run_stage(exp, prefix + "baseline", {}, trial_data(splits), num_samples=1, scheduler="fifo")]
