"""The typed answers of the service (pydantic models, so /docs shows them)."""

from __future__ import annotations

from pydantic import BaseModel


class ClassProbability(BaseModel):
    label: str
    index: int
    probability: float


class PredictResponse(BaseModel):
    """The top-k classes of one uploaded image, best first."""

    model: str
    filename: str
    predictions: list[ClassProbability]
    latency_ms: float


class ExplainResponse(PredictResponse):
    """The prediction plus the Grad-CAM overlay of `explained` (the top class unless `class=` named one)."""

    explained: ClassProbability
    method: str
    overlay: str  # data:image/png;base64 URL of the map blended on `view`
    view: str  # data:image/png;base64 URL of what the model saw (resized and cropped), the overlay's base


class EmbedResponse(BaseModel):
    """The unit (L2-normalised) embedding of one uploaded image."""

    model: str
    filename: str
    dim: int
    embedding: list[float]
    latency_ms: float


class SearchMatch(BaseModel):
    """One gallery item: its rank (1 = most similar), path and label in the gallery, cosine similarity."""

    rank: int
    path: str
    label: str
    score: float


class SearchResponse(BaseModel):
    """The gallery items nearest to one uploaded image, most similar first."""

    model: str
    filename: str
    matches: list[SearchMatch]
    latency_ms: float


class IndexInfo(BaseModel):
    kind: str
    size: int
    dim: int
    recall_at_10: float


class BatchingInfo(BaseModel):
    max_batch_size: int
    max_delay_ms: float
    max_queue: int
    timeout_s: float
    threads: int  # torch intra-op threads of the inference thread


class LimitsInfo(BaseModel):
    max_upload_bytes: int
    max_pixels: int
    max_files: int
    formats: list[str]


class InfoResponse(BaseModel):
    model: str
    task: str  # "classification" (/predict, /explain) or "embedding" (/embed, /search)
    embedding_dim: int | None
    index: IndexInfo | None  # the gallery /search looks in (--index), None without one
    classes: list[str]
    input_size: list[int]
    backend: str
    temperature: float | None
    explain_available: bool
    auth: bool
    batching: BatchingInfo
    limits: LimitsInfo
    pid: int  # the server process that answered (tells --workers apart)


class StatusResponse(BaseModel):
    status: str


class ErrorResponse(BaseModel):
    error: str
    detail: object = None
