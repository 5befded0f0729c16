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


class BatchingInfo(BaseModel):
    max_batch_size: int
    max_delay_ms: float
    max_queue: int
    timeout_s: float


class LimitsInfo(BaseModel):
    max_upload_bytes: int
    max_pixels: int
    max_files: int
    formats: list[str]


class InfoResponse(BaseModel):
    model: str
    classes: list[str]
    input_size: list[int]
    backend: str
    temperature: float | None
    explain_available: bool
    auth: bool
    batching: BatchingInfo
    limits: LimitsInfo


class StatusResponse(BaseModel):
    status: str


class ErrorResponse(BaseModel):
    error: str
    detail: object = None
