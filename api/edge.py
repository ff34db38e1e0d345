"""What every HTTP request meets before any route: who is asking, and how much it may send.

A pure ASGI middleware (Starlette's BaseHTTPMiddleware would buffer the body first):

* a request that changes something (POST, PUT, PATCH, DELETE) and is not one of the
  few public ones (logging in and out) must carry a credential that holds; otherwise it
  is answered 401 before a byte of its body is read, so an anonymous client cannot make
  the server hold a large body;
* every body has a size limit: ``Content-Length`` over it is answered 413 at once, and a
  body without one (chunked) is counted as it streams and cut off with 413 at the limit.
  Upload chunks may be as large as ``uploads.chunk_max_bytes``; everything else
  ``BODY_LIMIT`` (1 MiB: a position batch of 1,000 reports is about 200 kB);
* every answer says it may not be framed by another site's page (the console reviews a
  case with one key, so a page that frames it could trick an analyst's click).
"""
from __future__ import annotations

import json
import re

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import credential_refusal
from api.params import whole_number

BODY_LIMIT = 1 << 20
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_WRITES = frozenset({("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/logout")})
CHUNK_ROUTE = re.compile(r"/api/v1/uploads/[^/]+/(video|srt)")
# The streamed count's margin over a chunk's limit: the upload route refuses an oversized
# chunk itself (and takes it back whole); this is only the backstop.
CHUNK_SLACK = 1 << 20
FRAME_HEADERS = [(b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'")]


class BodyTooLarge(HTTPException):
    def __init__(self, rule: str):
        super().__init__(413, f"the request body is larger than allowed: {rule}")


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


class RequestGuard:
    """The middleware; ``chunk_limit`` is the largest upload chunk (``uploads.chunk_max_bytes``)."""

    def __init__(self, app: ASGIApp, chunk_limit: int, body_limit: int = BODY_LIMIT):
        self.app = app
        self.chunk_limit = chunk_limit
        self.body_limit = body_limit

    def limits(self, method: str, path: str) -> tuple[int, int, str]:
        """(largest Content-Length, largest streamed count, the rule in words) for a request."""
        if method in ("PATCH", "PUT") and CHUNK_ROUTE.fullmatch(path):
            return self.chunk_limit, self.chunk_limit + CHUNK_SLACK, f"chunks are at most {_size(self.chunk_limit)}"
        return self.body_limit, self.body_limit, f"request bodies are at most {_size(self.body_limit)}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_framed(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *FRAME_HEADERS]}
            await send(message)

        method, path = scope["method"], scope["path"]
        announced, streamed, rule = self.limits(method, path)
        length = Headers(scope=scope).get("content-length")
        if length is not None and whole_number(length) is None:
            return await _answer(send_framed, 400, "Content-Length must be a whole number of bytes")
        if length is not None and whole_number(length) > announced:
            return await _answer(send_framed, 413, BodyTooLarge(rule).detail)
        if method not in SAFE_METHODS and (method, path) not in PUBLIC_WRITES:
            refusal = await run_in_threadpool(credential_refusal, Request(scope))
            if refusal is not None:
                return await _answer(send_framed, 401, refusal, [(b"www-authenticate", b"Bearer")])

        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > streamed:
                    raise BodyTooLarge(rule)
            return message

        try:
            await self.app(scope, counted, send_framed)
        except BodyTooLarge as err:  # raised where no route turned it into an answer
            if started:
                raise
            await _answer(send_framed, 413, err.detail)


async def _answer(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})
