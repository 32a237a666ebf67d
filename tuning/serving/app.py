"""The HTTP server: a JSON similarity API and a web page, on FastAPI + uvicorn.

Endpoints: ``POST /similarity``, ``POST /similarity/batch``, ``GET /health``, ``GET /stats``,
``GET /openapi.json``, and the page at ``GET /`` / ``POST /`` (plain form post).

Limits on input, checked before any model work: a sentence has 1 to ``MAX_SENTENCE_CHARS``
characters and not only whitespace; a batch has 1 to ``MAX_BATCH_PAIRS`` pairs; a body is at
most ``MAX_BODY_BYTES``, counted on the bytes read, so a chunked body is cut off there too. A
request past them gets 422 (413 for the body; 400 for a body that is not UTF-8) with a
``message`` that names the field; the OpenAPI schema states each of these. Within them, text
past the model's ``max_length`` tokens is truncated.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from typing import Annotated, Any
from urllib.parse import parse_qs

import torch
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationError
from starlette.exceptions import HTTPException

from tuning.serving.batcher import DynamicBatcher
from tuning.serving.body_limit import BodyLimit, BodyTooLarge, too_large_response
from tuning.serving.page import STATIC_DIR, load_template, render_page
from tuning.serving.scorer import SIMILAR_AT, ServedModel
from tuning.settings import ConfigError
from tuning.settings.rules import Rule, at_least, within
from tuning.settings.schema import RULE, setting

DEVICE = Rule(lambda v: v == "auto" or v.split(":")[0] in ("cpu", "cuda"), "auto, cpu, cuda or cuda:N")


def flag_name(name: str) -> str:
    """A ServeSettings field's flag: ``max_batch_size`` -> ``--max-batch-size``."""
    return "--" + name.replace("_", "-")


MAX_SENTENCE_CHARS = 1000
"""Longest sentence accepted (characters); a 128-token model reads ~150-300 Korean characters."""
MAX_BATCH_PAIRS = 64
"""Most pairs in one ``POST /similarity/batch``."""
MAX_BODY_BYTES = 1 << 20
"""Largest request body (bytes): a full batch of the longest sentences fits with room to spare."""
TEXT_PATTERN = r"[^\x09-\x0d\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
"""A sentence must match this somewhere: one character that is not whitespace. The class lists
every character ``str.isspace`` calls whitespace rather than using ``\\S``, whose meaning differs
between Python, JavaScript (ECMA 262, the OpenAPI dialect) and Rust regex engines."""


@dataclass
class ServeSettings:
    """Where the server listens and how it batches. Each field is a flag of ``run_search.py
    serve`` (``--max-batch-size``), its docstring the help, its rule checked by :meth:`validate`."""

    host: str = "127.0.0.1"
    """Interface to listen on; ``0.0.0.0`` exposes the server to the network."""
    port: int = setting(8000, rule=within(0, 65535))
    """TCP port."""
    max_batch_size: int = setting(32, rule=at_least(1))
    """Most sentence pairs per forward pass; 1 turns dynamic batching off."""
    max_wait_ms: float = setting(5.0, rule=at_least(0))
    """Longest a request waits for others to share its forward pass (milliseconds); 0 turns
    dynamic batching off."""
    device: str = setting("auto", rule=DEVICE)
    """``cpu``, ``cuda``, ``cuda:N``, or ``auto`` (the GPU when there is one)."""

    def validate(self) -> None:
        """Raise one ``ConfigError`` listing every bad setting, named by its flag."""
        problems = []
        for f in fields(self):
            rule, value = f.metadata.get(RULE), getattr(self, f.name)
            if rule is not None and not rule(value):
                problems.append(f"{flag_name(f.name)} must be {rule.accepts}, got {value!r}.")
        if DEVICE(self.device) and self.device.startswith("cuda") and not torch.cuda.is_available():
            problems.append(f"--device {self.device}: no CUDA GPU is visible here; use --device cpu.")
        if problems:
            raise ConfigError("\n".join(problems))

    def torch_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


_TEXT = re.compile(TEXT_PATTERN)


def _not_blank(text: str) -> str:
    # The schema's pattern itself, so the server refuses exactly what the schema says it refuses.
    if not _TEXT.search(text):
        raise ValueError("must contain text, not only whitespace")
    return text


Sentence = Annotated[
    StrictStr,
    Field(
        min_length=1,
        max_length=MAX_SENTENCE_CHARS,
        examples=["한 남자가 말을 타고 있다."],
        json_schema_extra={"pattern": TEXT_PATTERN},
    ),
    AfterValidator(_not_blank),
]


class SimilarityRequest(BaseModel):
    """One sentence pair."""

    model_config = ConfigDict(extra="forbid")
    sentence1: Sentence
    sentence2: Sentence


class BatchRequest(BaseModel):
    """Several sentence pairs, scored in order."""

    model_config = ConfigDict(extra="forbid")
    pairs: list[SimilarityRequest] = Field(min_length=1, max_length=MAX_BATCH_PAIRS)


class Similarity(BaseModel):
    """The score of one pair and its verdict."""

    score: float = Field(description="Similarity on the model's 0-5 scale (not clipped).")
    similar: bool = Field(description=f"score >= {SIMILAR_AT}")


class BatchSimilarity(BaseModel):
    """Scores of a batch, in the order of its pairs."""

    results: list[Similarity]


class FieldError(BaseModel):
    """One problem of a request, as FastAPI reports it."""

    loc: list[str | int] = Field(description="Where: ``body``, then the path to the field.")
    msg: str
    type: str


class InvalidRequest(BaseModel):
    """A request that breaks the schema (422)."""

    message: str = Field(description="Every problem, ``field: problem; ...``.")
    detail: list[FieldError]


class BadBody(BaseModel):
    """A body that cannot be read: not UTF-8 (400) or over ``MAX_BODY_BYTES`` (413)."""

    message: str = Field(description="What is wrong with the body and what is accepted.")
    detail: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": BadBody, "description": "The body is not UTF-8 text, so it cannot be parsed."},
    413: {"model": BadBody, "description": f"The body is over {MAX_BODY_BYTES} bytes."},
    422: {"model": InvalidRequest, "description": "The body is not JSON or breaks the schema."},
}
"""The errors of the POST endpoints, for their OpenAPI description."""


def error_message(errors: list[Any]) -> str:
    """``field: problem; ...`` from pydantic errors; ``field`` is the dotted path in the body."""
    parts = []
    for err in errors:
        path = [str(p) for p in err["loc"] if p != "body"]
        if err["type"] == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            parts.append(f"body: invalid JSON at character {path[0] if path else 0}: {detail}")
        else:
            parts.append(f"{'.'.join(path) or 'body'}: {err['msg']}")
    return "; ".join(parts)


def _errors_response(errors: list[Any]) -> JSONResponse:
    """422 with FastAPI's usual ``detail`` list and one readable ``message``."""
    detail = [{k: err[k] for k in ("loc", "msg", "type")} for err in errors]
    return JSONResponse({"message": error_message(errors), "detail": detail}, status_code=422)


def create_app(served: ServedModel, settings: ServeSettings) -> FastAPI:
    """The application around a loaded model; the batcher lives as long as the app runs."""
    batcher = DynamicBatcher(
        lambda pairs: served.score(pairs, batch_size=settings.max_batch_size),
        settings.max_batch_size,
        settings.max_wait_ms,
    )
    template = load_template()
    info = served.describe()
    summary = (
        f"{info['path']} ({info['architecture']}, {info['encoder']}, 레이어 {info['num_hidden_layers']}개)"
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="Korean sentence similarity",
        description=(
            "Scores how similar two Korean sentences are, on 0-5, with the best model of a search. "
            f"Each input is truncated to the model's max_length tokens ({served.max_length}); "
            f"sentences over {MAX_SENTENCE_CHARS} characters are refused with 422."
        ),
        version="1",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN; /openapi.json is served.
        redoc_url=None,
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _errors_response(list(exc.errors()))

    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)  # counts what is read, chunked or not

    @app.exception_handler(HTTPException)
    async def unreadable_body(request: Request, exc: HTTPException) -> Response:
        """413 and 400 with a ``message`` like the 422's; other HTTP errors as FastAPI sends them."""
        if isinstance(exc, BodyTooLarge):
            return too_large_response(exc)
        if exc.status_code == 400:  # FastAPI's answer to a body json.loads cannot decode
            message = "body: cannot be parsed; send JSON encoded as UTF-8"
            return JSONResponse({"message": message, "detail": str(exc.detail)}, status_code=400)
        return await http_exception_handler(request, exc)

    def verdict(score: float) -> Similarity:
        return Similarity(score=score, similar=score >= SIMILAR_AT)

    @app.post("/similarity", response_model=Similarity, responses=ERROR_RESPONSES)
    async def similarity(pair: SimilarityRequest) -> Similarity:
        """Score one sentence pair."""
        (score,) = await batcher.submit([(pair.sentence1, pair.sentence2)])
        return verdict(score)

    @app.post("/similarity/batch", response_model=BatchSimilarity, responses=ERROR_RESPONSES)
    async def similarity_batch(batch: BatchRequest) -> BatchSimilarity:
        """Score up to MAX_BATCH_PAIRS pairs, in order."""
        scores = await batcher.submit([(p.sentence1, p.sentence2) for p in batch.pairs])
        return BatchSimilarity(results=[verdict(s) for s in scores])

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """The model, its recorded validation (and test) metrics, the input limits and the batching."""
        best = served.best
        return {
            "status": "ok",
            "model": info,
            "validation": best.validation,
            "test": best.test,
            # What best.json holds of these (a model exported untrained holds only its trial_id).
            "trial": best.model_dump(
                include={"stage", "trial_id", "best_epoch", "params"}, exclude_unset=True
            ),
            "threshold": SIMILAR_AT,
            "limits": {
                "max_sentence_chars": MAX_SENTENCE_CHARS,
                "max_batch_pairs": MAX_BATCH_PAIRS,
                "max_body_bytes": MAX_BODY_BYTES,
                "truncation": f"each input is truncated to {served.max_length} tokens "
                f"({'the pair together' if info['architecture'] == 'cross' else 'each sentence'})",
            },
            "batching": batcher.settings(),
        }

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        """Batching counters since start-up."""
        return batcher.stats.to_dict()

    def page(status: int = 200, /, **filled: Any) -> HTMLResponse:
        body = render_page(
            template,
            model=summary,
            max_chars=MAX_SENTENCE_CHARS,
            max_length=served.max_length,
            threshold=SIMILAR_AT,
            **filled,
        )
        return HTMLResponse(body, status_code=status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return page()

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    async def index_form(request: Request) -> HTMLResponse:
        """The form posted without JavaScript: the page with the result or the error."""
        try:
            form = parse_qs((await request.body()).decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return page(400, error="body: the form is not UTF-8 text")
        sentences = {k: form.get(k, [""])[0] for k in ("sentence1", "sentence2")}
        try:
            pair = SimilarityRequest.model_validate(sentences)
        except ValidationError as err:
            return page(422, error=error_message(list(err.errors())), **sentences)
        (score,) = await batcher.submit([(pair.sentence1, pair.sentence2)])
        return page(score=score, **sentences)

    return app


def _check_port_free(host: str, port: int) -> None:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as err:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {err.strerror}. Pass another --port or --host."
        ) from None


def serve(folder: str, settings: ServeSettings) -> int:
    """Load the model in ``folder`` once and serve it until interrupted.

    Raises:
        ConfigError: bad settings or a port in use. ModelError: the folder holds no loadable model.
    """
    import uvicorn

    settings.validate()
    _check_port_free(settings.host, settings.port)  # before loading: a real model takes seconds
    served = ServedModel.load(folder, settings.torch_device())
    served.score([("워밍업", "워밍업")])  # the first forward pass is slow; keep it off a request
    app = create_app(served, settings)
    info = served.describe()
    mode = (
        f"dynamic batching up to {settings.max_batch_size} pairs, {settings.max_wait_ms:g} ms wait"
        if app.state.batcher.enabled
        else "no batching"
    )
    print(
        f"[serve] {info['path']}: {info['architecture']} {info['encoder']}, max_length {served.max_length}, "
        f"{info['device']}, {mode}; page and API on http://{settings.host}:{settings.port}/",
        flush=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False)
    return 0
