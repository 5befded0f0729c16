"""What every upload endpoint shares: the app's state, the bearer check and the uploaded images."""

from __future__ import annotations

from fastapi import Depends, Request
from starlette.requests import ClientDisconnect

from cnnkit.serve.auth import check_bearer
from cnnkit.serve.errors import ServeError
from cnnkit.serve.schemas import ErrorResponse
from cnnkit.serve.settings import ServeSettings
from cnnkit.serve.state import ServeState
from cnnkit.serve.uploads import Upload, parse_multipart

# The multipart body the upload endpoints take, for /docs (they read it themselves: no spooling).
UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object",
    "properties": {"file": {"type": "string", "format": "binary", "description": "one image"},
                   "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                             "description": "several images (the answer is a list)"}}}}}}}

ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 413, 415, 422, 503, 504)}


# The dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread
# pool, two thread hand-offs per request for a dictionary look-up and a string compare.
async def get_state(request: Request) -> ServeState:
    return request.app.state.serve


async def authorised(request: Request, state: ServeState = Depends(get_state)) -> ServeState:
    check_bearer(request, state.settings.api_key)
    return state


async def read_uploads(request: Request, settings: ServeSettings) -> tuple[list[Upload], bool]:
    """The images in fields `file` / `files` of the (size-limited) body; whether a list was sent."""
    try:
        body = await request.body()
    except ClientDisconnect:
        raise ServeError(400, "client disconnected", "the connection closed before the body arrived") from None
    files, _ = parse_multipart(body, request.headers.get("content-type", ""), max_files=settings.max_files)
    images = [f for f in files if f.field in ("file", "files")]
    if not images:
        raise ServeError(422, "invalid request", [{"field": "body.file", "message": "Field required: "
                                                   "send an image in multipart field `file` (or several in `files`)"}])
    if len(images) > settings.max_files:
        raise ServeError(413, "too many files", f"{len(images)} images; at most {settings.max_files} per request")
    return images, any(f.field == "files" for f in images)
