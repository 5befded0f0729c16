"""ASGI middleware: the request-size limit enforced while the body streams in, and request metrics.

FastAPI has no request-size limit; `BodyLimitMiddleware` refuses a declared Content-Length over the
limit before reading, and counts the body as the endpoint reads it, answering 413 at the first chunk
past the limit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnkit.serve.errors import ServeError
from cnnkit.serve.metrics import ServeMetrics


async def send_json_error(send: Send, status: int, error: str, detail: object) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 for a request body over `max_bytes`, refused while streaming (at most one chunk past).

    The body is not read ahead: the endpoint pulls it through a counting `receive` after its
    dependencies ran, so a request without a valid key gets its 401 before a byte of its upload is
    held in memory. Past the limit the counting `receive` raises `ServeError(413)`.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"the body is limited to {self.max_bytes} bytes (--max-upload-mb)"
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_json_error(send, 413, "request body too large", detail)
            return
        size = 0

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.max_bytes:
                    raise ServeError(413, "request body too large", detail, headers={"connection": "close"})
            return message

        await self.app(scope, counted, send)


class MetricsMiddleware:
    """Counts every HTTP request by endpoint (known paths only, else "other") and status, and times it."""

    def __init__(self, app: ASGIApp, *, metrics: ServeMetrics, endpoints: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = frozenset(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            path = scope.get("path", "")
            endpoint = path if path in self.endpoints else "other"
            self.metrics.observe_request(endpoint, status, time.perf_counter() - started)
