"""Tokenizer and model: a pretrained encoder turned into a 0-5 similarity scorer.

Two architectures share one interface, :class:`STSModel`:

- ``cross``: ``AutoModelForSequenceClassification`` on the pair as one sequence (the original
  project's model); output 0 is the score (standardized during training), output 1 the binary
  logit of the multi-task head.
- ``bi``: ``AutoModel`` on each sentence alone, mean pooling, score = 5 x cosine (as
  sentence-transformers trains STS models; ``target_scale``/``target_shift`` hold a fitted line
  after a scale-free loss); the multi-task head is a linear layer on
  ``[u, v, |u - v|, u * v]``.

The model maps its raw output to the 0-5 scale with ``score = raw * target_scale + target_shift``,
so losses compare raw outputs with ``(label - shift) / scale`` and metrics see 0-5 scores.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from datasets import Dataset
from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from tuning.settings import ModelConfig

TINY = "builtin:tiny"
META_FILE = "sts_model.json"
EXTRA_FILE = "sts_extra.safetensors"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


class ModelError(ValueError):
    """A model that cannot be loaded as asked; the message says what to pass instead."""


def check_weights(folder: str | Path, fix: str = "restore the folder from a copy") -> None:
    """Refuse a folder whose weight files cannot be read, naming the file and the cause.

    Each ``*.safetensors`` file's header is read and checked against the file's size (what
    ``safe_open`` checks; the tensors are not read): a file cut short, overwritten with other
    bytes or not safetensors at all is one :class:`ModelError`, not a loader's traceback.

    Args:
        folder: a model or checkpoint folder.
        fix: what to do about it, for the message.
    """
    from safetensors import SafetensorError, safe_open

    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise ModelError(
                f"the weights file {path} cannot be loaded: {first_line(err)} (the file is damaged: cut short, "
                f"or overwritten with other bytes); {fix}."
            ) from None


def _read_meta(folder: Path, fix: str) -> dict[str, Any]:
    """``sts_model.json`` of a model or checkpoint folder; a torn or foreign one is a ModelError."""
    path = folder / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise ModelError(f"{path} cannot be read ({first_line(err)}); {fix}.") from None
    if not isinstance(meta, dict) or meta.get("architecture") not in ("bi", "cross"):
        raise ModelError(f"{path} is not an {META_FILE} written by this project; {fix}.")
    return meta


CHECKPOINT_FIX = (
    "restore it from a copy, or delete that checkpoint folder (its trial is then passed over) "
    "and run --resume"
)
EXPORT_FIX = "restore the folder from a copy (its best.json names the trial checkpoint it was exported from)"


@contextmanager
def _loading(folder: Path, what: str, fix: str) -> Iterator[None]:
    """Turn a loader's error (a damaged config or weights file) into one ModelError line."""
    from safetensors import SafetensorError

    try:
        yield
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        raise ModelError(f"cannot load the {what} in {folder}: {first_line(err)}; {fix}.") from None


def first_line(err: BaseException) -> str:
    """An error's first line without its final full stop (or its type, when it has no text)."""
    text = str(err).strip()
    return text.splitlines()[0].rstrip(".") if text else type(err).__name__


def load_saved_tokenizer(folder: str | Path, fix: str) -> PreTrainedTokenizerBase:
    """The tokenizer saved in a model or checkpoint folder; a damaged one is a ModelError.

    The Rust tokenizer raises a bare ``Exception`` for a ``tokenizer.json`` it cannot parse, so
    every ``Exception`` here is the folder's fault.
    """
    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception as err:
        raise ModelError(
            f"cannot load the tokenizer in {folder} (tokenizer.json, tokenizer_config.json): "
            f"{first_line(err)}; {fix}."
        ) from None


def build_tiny_tokenizer(texts: Sequence[str], max_length: int = 128) -> PreTrainedTokenizerBase:
    """A character-level tokenizer whose vocabulary is every character of ``texts`` (sorted)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = sorted({c for text in texts for c in text if not c.isspace()})
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), "isolated")]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=max_length,
    )


@cache
def encoder_depth(name_or_path: str) -> int | None:
    """The number of layers of a model's encoder (its ``config.json``, read once a process);
    None if unreadable."""
    if name_or_path == TINY:
        return tiny_config(1).num_hidden_layers
    try:
        return int(AutoConfig.from_pretrained(name_or_path).num_hidden_layers)
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def tiny_config(vocab_size: int, num_hidden_layers: int | None = None) -> BertConfig:
    """A 2-layer, 32-hidden BERT: learns next to nothing, runs a training step in milliseconds."""
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=num_hidden_layers or 2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        pad_token_id=0,
    )


def load_tokenizer(cfg: ModelConfig, texts: Sequence[str] = ()) -> PreTrainedTokenizerBase:
    """The tokenizer of ``cfg.name_or_path`` (``builtin:tiny``: built from ``texts``)."""
    if cfg.name_or_path == TINY:
        return build_tiny_tokenizer(texts, cfg.max_length)
    try:
        return AutoTokenizer.from_pretrained(cfg.name_or_path)
    except (OSError, ValueError) as err:
        raise ModelError(_not_found(cfg.name_or_path, err)) from None


def _not_found(name: str, err: Exception) -> str:
    return (
        f"cannot load model or tokenizer {name!r}: {str(err).splitlines()[0]}\n"
        "Pass a Hub id on a machine with Hub access, a local folder in Hugging Face format "
        f"(e.g. ${{SHARED}}/models/e5-small-ko), or {TINY!r} for a test-size model built in code."
    )


def _encoder(cfg: ModelConfig, architecture: str, num_labels: int, vocab_size: int) -> nn.Module:
    """The Hugging Face model under the STS head, pretrained unless ``builtin:tiny``."""
    auto = AutoModelForSequenceClassification if architecture == "cross" else AutoModel
    extra: dict[str, Any] = {"num_labels": num_labels} if architecture == "cross" else {}
    if cfg.name_or_path == TINY:
        config = tiny_config(vocab_size, cfg.num_hidden_layers)
        for key, value in extra.items():
            setattr(config, key, value)
        return auto.from_config(config)
    if cfg.num_hidden_layers is not None:
        extra["num_hidden_layers"] = cfg.num_hidden_layers
    verbosity = hf_logging.get_verbosity()
    # Truncated layers and the new head are reported by transformers as a long table on every
    # load; they are expected here, so only errors are shown.
    hf_logging.set_verbosity_error()
    try:
        return auto.from_pretrained(cfg.name_or_path, **extra)
    except (OSError, ValueError) as err:
        raise ModelError(_not_found(cfg.name_or_path, err)) from None
    finally:
        hf_logging.set_verbosity(verbosity)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of token states over the attention mask: [B, T, H], [B, T] -> [B, H]."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class STSModel(nn.Module):
    """A sentence-pair scorer: ``forward(**batch)`` returns raw outputs, 0-5 scores, binary logits.

    Args:
        encoder: ``AutoModelForSequenceClassification`` (cross) or ``AutoModel`` (bi).
        architecture: ``cross`` or ``bi``.
        head: ``regression`` or ``multitask``.
        target_scale, target_shift: ``score = raw * scale + shift``.
    """

    # Declared for type checkers: nn.Module's __getattr__ types every attribute as a union.
    encoder: PreTrainedModel
    target_scale: torch.Tensor
    target_shift: torch.Tensor

    def __init__(
        self,
        encoder: PreTrainedModel,
        architecture: str,
        head: str = "regression",
        target_scale: float = 1.0,
        target_shift: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.architecture = architecture
        self.head = head
        self.register_buffer("target_scale", torch.tensor(float(target_scale)))
        self.register_buffer("target_shift", torch.tensor(float(target_shift)))
        self.binary_head = (
            nn.Linear(4 * encoder.config.hidden_size, 1)
            if architecture == "bi" and head == "multitask"
            else None
        )

    @property
    def config(self) -> Any:
        """The encoder's Hugging Face config (the Trainer reads it)."""
        return self.encoder.config

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled sentence embeddings (bi-encoder): [B, T] -> [B, H]."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return mean_pool(out.last_hidden_state, attention_mask)

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Score a batch from :class:`PairCollator`; label keys, if present, are ignored."""
        binary = None
        if self.architecture == "cross":
            inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
            logits = self.encoder(**inputs).logits
            raw = logits[:, 0]
            if self.head == "multitask":
                binary = logits[:, 1]
        else:
            u = self.embed(batch["a_input_ids"], batch["a_attention_mask"])
            v = self.embed(batch["b_input_ids"], batch["b_attention_mask"])
            raw = nn.functional.cosine_similarity(u, v, dim=-1)
            if self.binary_head is not None:
                binary = self.binary_head(torch.cat([u, v, (u - v).abs(), u * v], dim=-1))[:, 0]
        out = {"raw": raw, "scores": raw * self.target_scale + self.target_shift}
        if self.architecture == "bi":
            out["embeddings"] = (u, v)  # for losses on the embeddings (CoSENT, AnglE)
        if binary is not None:
            out["binary_logits"] = binary
        return out

    def meta(self) -> dict[str, Any]:
        """What :meth:`from_checkpoint` needs besides the weights and the encoder config."""
        return {
            "architecture": self.architecture,
            "head": self.head,
            "target_scale": float(self.target_scale),
            "target_shift": float(self.target_shift),
        }

    def save_meta(self, folder: str | Path) -> None:
        """Write the encoder config and ``sts_model.json`` next to Trainer checkpoint weights."""
        self.encoder.config.save_pretrained(folder)
        Path(folder, META_FILE).write_text(json.dumps(self.meta(), indent=2), encoding="utf-8")

    @classmethod
    def from_checkpoint(cls, folder: str | Path) -> STSModel:
        """Rebuild from a Trainer checkpoint (``model.safetensors`` + config + meta), no Hub access.

        Raises:
            ModelError: a file of the checkpoint is missing or damaged (named, with the cause).
        """
        folder = Path(folder)
        check_weights(folder, CHECKPOINT_FIX)
        meta = _read_meta(folder, CHECKPOINT_FIX)
        with _loading(folder, "checkpoint", CHECKPOINT_FIX):
            config = AutoConfig.from_pretrained(folder)
            auto = AutoModelForSequenceClassification if meta["architecture"] == "cross" else AutoModel
            model = cls(auto.from_config(config), **meta)
            model.load_state_dict(load_file(str(Path(folder, "model.safetensors"))))
        return model.eval()

    def save_pretrained(
        self,
        folder: str | Path,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_length: int | None = None,
    ) -> None:
        """Export in Hugging Face format, loadable by ``from_pretrained`` of transformers.

        For ``cross`` the target scale and shift are folded into the classifier's score row, so
        ``AutoModelForSequenceClassification.from_pretrained(folder)`` outputs 0-5 scores directly.

        Args:
            folder: where to write.
            tokenizer: if given, saved too, and the folder is a complete sentence-transformers
                model: ``SentenceTransformer(folder)`` for ``bi`` (mean pooling, cosine; score =
                cosine x ``target_scale`` + ``target_shift``), ``CrossEncoder(folder)`` for
                ``cross`` (``predict`` gives 0-5 scores).
            max_length: tokens per input in sentence-transformers (the trained ``max_length``);
                ``None`` keeps the tokenizer's ``model_max_length``.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        encoder = self.encoder
        meta = self.meta()
        if self.architecture == "cross":
            state = {k: v.clone() for k, v in encoder.state_dict().items()}
            weight, bias = _classifier_keys(state)
            state[weight][0] *= self.target_scale
            state[bias][0] = state[bias][0] * self.target_scale + self.target_shift
            encoder = type(encoder)(encoder.config)
            encoder.load_state_dict(state)
            meta.update(target_scale=1.0, target_shift=0.0)
        if tokenizer is None:
            encoder.save_pretrained(folder)
        else:
            _save_sentence_transformers(encoder, tokenizer, self.architecture, folder, max_length)
        if self.binary_head is not None:
            save_file(self.binary_head.state_dict(), str(folder / EXTRA_FILE))
        (folder / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> STSModel:
        """Load what :meth:`save_pretrained` wrote.

        Raises:
            ModelError: not an exported model, or one of its files is damaged (named, with the cause).
        """
        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise ModelError(
                f"{folder} has no {META_FILE}: not a model exported by this project "
                "(expected <storage>/<name>/best_model)."
            )
        check_weights(folder, EXPORT_FIX)
        meta = _read_meta(folder, EXPORT_FIX)
        with _loading(folder, "model", EXPORT_FIX):
            auto = AutoModelForSequenceClassification if meta["architecture"] == "cross" else AutoModel
            model = cls(auto.from_pretrained(folder), **meta)
            if model.binary_head is not None:
                model.binary_head.load_state_dict(load_file(str(folder / EXTRA_FILE)))
        return model.eval()


def _save_sentence_transformers(
    encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    architecture: str,
    folder: Path,
    max_length: int | None,
) -> None:
    """Write ``encoder`` and ``tokenizer`` as a sentence-transformers model, with its own classes.

    ``bi``: Transformer + mean Pooling, cosine similarity. ``cross``: a CrossEncoder whose
    activation is the identity (its default for one label, a sigmoid, would squash the 0-5
    score). Both truncate inputs at ``max_length`` tokens, as training did.
    """
    from sentence_transformers import CrossEncoder, SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    # sentence-transformers builds its modules from a Hugging Face folder; saving the model then
    # writes weights, tokenizer and its configuration files into ``folder`` side by side.
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # two loading and two writing bars that say nothing here
    try:
        with tempfile.TemporaryDirectory() as plain:
            encoder.save_pretrained(plain)
            tokenizer.save_pretrained(plain)
            model: SentenceTransformer | CrossEncoder
            if architecture == "bi":
                transformer = Transformer(plain, max_seq_length=max_length)
                pooling = Pooling(transformer.get_embedding_dimension(), "mean")
                model = SentenceTransformer(
                    modules=[transformer, pooling], similarity_fn_name="cosine", device="cpu"
                )
            else:
                model = CrossEncoder(plain, max_length=max_length, activation_fn=nn.Identity(), device="cpu")
            model.save(str(folder), create_model_card=False)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _classifier_keys(state: dict[str, torch.Tensor]) -> tuple[str, str]:
    """Names of the final linear layer's weight and bias in a sequence-classification model."""
    # BERT: classifier.{weight,bias}; RoBERTa: classifier.out_proj.{weight,bias}.
    for prefix in ("classifier.out_proj.", "classifier.", "score."):
        if f"{prefix}weight" in state and f"{prefix}bias" in state:
            return f"{prefix}weight", f"{prefix}bias"
    raise ModelError(
        f"no classifier layer found to fold the target scale into; keys end with {list(state)[-4:]}."
    )


def build_model(
    cfg: ModelConfig,
    tokenizer: PreTrainedTokenizerBase,
    head: str = "regression",
    target_scale: float = 1.0,
    target_shift: float = 0.0,
) -> STSModel:
    """A fresh STS model: pretrained encoder (or tiny, built in code) plus a new head."""
    num_labels = 2 if head == "multitask" else 1
    encoder = _encoder(cfg, cfg.architecture, num_labels, vocab_size=len(tokenizer))
    return STSModel(cast(PreTrainedModel, encoder), cfg.architecture, head, target_scale, target_shift)


def tokenize_pairs(
    tokenizer: PreTrainedTokenizerBase,
    first: list[str],
    second: list[str],
    architecture: str,
    max_length: int,
) -> dict[str, list]:
    """The model inputs of sentence pairs, column by column, unpadded (the collator pads per batch).

    Args:
        tokenizer: the model's tokenizer.
        first, second: the pairs' sentences, in order.
        architecture: ``cross`` (the pair as one input, cut to ``max_length`` tokens together)
            or ``bi`` (each sentence alone, each cut to ``max_length`` tokens).
        max_length: tokens per encoded input.

    Returns:
        Column name -> one list per pair: the inputs :class:`PairCollator` pads (``input_ids``,
        ``attention_mask``, ``token_type_ids`` for ``cross``; ``a_``/``b_`` ones for ``bi``) and
        ``length``, the pair's longest input in tokens (what ``group_by_length`` sorts on).
    """
    if architecture == "cross":
        enc = tokenizer(first, second, truncation=True, max_length=max_length)
        out = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        out["length"] = [len(ids) for ids in enc["input_ids"]]
        return out
    a = tokenizer(first, truncation=True, max_length=max_length)
    b = tokenizer(second, truncation=True, max_length=max_length)
    return {
        "a_input_ids": a["input_ids"],
        "a_attention_mask": a["attention_mask"],
        "b_input_ids": b["input_ids"],
        "b_attention_mask": b["attention_mask"],
        "length": [max(len(x), len(y)) for x, y in zip(a["input_ids"], b["input_ids"])],
    }


def encode(
    dataset: Dataset, tokenizer: PreTrainedTokenizerBase, architecture: str, max_length: int
) -> Dataset:
    """Tokenize pairs (no padding: the collator pads per batch) and add a ``length`` column."""

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        out = tokenize_pairs(tokenizer, batch["sentence1"], batch["sentence2"], architecture, max_length)
        out["labels"] = batch["label"]
        out["binary_labels"] = batch["binary_label"]
        return out

    # Tokenizing a split takes a fraction of a second: a progress bar for it only buries the
    # trial and run logs. Scoped, so a caller's own datasets bars are left as they were.
    shown = not are_progress_bars_disabled()
    disable_progress_bars()
    try:
        return dataset.map(tokenize, batched=True, remove_columns=dataset.column_names)
    finally:
        if shown:
            enable_progress_bars()


class PairCollator:
    """Pads each batch to its own longest input (never to a fixed 512).

    Args:
        pad_token_id: the tokenizer's padding id.
        pad_to: if set, pad every batch to this length instead (benchmarks of fixed padding).
    """

    def __init__(self, pad_token_id: int, pad_to: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to = pad_to

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        for key in features[0]:
            values = [f[key] for f in features]
            if key in ("labels", "binary_labels"):
                batch[key] = torch.tensor(values, dtype=torch.float32)
            elif key.endswith(("input_ids", "attention_mask", "token_type_ids")):
                width = self.pad_to or max(len(v) for v in values)
                fill = self.pad_token_id if key.endswith("input_ids") else 0
                padded = np.full((len(values), width), fill, dtype=np.int64)
                for i, v in enumerate(values):
                    padded[i, : len(v)] = v[:width]
                batch[key] = torch.from_numpy(padded)
        return batch


@torch.no_grad()
def predict(
    model: STSModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    max_length: int = 128,
    batch_size: int = 64,
) -> np.ndarray:
    """0-5 similarity scores of sentence pairs, in order.

    Batches hold pairs of similar length (sorted by ``length``), so little of a forward pass is
    padding; the scores come back in the order of ``pairs``.
    """
    model.eval()
    data = Dataset.from_dict(
        {
            "sentence1": [a for a, _ in pairs],
            "sentence2": [b for _, b in pairs],
            "label": [0.0] * len(pairs),
            "binary_label": [0] * len(pairs),
        }
    )
    encoded = encode(data, tokenizer, model.architecture, max_length)
    collate = PairCollator(tokenizer.pad_token_id)
    device = next(model.parameters()).device
    order = np.argsort(np.asarray(encoded["length"]), kind="stable")
    rows = encoded.to_list() if hasattr(encoded, "to_list") else [encoded[i] for i in range(len(encoded))]
    scores = np.zeros(len(encoded), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = collate([rows[i] for i in chunk])
        batch = {k: v.to(device) for k, v in batch.items()}
        scores[chunk] = model(**batch)["scores"].float().cpu().numpy()
    return scores
