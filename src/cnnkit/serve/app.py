"""`create_app(predictor, settings) -> FastAPI`: the HTTP service of one trained model.

Endpoints: POST /predict, POST /explain (a classifier), POST /embed, POST /search (an embedding
model; /search in the gallery given at start), GET /healthz, /readyz, /info, /metrics, the page at
/ and OpenAPI at /docs. Uploads are read into memory within the size limit, checked by magic bytes
and header, decoded in a thread pool and batched dynamically (`DynamicBatcher`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response

from cnnkit.embeddings.gallery import Gallery
from cnnkit.inference import Prediction, Predictor
from cnnkit.serve.errors import ServeError, install_error_handlers
from cnnkit.serve.middleware import BodyLimitMiddleware, MetricsMiddleware
from cnnkit.serve.overlay import gradcam_overlay
from cnnkit.serve.schemas import (
    BatchingInfo,
    ClassProbability,
    ErrorResponse,
    ExplainResponse,
    IndexInfo,
    InfoResponse,
    LimitsInfo,
    PredictResponse,
    StatusResponse,
)
from cnnkit.serve.requests import ERRORS, UPLOAD_BODY, authorised, get_state, read_uploads
from cnnkit.serve.retrieval import add_retrieval_routes
from cnnkit.serve.settings import ServeSettings
from cnnkit.serve.state import ServeState
from cnnkit.serve.uploads import ACCEPTED_FORMATS

ENDPOINTS = ("/", "/predict", "/explain", "/embed", "/search", "/healthz", "/readyz", "/info", "/metrics", "/docs",
             "/openapi.json")


def create_app(predictor: Predictor, settings: ServeSettings | None = None, *,
               gallery: Gallery | None = None) -> FastAPI:
    """The FastAPI app serving `predictor`; mount it in your own app or run it with uvicorn.
    An embedding model's predictor answers /embed, and /search in `gallery` when one is given."""
    settings = settings or ServeSettings()
    state = ServeState(predictor, settings, gallery)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(title=f"cnnkit serve: {predictor.model_name or 'model'}", lifespan=lifespan,
                  description="Predictions and Grad-CAM explanations of one trained cnnkit model.")
    app.state.serve = state
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics, endpoints=ENDPOINTS)

    page_html = resources.files("cnnkit.serve").joinpath("static/index.html").read_text("utf-8")  # read once

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html)

    @app.get("/healthz", response_model=StatusResponse)
    async def healthz() -> StatusResponse:
        """The process is up (no authentication)."""
        return StatusResponse(status="ok")

    @app.get("/readyz", response_model=StatusResponse, responses={503: {"model": ErrorResponse}})
    async def readyz(state: ServeState = Depends(get_state)) -> StatusResponse:
        """503 until the model is loaded and one warm-up forward has run (no authentication)."""
        if not state.ready:
            raise ServeError(503, "not ready", "the model is loading or warming up", headers={"Retry-After": "1"})
        return StatusResponse(status="ready")

    @app.get("/info", response_model=InfoResponse)
    async def info(state: ServeState = Depends(authorised)) -> InfoResponse:
        """The model, its classes and input size, the backend, batching settings and limits."""
        p, s, g = state.predictor, state.settings, state.gallery
        index = None if g is None else IndexInfo(kind=g.index.kind, size=len(g), dim=g.index.dim,
                                                 recall_at_10=g.index.report.recall_at_10)
        return InfoResponse(
            model=p.model_name, task=state.task, embedding_dim=state.embedding_dim, index=index,
            classes=list(p.class_names), input_size=list(p.default_cfg.input_size),
            backend=p.backend.name, temperature=p.temperature,
            explain_available=hasattr(p.backend, "model") and state.task == "classification",
            auth=s.api_key is not None,
            batching=BatchingInfo(max_batch_size=s.max_batch_size, max_delay_ms=s.max_delay_ms,
                                  max_queue=s.max_queue, timeout_s=s.timeout_s, threads=state.threads),
            limits=LimitsInfo(max_upload_bytes=s.max_upload_bytes, max_pixels=s.max_pixels,
                              max_files=s.max_files, formats=list(ACCEPTED_FORMATS)),
            pid=os.getpid())

    @app.get("/metrics", response_class=Response)
    async def metrics(state: ServeState = Depends(authorised)) -> Response:
        """Prometheus text: requests by endpoint and status, latency, queue time, batch size."""
        return Response(state.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/predict", response_model=PredictResponse | list[PredictResponse], openapi_extra=UPLOAD_BODY,
              responses=ERRORS)
    async def predict(request: Request, top_k: int | None = Query(None, ge=1, le=1000),
                      state: ServeState = Depends(authorised)) -> PredictResponse | list[PredictResponse]:
        """Top-k classes of the image in field `file`, or a list for the images in field `files`."""
        started = time.perf_counter()
        state.require_task("classification", "/predict")
        uploads, many = await read_uploads(request, state.settings)
        samples = await state.decode(uploads)
        logits = await state.outputs(samples)
        found = state.predictions(state.predictor.probabilities_from_logits(logits), [u.label for u in uploads],
                                  top_k=top_k or state.settings.default_top_k)
        latency = 1000 * (time.perf_counter() - started)
        answers = [_answer(state, p, latency) for p in found]
        return answers if many else answers[0]

    @app.post("/explain", response_model=ExplainResponse | list[ExplainResponse], openapi_extra=UPLOAD_BODY,
              responses={**ERRORS, 501: {"model": ErrorResponse}})
    async def explain(request: Request, top_k: int | None = Query(None, ge=1, le=1000),
                      class_name: str | None = Query(None, alias="class", description="label or index to explain"),
                      state: ServeState = Depends(authorised)) -> ExplainResponse | list[ExplainResponse]:
        """The prediction plus the Grad-CAM overlay (PNG data URL) of the top class or of `class`, for
        the image in field `file`, or a list for the images in field `files`."""
        started = time.perf_counter()
        state.require_task("classification", "/explain")
        if not hasattr(state.predictor.backend, "model"):
            raise ServeError(501, "explain not available",
                             f"Grad-CAM needs the torch model; this server runs the {state.predictor.backend.name} "
                             "backend: serve the run directory for /explain")
        uploads, many = await read_uploads(request, state.settings)
        target = _class_index(state.predictor, class_name)
        samples = await state.decode(uploads)
        logits = await state.outputs(samples)
        probabilities = state.predictor.probabilities_from_logits(logits)
        found = state.predictions(probabilities, [u.label for u in uploads],
                                  top_k=top_k or state.settings.default_top_k)
        explained = []
        for row, (sample, prediction) in enumerate(zip(samples, found)):
            index = prediction.index if target is None else target
            overlay, view = await asyncio.get_running_loop().run_in_executor(
                state.inference_pool, gradcam_overlay, state.predictor, sample, index)
            explained.append((overlay, view, ClassProbability(label=state.predictor.class_names[index], index=index,
                                                              probability=float(probabilities[row, index]))))
        latency = 1000 * (time.perf_counter() - started)
        answers = [ExplainResponse(**_answer(state, prediction, latency).model_dump(), method="gradcam", overlay=overlay,
                                   view=view, explained=chosen)
                   for prediction, (overlay, view, chosen) in zip(found, explained)]
        return answers if many else answers[0]

    add_retrieval_routes(app)
    return app


def _class_index(predictor: Predictor, name: str | None) -> int | None:
    """`class=` as a label, or an index into the class list; 422 naming the known classes otherwise."""
    if name is None:
        return None
    if name in predictor.class_names:
        return predictor.class_names.index(name)
    if name.isascii() and name.isdigit() and int(name) < len(predictor.class_names):  # not "²" or "٢"
        return int(name)
    raise ServeError(422, "unknown class", f"class={name!r} is not one of {list(predictor.class_names)}")


def _answer(state: ServeState, prediction: Prediction, latency_ms: float) -> PredictResponse:
    return PredictResponse(model=state.predictor.model_name, filename=prediction.source, latency_ms=latency_ms,
                           predictions=[ClassProbability(label=c.label, index=c.index, probability=c.probability)
                                        for c in prediction.top])
