"""Tests of tuning.serving: the batcher and the page alone, then the real server over HTTP.

The served model is a ``builtin:tiny`` model exported in code: its scores mean nothing, so the
server's scores are checked against :func:`tuning.model.predict` on the same folder.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import torch
from transformers import AutoTokenizer

from tuning.model import ModelError, STSModel, predict
from tuning.serving import (
    MAX_BATCH_PAIRS,
    MAX_BODY_BYTES,
    MAX_SENTENCE_CHARS,
    DynamicBatcher,
    ServedModel,
    ServeSettings,
    export_untrained,
    serve,
)
from tuning.serving.app import TEXT_PATTERN
from tuning.serving.launcher import ServerProcess
from tuning.serving.page import DIFFERENT_TEXT, SIMILAR_TEXT, load_template, render_page
from tuning.settings import REPO_ROOT, ConfigError, ModelConfig

PAIRS = [
    ("한 남자가 말을 타고 있다.", "사람이 말을 탄다."),
    ("비행기가 이륙하고 있다.", "비행기가 이륙하고 있다."),
    ("한 여자가 양파를 썰고 있다.", "한 남자가 두부를 자르고 있다."),
    ("고양이가 잔다", "개가 공원에서 뛰어놀고 있다."),
    ("가" * 300, "나는 전에 그것을 듣지 못했다."),  # past max_length (64 tokens): truncated
]
VOCAB_TEXTS = [text for pair in PAIRS for text in pair]
VALIDATION = {"pearson": 0.8123, "f1": 0.7456}
BATCH_FLAGS = ("--max-batch-size", "16", "--max-wait-ms", "100")


def export_tiny(folder: Path, architecture: str = "cross") -> Path:
    cfg = ModelConfig(name_or_path="builtin:tiny", architecture=architecture, max_length=64)
    return export_untrained(folder, cfg, VOCAB_TEXTS, validation=VALIDATION)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("serve") / "best_model")


@pytest.fixture(scope="module")
def offline(tiny_dir: Path) -> Callable[[list[tuple[str, str]]], np.ndarray]:
    """Scores of the same folder through ``predict``, the reference the server must match."""
    model, tokenizer = STSModel.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)
    return lambda pairs: predict(model, tokenizer, pairs, max_length=64)


@pytest.fixture(scope="module")
def server(tiny_dir: Path) -> Iterator[ServerProcess]:
    with ServerProcess(tiny_dir, BATCH_FLAGS) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    limits = httpx.Limits(max_connections=32)
    with httpx.Client(base_url=server.url, timeout=30, limits=limits) as c:
        yield c


def as_pair(pair: tuple[str, str]) -> dict[str, str]:
    return {"sentence1": pair[0], "sentence2": pair[1]}


# --- the batcher alone -------------------------------------------------------------------------


def run_batcher(
    sizes: list[int], max_batch_size: int, max_wait_ms: float, fail_first: bool = False
) -> tuple[list[Any], list[int], DynamicBatcher]:
    """Submit requests of ``sizes`` pairs at once; returns results, pairs per batch, the batcher."""
    batches: list[int] = []

    def score(pairs: list[tuple[str, str]]) -> list[float]:
        batches.append(len(pairs))
        if fail_first and len(batches) == 1:
            raise RuntimeError("model failed")
        return [float(a) for a, _ in pairs]

    async def main() -> list[Any]:
        batcher = DynamicBatcher(score, max_batch_size, max_wait_ms)
        await batcher.start()
        requests = [[(str(10 * i + j), "") for j in range(n)] for i, n in enumerate(sizes)]
        results = await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)
        await batcher.stop()
        return [batcher, *results]

    batcher, *results = asyncio.run(main())
    return results, batches, batcher


def test_batcher_groups_concurrent_requests_up_to_max_batch_size() -> None:
    results, batches, batcher = run_batcher([1, 1, 1, 1, 1], max_batch_size=4, max_wait_ms=100)
    assert results == [[0.0], [10.0], [20.0], [30.0], [40.0]]
    assert batches == [4, 1]
    assert batcher.stats.to_dict() == {
        "requests": 5,
        "pairs": 5,
        "batches": 2,
        "multi_request_batches": 1,
        "largest_batch_requests": 4,
        "largest_batch_pairs": 4,
    }


@pytest.mark.parametrize(("max_batch_size", "max_wait_ms"), [(1, 100), (8, 0)])
def test_batcher_off_scores_one_request_per_pass(max_batch_size: int, max_wait_ms: float) -> None:
    results, batches, batcher = run_batcher([1, 2, 1], max_batch_size, max_wait_ms)
    assert results == [[0.0], [10.0, 11.0], [20.0]]
    assert batches == [1, 2, 1]
    assert not batcher.enabled
    assert batcher.stats.multi_request_batches == 0


def test_batcher_keeps_a_request_that_does_not_fit_for_the_next_pass() -> None:
    results, batches, _ = run_batcher([2, 3, 1], max_batch_size=4, max_wait_ms=100)
    assert results == [[0.0, 1.0], [10.0, 11.0, 12.0], [20.0]]
    assert batches == [2, 4]


def test_batcher_waits_at_most_max_wait_ms() -> None:
    started = time.perf_counter()
    results, batches, _ = run_batcher([1], max_batch_size=8, max_wait_ms=50)
    assert results == [[0.0]] and batches == [1]
    assert time.perf_counter() - started < 1.0


def test_batcher_error_fails_that_batch_only() -> None:
    results, batches, batcher = run_batcher([1, 1, 1], max_batch_size=2, max_wait_ms=100, fail_first=True)
    assert [type(r) for r in results[:2]] == [RuntimeError, RuntimeError]
    assert results[2] == [20.0]
    assert batches == [2, 1]
    assert batcher.stats.batches == 1


def test_batcher_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        DynamicBatcher(lambda pairs: [], max_batch_size=0, max_wait_ms=1)


# --- the page and the model, in process ---------------------------------------------------------


@pytest.mark.parametrize(("score", "verdict"), [(3.0, SIMILAR_TEXT), (2.99, DIFFERENT_TEXT)])
def test_page_shows_verdict_and_escapes_input(score: float, verdict: str) -> None:
    page = render_page(
        load_template(),
        model="m",
        max_chars=10,
        max_length=8,
        threshold=3.0,
        sentence1="<b>가</b>",
        score=score,
    )
    assert f'<p id="verdict" class="{"similar" if score >= 3 else "different"}">{verdict}</p>' in page
    assert f"유사도 점수: {score:.2f} / 5" in page
    assert "&lt;b&gt;가&lt;/b&gt;" in page and "<b>가" not in page
    assert '<p id="error" role="alert" hidden></p>' in page


def test_text_pattern_refuses_exactly_what_isspace_calls_whitespace() -> None:
    # The schema's pattern and the server's check are one regex; it must agree with str.isspace on
    # every code point, also read as ASCII-only (how schemathesis reads ECMA 262 patterns).
    for flags in (0, re.ASCII):
        pattern = re.compile(TEXT_PATTERN, flags)
        disagree = [c for c in range(sys.maxunicode + 1) if bool(pattern.search(chr(c))) == chr(c).isspace()]
        assert disagree == []


@pytest.mark.parametrize("architecture", ["cross", "bi"])
def test_served_model_scores_as_predict(tmp_path: Path, architecture: str) -> None:
    folder = export_tiny(tmp_path / "m", architecture)
    served = ServedModel.load(folder)
    reference = predict(STSModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder), PAIRS, 64)
    np.testing.assert_allclose(served.score(PAIRS, batch_size=2), reference, atol=1e-5)
    assert served.max_length == 64


@pytest.mark.parametrize(
    "config",
    [
        {"model": {"max_length": 32}, "training": {}},  # a trial config (tuning.trial_config)
        {"max_length": 32, "model": {"max_length": 64}},  # a flat one of before 2026-11-30, searched
    ],
)
def test_max_length_from_best_json(tmp_path: Path, config: dict) -> None:
    folder = export_tiny(tmp_path / "m")
    best = json.loads((folder / "best.json").read_text())
    best["config"] = config
    (folder / "best.json").write_text(json.dumps(best))
    served = ServedModel.load(folder)
    assert served.max_length == 32
    model, tokenizer = STSModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    at_32, at_64 = predict(model, tokenizer, PAIRS, 32), predict(model, tokenizer, PAIRS, 64)
    assert at_32[-1] != pytest.approx(at_64[-1], abs=1e-6)  # the long pair is cut differently
    np.testing.assert_allclose(served.score(PAIRS), at_32, atol=1e-5)
    (folder / "best.json").unlink()
    assert ServedModel.load(folder).max_length == 128


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "no sts_model.json"),
        ("bad_json", "best.json is not valid JSON"),
        ("bad_max_length", "max_length must be an integer"),
        ("no_weights", "cannot load the model"),
    ],
)
def test_unloadable_folder_raises_model_error(tmp_path: Path, breakage: str, message: str) -> None:
    folder = tmp_path / "best_model"
    if breakage == "empty":
        folder.mkdir()
    elif breakage != "missing":
        export_tiny(folder)
        if breakage == "bad_json":
            (folder / "best.json").write_text("{not json")
        elif breakage == "bad_max_length":
            (folder / "best.json").write_text(json.dumps({"config": {"max_length": "long"}}))
        else:
            (folder / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=message):
        ServedModel.load(folder)


def test_serve_refuses_a_port_in_use_before_loading(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = ServeSettings(port=busy.getsockname()[1])
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{settings.port}"):
            serve(str(tmp_path / "never-loaded"), settings)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "no/such/best_model"], "does not exist"),
        (
            ["serve", "MODEL", "--max-batch-size", "0", "--max-wait-ms", "-1", "--device", "tpu"],
            "--max-batch-size must be >= 1",
        ),
        (["serve"], "give the model folder once"),
    ],
)
def test_cli_errors_exit_nonzero_without_traceback(tiny_dir: Path, args: list[str], message: str) -> None:
    args = [str(tiny_dir) if a == "MODEL" else a for a in args]
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_search.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    if "max-batch-size" in message:
        # Every problem, in one error.
        assert "--max-wait-ms must be >= 0" in done.stderr and "--device must be" in done.stderr


# --- the real server over HTTP ------------------------------------------------------------------


def test_single_pairs_score_as_predict(client: httpx.Client, offline: Callable) -> None:
    expected = offline(PAIRS)
    for pair, score in zip(PAIRS, expected):
        response = client.post("/similarity", json=as_pair(pair))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["score"] == pytest.approx(float(score), abs=1e-5)
        assert body["similar"] == (body["score"] >= 3.0)


def test_batch_scores_as_predict_in_order(client: httpx.Client, offline: Callable) -> None:
    pairs = PAIRS + PAIRS[::-1]
    response = client.post("/similarity/batch", json={"pairs": [as_pair(p) for p in pairs]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    np.testing.assert_allclose([r["score"] for r in results], offline(pairs), atol=1e-5)
    assert [r["similar"] for r in results] == [r["score"] >= 3.0 for r in results]


LONG = "가" * (MAX_SENTENCE_CHARS + 1)
TOO_MANY = {"pairs": [as_pair(PAIRS[0])] * (MAX_BATCH_PAIRS + 1)}


@pytest.mark.parametrize(
    ("path", "body", "status", "expected"),
    [
        ("/similarity", {"sentence1": "가"}, 422, "sentence2: Field required"),
        ("/similarity", {"sentence1": 3, "sentence2": "가"}, 422, "sentence1: Input should be a valid string"),
        ("/similarity", {"sentence1": None, "sentence2": "가"}, 422, "sentence1: Input should be a valid string"),
        ("/similarity", {"sentence1": "", "sentence2": "가"}, 422, "sentence1: String should have at least 1"),
        ("/similarity", {"sentence1": "가", "sentence2": " \t\n"}, 422, "sentence2: Value error, must contain text"),
        ("/similarity", {"sentence1": "\u3000\x1c", "sentence2": "가"}, 422, "sentence1: Value error, must contain text"),
        ("/similarity", {"sentence1": LONG, "sentence2": "가"}, 422, f"sentence1: String should have at most {MAX_SENTENCE_CHARS}"),
        ("/similarity", {"sentence1": "가", "sentence2": "나", "sentence3": "다"}, 422, "sentence3: Extra inputs"),
        ("/similarity", b'{"sentence1": "\xea\xb0\x80",', 422, "body: invalid JSON at character"),
        ("/similarity", ["가", "나"], 422, "body: Input should be a valid dictionary"),
        ("/similarity", b"", 422, "body: Field required"),
        ("/similarity", b"x" * (2 << 20), 413, "body: 2097152 bytes is over the limit"),
        ("/similarity", b"x" * (MAX_BODY_BYTES + 1), 413, f"body: {MAX_BODY_BYTES + 1} bytes is over the limit"),
        ("/similarity", b"x" * MAX_BODY_BYTES, 422, "body: invalid JSON at character 0"),  # at the limit: read
        ("/similarity/batch", b'{"pairs": "\xff"}', 400, "body: cannot be parsed; send JSON encoded as UTF-8"),
        ("/similarity/batch", TOO_MANY, 422, f"pairs: List should have at most {MAX_BATCH_PAIRS} items"),
        ("/similarity/batch", {"pairs": []}, 422, "pairs: List should have at least 1 item"),
        ("/similarity/batch", {"pairs": [as_pair(PAIRS[0]), {"sentence1": "가"}]}, 422, "pairs.1.sentence2: Field required"),
        ("/similarity/batch", {"pairs": "가"}, 422, "pairs: Input should be a valid list"),
        ("/similarity/batch", {"pair": []}, 422, "pairs: Field required"),
    ],
)  # fmt: skip
def test_bad_input_gets_4xx_naming_the_field(
    client: httpx.Client, path: str, body: Any, status: int, expected: str
) -> None:
    if isinstance(body, bytes):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        response = client.post(path, json=body)
    assert response.status_code == status, response.text
    assert expected in response.json()["message"]
    # ... and the server keeps serving.
    assert client.post("/similarity", json=as_pair(PAIRS[0])).status_code == 200


def stream(total: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """``total`` bytes in chunks, made as they are sent; httpx sends an iterator chunked."""
    block = b"x" * chunk
    for start in range(0, total, chunk):
        yield block[: total - start]


class PeakRSS:
    """The largest resident memory of a process while the ``with`` block runs, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.before = self.peak = self.process.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
def test_huge_body_is_refused_413_without_being_read(
    client: httpx.Client, server: ServerProcess, declared: bool
) -> None:
    # 200 MB: read whole, it took the server's RSS up by ~600 MB before the limit counted bytes.
    size = 200 << 20
    headers = {"content-type": "application/json"}
    if declared:
        headers["content-length"] = str(size)  # httpx then sends the stream as is, not chunked
    assert server.process is not None
    with PeakRSS(server.process.pid) as rss:
        response = httpx.post(f"{server.url}/similarity", content=stream(size), headers=headers, timeout=120)
    assert response.status_code == 413, response.text
    body = response.json()
    if declared:
        assert body["message"].startswith(f"body: {size} bytes is over the limit of {MAX_BODY_BYTES} bytes")
    else:
        cut_at = int(re.search(r"cut off at (\d+) bytes", body["message"]).group(1))
        assert MAX_BODY_BYTES < cut_at <= MAX_BODY_BYTES + (1 << 20)  # stopped within a chunk of it
    assert body["detail"] == body["message"]
    grew_mib = (rss.peak - rss.before) / 2**20
    assert grew_mib < 30, f"the server's RSS grew by {grew_mib:.0f} MiB"
    assert client.get("/health").status_code == 200
    assert client.post("/similarity", json=as_pair(PAIRS[0])).status_code == 200


def test_chunked_body_within_the_limit_is_scored(client: httpx.Client, offline: Callable) -> None:
    body = json.dumps(as_pair(PAIRS[0])).encode()
    response = client.post(
        "/similarity", content=iter([body[:7], body[7:]]), headers={"content-type": "application/json"}
    )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 200, response.text
    assert response.json()["score"] == pytest.approx(float(offline(PAIRS[:1])[0]), abs=1e-5)


def test_health_reports_model_metrics_limits_and_batching(client: httpx.Client, tiny_dir: Path) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok"
    # Its experiment and folder name, never where this machine keeps it (issue 28).
    assert health["model"]["path"] == f"{tiny_dir.parent.name}/{tiny_dir.name}"
    assert health["model"]["architecture"] == "cross"
    assert health["model"]["max_length"] == 64
    assert health["model"]["device"] == "cpu"
    assert health["validation"] == VALIDATION
    assert health["trial"] == {"trial_id": "untrained"}
    assert health["threshold"] == 3.0
    assert health["limits"]["max_sentence_chars"] == MAX_SENTENCE_CHARS
    assert health["limits"]["max_batch_pairs"] == MAX_BATCH_PAIRS
    assert "truncated to 64 tokens" in health["limits"]["truncation"]
    assert health["batching"] == {"enabled": True, "max_batch_size": 16, "max_wait_ms": 100.0}


def test_openapi_describes_the_api(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/similarity", "/similarity/batch", "/health", "/stats"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    request = schemas["SimilarityRequest"]
    assert request["required"] == ["sentence1", "sentence2"]
    for field in ("sentence1", "sentence2"):
        sentence = request["properties"][field]
        assert (sentence["minLength"], sentence["maxLength"]) == (1, MAX_SENTENCE_CHARS)
        assert sentence["pattern"] == TEXT_PATTERN
    for path in ("/similarity", "/similarity/batch"):
        responses = spec["paths"][path]["post"]["responses"]
        assert set(responses) == {"200", "400", "413", "422"}
        for status, model in [("400", "BadBody"), ("413", "BadBody"), ("422", "InvalidRequest")]:
            assert responses[status]["content"]["application/json"]["schema"] == {
                "$ref": f"#/components/schemas/{model}"
            }
    assert schemas["BadBody"]["required"] == ["message", "detail"]


def test_page_has_the_korean_form(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert '<html lang="ko">' in page and '<meta charset="utf-8">' in page
    assert '"Noto Sans KR"' in page and "sans-serif" in page
    assert '<form id="pair-form" method="post" action="/"' in page
    assert 'name="sentence1"' in page and 'name="sentence2"' in page
    assert '<button id="submit" type="submit">유사도 확인</button>' in page
    script = client.get("/static/page.js")
    assert script.status_code == 200 and 'fetch("/similarity"' in script.text


def test_page_form_post_works_without_javascript(client: httpx.Client, offline: Callable) -> None:
    (score,) = offline(PAIRS[:1])
    page = client.post("/", data=as_pair(PAIRS[0]))
    assert page.status_code == 200
    assert f"유사도 점수: {score:.2f} / 5" in page.text
    assert f'<p id="verdict" class="different">{DIFFERENT_TEXT}</p>' in page.text
    assert f">{PAIRS[0][0]}</textarea>" in page.text  # the form keeps what was typed

    page = client.post("/", data={"sentence1": "<가>", "sentence2": "   "})
    assert page.status_code == 422
    assert '<p id="error" role="alert" >sentence2: Value error, must contain text' in page.text
    assert ">&lt;가&gt;</textarea>" in page.text


def post_concurrently(url: str, pairs: list[tuple[str, str]]) -> list[httpx.Response]:
    """All requests at once: one thread each, released together by a barrier."""
    barrier = threading.Barrier(len(pairs))

    def post(pair: tuple[str, str]) -> httpx.Response:
        barrier.wait(timeout=30)
        return httpx.post(f"{url}/similarity", json=as_pair(pair), timeout=60)

    with ThreadPoolExecutor(len(pairs)) as pool:
        return list(pool.map(post, pairs))


def test_concurrent_requests_are_batched_and_score_as_sequential(
    client: httpx.Client, server: ServerProcess
) -> None:
    pairs = [(PAIRS[i % len(PAIRS)][0], f"{PAIRS[i % len(PAIRS)][1]} {i}") for i in range(16)]
    sequential = [client.post("/similarity", json=as_pair(p)).json()["score"] for p in pairs]
    before = client.get("/stats").json()
    responses = post_concurrently(server.url, pairs)
    assert [r.status_code for r in responses] == [200] * 16
    np.testing.assert_allclose([r.json()["score"] for r in responses], sequential, atol=1e-5)
    after = client.get("/stats").json()
    assert after["requests"] - before["requests"] == 16
    assert after["multi_request_batches"] > before["multi_request_batches"]
    assert 1 < after["largest_batch_requests"] <= 16


def test_no_batching_scores_one_request_per_pass(tiny_dir: Path, offline: Callable) -> None:
    with ServerProcess(tiny_dir, ("--max-wait-ms", "0")) as unbatched:
        responses = post_concurrently(unbatched.url, PAIRS * 2)
        stats = httpx.get(f"{unbatched.url}/stats").json()
        health = httpx.get(f"{unbatched.url}/health").json()
    assert [r.status_code for r in responses] == [200] * len(responses)
    np.testing.assert_allclose([r.json()["score"] for r in responses], offline(PAIRS * 2), atol=1e-5)
    assert health["batching"]["enabled"] is False
    assert stats["batches"] == stats["requests"] == len(responses)
    assert stats["largest_batch_requests"] == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for a machine without CUDA")
def test_every_bad_serve_setting_is_named_at_once() -> None:
    """Each setting by the rule on its field, and a CUDA device where torch sees none, in one message."""
    from tuning.serving import ServeSettings
    from tuning.settings import ConfigError

    with pytest.raises(ConfigError) as err:
        ServeSettings(port=70000, max_batch_size=0, device="cuda:0").validate()
    assert str(err.value).splitlines() == [
        "--port must be in [0, 65535], got 70000.",
        "--max-batch-size must be >= 1, got 0.",
        "--device cuda:0: no CUDA GPU is visible here; use --device cpu.",
    ]
