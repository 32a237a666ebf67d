"""A limit on request bodies that counts the bytes read, so a chunked body cannot get past it.

A limit on ``Content-Length`` alone lets a body sent with ``Transfer-Encoding: chunked`` (which
has no length) be read whole: 200 MB of it took the server from 706 MB to 1,325 MB RSS before
its 422. :class:`BodyLimit` refuses a declared length over the limit without reading anything,
and otherwise counts the ``http.request`` messages as the application reads them and stops at
the first byte past the limit, so at most the limit plus one chunk is ever held.

Starlette's and FastAPI's own ``max_body_size`` count bytes the same way, but answer a declared
length over the limit with a plain-text 413 that replaces the application's own response; this
server answers every error as JSON with a ``message``.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """413; ``detail`` says how large the body was, or where it was cut off, and the limit."""

    def __init__(self, limit: int, length: int | None = None, cut_at: int | None = None) -> None:
        given = f"{length} bytes is" if length is not None else f"a chunked body cut off at {cut_at} bytes is"
        super().__init__(
            413, f"body: {given} over the limit of {limit} bytes; send fewer or shorter pairs per request"
        )


def too_large_response(exc: BodyTooLarge) -> JSONResponse:
    """The 413 as JSON, in the shape of the server's other errors."""
    return JSONResponse({"message": exc.detail, "detail": exc.detail}, status_code=413)


def _declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    return int(value) if value is not None and value.isdigit() else None


class BodyLimit:
    """Pure ASGI middleware: at most ``max_bytes`` of any request body is read.

    A ``Content-Length`` over the limit is answered 413 at once. Otherwise reading past the limit
    raises :class:`BodyTooLarge` out of ``receive``, which the application's exception handlers
    turn into the 413 (FastAPI re-raises an ``HTTPException`` from reading the body); if it gets
    out of the application before a response has started, this middleware answers it.

    Args:
        app: the application.
        max_bytes: the largest body read (bytes).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _declared_length(scope)
        if length is not None and length > self.max_bytes:
            await too_large_response(BodyTooLarge(self.max_bytes, length=length))(scope, receive, send)
            return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes, cut_at=received)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await too_large_response(exc)(scope, receive, send)
