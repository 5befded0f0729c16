"""One error shape for every failure: `{"error": "...", "detail": ...}` with the right status."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ServeError(Exception):
    """A request the service refuses: HTTP `status`, a short `error` and a `detail` naming the cause."""

    def __init__(self, status: int, error: str, detail: Any = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers


def error_response(status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """ServeError, HTTPException (404, 405, 401 ...), validation errors (422) and any unforeseen
    exception (500; its traceback goes to the server's log, not to the client) as JSON errors."""

    async def serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, _reason(exc.status_code), exc.detail, getattr(exc, "headers", None))

    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
                  for e in exc.errors()]
        return error_response(422, "invalid request", detail)

    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal server error", "the server failed on this request; its log says why")

    app.add_exception_handler(ServeError, serve_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"
