"""The served model: an exported ``best_model`` folder loaded once, scoring sentence pairs on 0-5.

Truncation policy (the same as training and :func:`tuning.model.predict`): each input is cut to
the model's ``max_length`` tokens — the pair together for ``cross``, each sentence alone for
``bi`` — so text past that point does not change the score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from tuning import store
from tuning.metrics import THRESHOLD
from tuning.model import (
    EXPORT_FIX,
    ModelError,
    PairCollator,
    STSModel,
    build_model,
    load_saved_tokenizer,
    load_tokenizer,
    tokenize_pairs,
)
from tuning.settings import ModelConfig
from tuning.store import BEST_FILE, Best, trial_value

DEFAULT_MAX_LENGTH = 128
SIMILAR_AT = THRESHOLD
"""Scores at or above this are ``similar``: KLUE-STS's binary threshold, the one F1 is scored at."""

Pair = tuple[str, str]


@dataclass
class ServedModel:
    """A loaded model, its tokenizer and what ``best.json`` recorded about it."""

    model: STSModel
    tokenizer: PreTrainedTokenizerBase
    folder: Path
    max_length: int = DEFAULT_MAX_LENGTH
    """Tokens per encoded input; longer inputs are truncated."""
    best: Best = field(default_factory=Best)
    """What ``best.json`` records (no field set when the folder has none)."""

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> ServedModel:
        """Load ``<storage>/<name>/best_model`` (or any folder ``export_best`` wrote).

        Raises:
            ModelError: the folder is missing, is not an exported model, or its files are broken.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise ModelError(
                f"model folder {str(folder)!r} does not exist. Pass <storage>/<name>/best_model, "
                "the folder a finished search exports (see experiment.json's `best_model`)."
            )
        best = _read_best(folder)
        max_length = _max_length(best.config, folder)
        try:
            model = STSModel.from_pretrained(folder)  # a damaged file: one ModelError naming it
            tokenizer = load_saved_tokenizer(folder, EXPORT_FIX)
        except ModelError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise ModelError(
                f"cannot load the model in {folder}: {str(err).splitlines()[0]}\n"
                "The folder needs the files `export_best` writes: model weights, config.json, "
                "sts_model.json and the tokenizer."
            ) from None
        return cls(model.to(device).eval(), tokenizer, folder, max_length, best)

    def score(self, pairs: Sequence[Pair], batch_size: int = 64) -> np.ndarray:
        """0-5 scores of ``pairs``, in order, ``batch_size`` pairs per forward pass.

        Tokenizes with :func:`tuning.model.tokenize_pairs`, as training does, but not through
        ``predict``'s ``datasets.Dataset``, which costs ~8 ms a call, 15x a forward pass of the
        tiny model.
        """
        collate = PairCollator(self.tokenizer.pad_token_id)
        device = next(self.model.parameters()).device
        scores = []
        with torch.inference_mode():
            for start in range(0, len(pairs), batch_size):
                batch = collate(self._features(pairs[start : start + batch_size]))
                out = self.model(**{k: v.to(device) for k, v in batch.items()})
                scores.append(out["scores"].float().cpu().numpy())
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    def _features(self, pairs: Sequence[Pair]) -> list[dict[str, list[int]]]:
        first, second = [a for a, _ in pairs], [b for _, b in pairs]
        columns = tokenize_pairs(self.tokenizer, first, second, self.model.architecture, self.max_length)
        del columns["length"]  # for group_by_length in training; not a model input
        return [dict(zip(columns, row)) for row in zip(*columns.values())]

    def describe(self) -> dict[str, Any]:
        """The model and its recorded validation metrics, for ``GET /health``."""
        config = self.model.config
        return {
            # Its experiment and folder name only: the page and /health are for visitors.
            "path": "/".join(self.folder.resolve().parts[-2:]),
            "architecture": self.model.architecture,
            "head": self.model.head,
            "encoder": getattr(config, "model_type", None),
            "num_hidden_layers": getattr(config, "num_hidden_layers", None),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "max_length": self.max_length,
            "device": str(next(self.model.parameters()).device),
        }


def _read_best(folder: Path) -> Best:
    """The folder's ``best.json`` (an empty record when it has none).

    Raises:
        ModelError: it is torn, not a JSON object or not one this tool wrote (names the file and
            the field).
    """
    try:
        return store.read_best(folder) or Best()
    except store.StorageError as err:
        raise ModelError(str(err)) from None


def _max_length(config: dict[str, Any], folder: Path) -> int:
    """The trial config's ``model.max_length`` (searched or fixed; ``tuning.trial_config``), or 128."""
    value = trial_value(config, "max_length") or DEFAULT_MAX_LENGTH
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ModelError(
            f"{folder / BEST_FILE}: config max_length must be an integer >= 2, but got {value!r}."
        )
    return value


def export_untrained(
    folder: str | Path,
    cfg: ModelConfig,
    texts: Sequence[str] = (),
    validation: dict[str, float] | None = None,
    seed: int = 0,
) -> Path:
    """Write an untrained model in the ``best_model`` layout, with a ``best.json``.

    For tests and latency benchmarks, whose numbers do not depend on training. The head is new;
    ``bi`` scores are 5 x cosine as in training. ``texts`` build the ``builtin:tiny`` vocabulary;
    ``validation`` is recorded as the model's validation metrics.
    """
    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(cfg, texts)
    model = build_model(cfg, tokenizer, target_scale=5.0 if cfg.architecture == "bi" else 1.0)
    model.save_pretrained(folder, tokenizer, cfg.max_length)  # the same folder export_best writes
    store.write_best(
        folder, Best(trial_id="untrained", validation=validation or {}, config={"model": asdict(cfg)})
    )
    return folder
