"""Serving the winner: a similarity REST API and a web page around an exported ``best_model``.

``scorer`` loads the folder and scores pairs, ``batcher`` groups concurrent requests into one
forward pass, ``app`` is the FastAPI application and ``serve``, ``body_limit`` caps the bytes read
of a request body, ``page`` renders the web page, ``launcher`` runs the server in a child process
for tests and benchmarks.
"""

from tuning.serving.app import (
    MAX_BATCH_PAIRS,
    MAX_BODY_BYTES,
    MAX_SENTENCE_CHARS,
    ServeSettings,
    create_app,
    serve,
)
from tuning.serving.batcher import BatchStats, DynamicBatcher
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
    "create_app",
    "export_untrained",
    "serve",
]
