"""Tests of tuning.model: the tiny tokenizer, encoding, padding, both architectures, export, e5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification

from tuning.model import (
    TINY,
    ModelError,
    PairCollator,
    STSModel,
    build_model,
    build_tiny_tokenizer,
    encode,
    load_tokenizer,
    predict,
)
from tuning.settings import ModelConfig, shared_dir

PAIRS = [
    ("비행기가 이륙하고 있다.", "비행기가 이륙한다.", 5.0, 1),
    ("한 남자가 큰 플루트를 연주하고 있다.", "여자가 양파를 썰고 있다.", 0.4, 0),
    ("고양이가 잔다.", "고양이가 소파에서 자고 있다.", 3.8, 1),
]
TEXTS = [s for a, b, _, _ in PAIRS for s in (a, b)]
ARCH_HEADS = [("cross", "regression"), ("cross", "multitask"), ("bi", "regression"), ("bi", "multitask")]


def tiny(architecture: str = "cross", max_length: int = 64) -> ModelConfig:
    return ModelConfig(name_or_path=TINY, architecture=architecture, max_length=max_length)


def pairs_dataset(pairs: list[tuple[str, str, float, int]]) -> Dataset:
    return Dataset.from_dict(
        {
            "sentence1": [p[0] for p in pairs],
            "sentence2": [p[1] for p in pairs],
            "label": [p[2] for p in pairs],
            "binary_label": [p[3] for p in pairs],
        }
    )


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(tiny(), TEXTS)


@pytest.fixture(scope="module")
def abc_tokenizer():
    """Vocabulary: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 가=4 나=5 다=6 라=7 마=8 바=9."""
    return build_tiny_tokenizer(["가나다라", "마바"])


def tiny_model(tokenizer, architecture: str, head: str, scale: float = 1.0, shift: float = 0.0) -> STSModel:
    torch.manual_seed(0)
    return build_model(tiny(architecture), tokenizer, head, scale, shift).eval()


def batch_of(tokenizer, architecture: str) -> dict[str, torch.Tensor]:
    encoded = encode(pairs_dataset(PAIRS), tokenizer, architecture, 64)
    return PairCollator(tokenizer.pad_token_id)([encoded[i] for i in range(len(encoded))])


# --- builtin:tiny tokenizer ------------------------------------------------------------------


def test_tiny_vocabulary_is_specials_then_sorted_characters() -> None:
    expected = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "a": 4, "b": 5, "가": 6, "나": 7}
    assert build_tiny_tokenizer(["나 b", "a가"]).get_vocab() == expected
    assert build_tiny_tokenizer(["a가", "b 나 나"]).get_vocab() == expected


def test_tiny_tokenizer_maps_unseen_characters_to_unk(abc_tokenizer) -> None:
    assert abc_tokenizer("가x")["input_ids"] == [2, 4, 1, 3]


def test_tiny_pair_encoding_is_cls_a_sep_b_sep(abc_tokenizer) -> None:
    ids = abc_tokenizer("가나", "다 라")["input_ids"]
    assert abc_tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "가", "나", "[SEP]", "다", "라", "[SEP]"]


def test_load_tokenizer_builds_tiny_from_texts_with_max_length() -> None:
    tok = load_tokenizer(tiny(max_length=16), ["다가"])
    assert tok.get_vocab() == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "가": 4, "다": 5}
    assert tok.model_max_length == 16


# --- encode ----------------------------------------------------------------------------------


def test_encode_cross_puts_the_pair_in_one_sequence(abc_tokenizer) -> None:
    data = pairs_dataset([("가나", "다", 4.5, 1), ("라", "마바", 1.0, 0)])
    encoded = encode(data, abc_tokenizer, "cross", 32)
    assert encoded.column_names == ["input_ids", "attention_mask", "length", "labels", "binary_labels"]
    assert encoded[0] == {
        "input_ids": [2, 4, 5, 3, 6, 3],
        "attention_mask": [1, 1, 1, 1, 1, 1],
        "length": 6,
        "labels": 4.5,
        "binary_labels": 1,
    }
    assert encoded[1]["input_ids"] == [2, 7, 3, 8, 9, 3]


def test_encode_cross_truncates_the_pair_at_max_length(abc_tokenizer) -> None:
    encoded = encode(pairs_dataset([("가나다라가나다라", "마바마바", 1.0, 0)]), abc_tokenizer, "cross", 8)
    ids = encoded[0]["input_ids"]
    assert len(ids) == 8
    assert encoded[0]["length"] == 8
    assert (ids[0], ids[-1], ids.count(3)) == (2, 3, 2)


def test_encode_bi_keeps_the_sentences_apart(abc_tokenizer) -> None:
    data = pairs_dataset([("가나다", "라", 2.0, 0)])
    encoded = encode(data, abc_tokenizer, "bi", 32)
    assert encoded.column_names == [
        "a_input_ids",
        "a_attention_mask",
        "b_input_ids",
        "b_attention_mask",
        "length",
        "labels",
        "binary_labels",
    ]
    assert encoded[0] == {
        "a_input_ids": [2, 4, 5, 6, 3],
        "a_attention_mask": [1, 1, 1, 1, 1],
        "b_input_ids": [2, 7, 3],
        "b_attention_mask": [1, 1, 1],
        "length": 5,
        "labels": 2.0,
        "binary_labels": 0,
    }


def test_encode_bi_truncates_each_sentence_at_max_length(abc_tokenizer) -> None:
    encoded = encode(pairs_dataset([("가나다라마바", "마바", 2.0, 0)]), abc_tokenizer, "bi", 4)
    assert encoded[0]["a_input_ids"] == [2, 4, 5, 3]
    assert encoded[0]["b_input_ids"] == [2, 8, 9, 3]
    assert encoded[0]["length"] == 4


# --- PairCollator ----------------------------------------------------------------------------

FEATURES = [
    {"input_ids": [2, 4, 3], "attention_mask": [1, 1, 1], "length": 3, "labels": 1.0, "binary_labels": 0},
    {"input_ids": [2, 4, 5, 6, 3], "attention_mask": [1] * 5, "length": 5, "labels": 4.0, "binary_labels": 1},
]


def test_collator_pads_to_the_longest_in_the_batch() -> None:
    batch = PairCollator(pad_token_id=9)(FEATURES)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "binary_labels"}
    assert batch["input_ids"].tolist() == [[2, 4, 3, 9, 9], [2, 4, 5, 6, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["input_ids"].dtype == torch.int64
    assert batch["labels"].tolist() == [1.0, 4.0]
    assert batch["binary_labels"].tolist() == [0.0, 1.0]
    assert batch["labels"].dtype == batch["binary_labels"].dtype == torch.float32


def test_collator_pad_to_gives_a_fixed_width() -> None:
    batch = PairCollator(pad_token_id=9, pad_to=8)(FEATURES)
    assert batch["input_ids"].tolist() == [[2, 4, 3, 9, 9, 9, 9, 9], [2, 4, 5, 6, 3, 9, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0]]


def test_collator_pads_each_bi_sentence_column_on_its_own() -> None:
    features = [
        {
            "a_input_ids": [2, 4, 3],
            "a_attention_mask": [1, 1, 1],
            "b_input_ids": [2, 3],
            "b_attention_mask": [1, 1],
        },
        {
            "a_input_ids": [2, 3],
            "a_attention_mask": [1, 1],
            "b_input_ids": [2, 5, 3],
            "b_attention_mask": [1, 1, 1],
        },
    ]
    batch = PairCollator(pad_token_id=0)(features)
    assert batch["a_input_ids"].tolist() == [[2, 4, 3], [2, 3, 0]]
    assert batch["b_input_ids"].tolist() == [[2, 3, 0], [2, 5, 3]]
    assert batch["b_attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]


# --- STSModel --------------------------------------------------------------------------------


@pytest.mark.parametrize(("architecture", "head"), ARCH_HEADS)
def test_forward_outputs_one_value_per_pair(tokenizer, architecture: str, head: str) -> None:
    model = tiny_model(tokenizer, architecture, head)
    with torch.no_grad():
        out = model(**batch_of(tokenizer, architecture))
    expected = {"raw", "scores", "binary_logits"} if head == "multitask" else {"raw", "scores"}
    if architecture == "bi":  # the two sentences' embeddings, for CoSENT and AnglE
        u, v = out.pop("embeddings")
        assert u.shape == v.shape == (len(PAIRS), model.config.hidden_size)
    assert set(out) == expected
    assert all(v.shape == (len(PAIRS),) for v in out.values())


def test_tiny_encoder_has_two_layers_and_the_tokenizer_vocabulary(tokenizer) -> None:
    model = tiny_model(tokenizer, "cross", "regression")
    assert model.config.num_hidden_layers == 2
    assert model.config.hidden_size == 32
    assert model.config.vocab_size == len(tokenizer)


@pytest.mark.parametrize("architecture", ["cross", "bi"])
def test_scores_are_raw_times_scale_plus_shift(tokenizer, architecture: str) -> None:
    model = tiny_model(tokenizer, architecture, "regression", scale=1.5, shift=2.5)
    with torch.no_grad():
        out = model(**batch_of(tokenizer, architecture))
    torch.testing.assert_close(out["scores"], out["raw"] * 1.5 + 2.5)


def test_bi_raw_output_is_the_cosine_of_the_mean_pooled_embeddings(tokenizer) -> None:
    model = tiny_model(tokenizer, "bi", "regression")
    batch = batch_of(tokenizer, "bi")
    with torch.no_grad():
        out = model(**batch)
        u = model.embed(batch["a_input_ids"], batch["a_attention_mask"])
        v = model.embed(batch["b_input_ids"], batch["b_attention_mask"])
    torch.testing.assert_close(out["raw"], torch.nn.functional.cosine_similarity(u, v, dim=-1))


@pytest.mark.parametrize(("architecture", "head"), ARCH_HEADS)
def test_save_and_load_give_identical_predictions(
    tmp_path: Path, tokenizer, architecture: str, head: str
) -> None:
    model = tiny_model(tokenizer, architecture, head, scale=1.3, shift=2.9)
    model.save_pretrained(tmp_path / "best_model")
    loaded = STSModel.from_pretrained(tmp_path / "best_model")
    pairs = [(a, b) for a, b, _, _ in PAIRS]
    np.testing.assert_allclose(predict(loaded, tokenizer, pairs), predict(model, tokenizer, pairs), rtol=1e-5)
    if head == "multitask":
        batch = batch_of(tokenizer, architecture)
        with torch.no_grad():
            torch.testing.assert_close(loaded(**batch)["binary_logits"], model(**batch)["binary_logits"])


@pytest.mark.parametrize("head", ["regression", "multitask"])
def test_cross_export_outputs_0_to_5_scores_in_plain_transformers(
    tmp_path: Path, tokenizer, head: str
) -> None:
    model = tiny_model(tokenizer, "cross", head, scale=1.3, shift=2.9)
    model.save_pretrained(tmp_path)
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    batch = batch_of(tokenizer, "cross")
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        logits = plain(**inputs).logits
        out = model(**batch)
    torch.testing.assert_close(logits[:, 0], out["scores"])
    if head == "multitask":
        torch.testing.assert_close(logits[:, 1], out["binary_logits"])


def test_from_pretrained_refuses_a_folder_not_exported_here(tmp_path: Path, tokenizer) -> None:
    # A plain Hugging Face model folder: weights and config, no sts_model.json.
    tiny_model(tokenizer, "cross", "regression").encoder.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=r"has no sts_model\.json: not a model exported by this project"):
        STSModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("load", ["tokenizer", "model"])
def test_missing_model_path_suggests_builtin_tiny(tmp_path: Path, tokenizer, load: str) -> None:
    cfg = ModelConfig(name_or_path=str(tmp_path / "no-such-model"))
    with pytest.raises(ModelError) as err:
        load_tokenizer(cfg) if load == "tokenizer" else build_model(cfg, tokenizer)
    message = str(err.value)
    assert f"cannot load model or tokenizer {cfg.name_or_path!r}" in message
    assert "'builtin:tiny'" in message


# --- the real pretrained stand-in ------------------------------------------------------------


@pytest.fixture(scope="module")
def e5():
    cfg = ModelConfig(
        name_or_path=str(shared_dir() / "models" / "e5-small-ko"), architecture="bi", num_hidden_layers=4
    )
    tok = load_tokenizer(cfg)
    # Bi-encoder scores are 5 x cosine, as trials build them.
    return tok, build_model(cfg, tok, target_scale=5.0).eval()


def test_e5_small_ko_loads_truncated_and_scores_korean_pairs(e5) -> None:
    tok, model = e5
    assert model.config.num_hidden_layers == 4
    assert len(model.encoder.encoder.layer) == 4
    same = "한 남자가 기타를 치고 있다."
    scores = predict(model, tok, [(same, same), (same, "여자가 양파를 썰고 있다.")], max_length=64)
    assert scores[0] == pytest.approx(5.0, abs=1e-4)
    assert -5.0 <= scores[1] < scores[0]
