"""Hyperparameter tuning of Hugging Face transformers on Korean STS (KLUE-STS, KorSTS) with Ray Tune."""

import datasets

__version__ = "0.1.0"

# Tokenizing a split is a fraction of a second; progress bars for it only bury the trial logs.
datasets.disable_progress_bars()
