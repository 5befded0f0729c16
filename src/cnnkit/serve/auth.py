"""Bearer-token authentication: the key compared in constant time (hmac.compare_digest)."""

from __future__ import annotations

import hmac
from pathlib import Path

from fastapi import Request

from cnnkit.errors import CnnkitError
from cnnkit.serve.errors import ServeError


def read_api_key(path: str | Path) -> str:
    """The key in `path` (first line, stripped); a CnnkitError naming the file when unusable."""
    path = Path(path)
    try:
        key = path.read_text(encoding="utf-8").strip().splitlines()
    except OSError as error:
        raise CnnkitError(f"--api-key-file {path}: cannot read ({error.strerror})") from error
    if not key or len(key[0].strip()) < 16:
        raise CnnkitError(f"--api-key-file {path}: the first line must hold a key of at least 16 characters")
    return key[0].strip()


def check_bearer(request: Request, api_key: str | None) -> None:
    """401 unless `Authorization: Bearer <api_key>` (nothing to check when the key is None)."""
    if api_key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise ServeError(401, "unauthorized", "send Authorization: Bearer <key>",
                         headers={"WWW-Authenticate": "Bearer"})
