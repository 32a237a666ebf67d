"""Serving the winner: a similarity REST API and a web page around an exported ``best_model``."""

from tuning.serving.app import (
    MAX_BATCH_PAIRS,
    MAX_BODY_BYTES,
    MAX_SENTENCE_CHARS,
    ServeSettings,
    create_app,
    serve,
)
from tuning.serving.batcher import BatchStats, DynamicBatcher
from tuning.serving.launcher import ServerProcess
from tuning.serving.scorer import SIMILAR_AT, ServedModel, export_untrained

__all__ = [
    "MAX_BATCH_PAIRS",
    "MAX_BODY_BYTES",
    "MAX_SENTENCE_CHARS",
    "SIMILAR_AT",
    "BatchStats",
    "DynamicBatcher",
    "ServeSettings",
    "ServedModel",
    "ServerProcess",
    "create_app",
    "export_untrained",
    "serve",
]
