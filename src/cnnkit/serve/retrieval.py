"""POST /embed and POST /search: an embedding model's unit vectors, and the nearest items of the
gallery loaded at start (`--index DIR`, a `cnnkit index` folder searched by `Gallery.search`).

Uploads go through the same limits, decoding and dynamic batcher as /predict; the embedding model's
forward already answers unit vectors (`EmbeddingModel`), so the batcher serves it unchanged.
"""

from __future__ import annotations

import time

from fastapi import Depends, FastAPI, Query, Request

from cnnkit.serve.requests import ERRORS, UPLOAD_BODY, authorised, read_uploads
from cnnkit.serve.schemas import EmbedResponse, ErrorResponse, SearchMatch, SearchResponse
from cnnkit.serve.state import ServeState

_EMBED_ERRORS = {**ERRORS, 409: {"model": ErrorResponse}}
_SEARCH_ERRORS = {**_EMBED_ERRORS, 404: {"model": ErrorResponse}}


def add_retrieval_routes(app: FastAPI) -> None:
    """Register /embed and /search on `app` (they answer 409 for a classifier)."""
    default = app.state.serve.settings.default_top_k
    top_k_text = f"how many gallery items to answer, most similar first (default {default})"

    @app.post("/embed", response_model=EmbedResponse | list[EmbedResponse], openapi_extra=UPLOAD_BODY,
              responses=_EMBED_ERRORS)
    async def embed(request: Request, state: ServeState = Depends(authorised)) -> EmbedResponse | list[EmbedResponse]:
        """The unit embedding of the image in field `file`, or a list for the images in field `files`."""
        started = time.perf_counter()
        state.require_task("embedding", "/embed")
        uploads, many = await read_uploads(request, state.settings)
        vectors = await state.outputs(await state.decode(uploads))
        latency = 1000 * (time.perf_counter() - started)
        answers = [EmbedResponse(model=state.predictor.model_name, filename=u.label,
                                 dim=vector.shape[0], embedding=vector.tolist(), latency_ms=latency)
                   for u, vector in zip(uploads, vectors)]
        return answers if many else answers[0]

    @app.post("/search", response_model=SearchResponse | list[SearchResponse], openapi_extra=UPLOAD_BODY,
              responses=_SEARCH_ERRORS)
    async def search(request: Request, top_k: int | None = Query(None, ge=1, le=1000, description=top_k_text),
                     state: ServeState = Depends(authorised)) -> SearchResponse | list[SearchResponse]:
        """The `top_k` gallery items most similar (cosine) to the image in `file`, or a list for `files`;
        404 when the server was started without --index."""
        started = time.perf_counter()
        state.require_task("embedding", "/search")
        state.require_gallery()
        uploads, many = await read_uploads(request, state.settings)
        vectors = await state.outputs(await state.decode(uploads))
        found = await state.search(vectors, top_k or state.settings.default_top_k)
        latency = 1000 * (time.perf_counter() - started)
        answers = [SearchResponse(model=state.predictor.model_name, filename=u.label, latency_ms=latency,
                                  matches=[SearchMatch(rank=rank, path=m.path, label=m.label, score=m.score)
                                           for rank, m in enumerate(matches, start=1)])
                   for u, matches in zip(uploads, found)]
        return answers if many else answers[0]
