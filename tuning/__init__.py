"""Hyperparameter tuning of Hugging Face transformers on Korean STS (KLUE-STS, KorSTS) with Ray Tune."""

__version__ = "0.1.0"
