"""Helpers of the serve tests: the tiny model, PNG bytes, an in-process app with its lifespan, metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import numpy as np
import torch
from PIL import Image

import cnnkit
from cnnkit.embeddings.gallery import Gallery
from cnnkit.inference import Predictor
from cnnkit.serve import ServeSettings, create_app

CLASSES = ("cat", "dog", "fox")


def tiny_model() -> torch.nn.Module:
    with torch.random.fork_rng():  # seeded weights without touching the caller's RNG state
        torch.manual_seed(0)
        model = cnnkit.create_model("compact_cnn", num_classes=len(CLASSES), in_chans=3)
    model.default_cfg = dataclasses.replace(model.default_cfg, input_size=(3, 24, 24), mean=(0.5,) * 3,
                                            std=(0.25,) * 3)
    return model.eval()


def png_bytes(seed: int, size: tuple[int, int] = (30, 26), fmt: str = "PNG") -> bytes:
    """A distinct noise image per seed, encoded in memory."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


@asynccontextmanager
async def serving(predictor: Predictor, *, gallery: Gallery | None = None,
                  **settings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to create_app(...) in-process, lifespan (batcher, warm-up) included."""
    app = create_app(predictor, ServeSettings(**settings), gallery=gallery)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve.test", timeout=30) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def run(scenario: Callable[[], object]) -> object:
    return asyncio.run(scenario())


class StreamedUpload:
    """A multipart body (one `file` part of `chunks` x `chunk` zero bytes) sent as a stream;
    `pulled` counts the bytes the server asked for. Pass `content=...` and `headers=...` to post."""

    def __init__(self, *, chunk: int, chunks: int) -> None:
        self.chunk, self.chunks, self.pulled = chunk, chunks, 0
        self.headers = {"content-type": "multipart/form-data; boundary=x"}

    async def content(self) -> AsyncIterator[bytes]:
        yield b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n\r\n"
        for _ in range(self.chunks):
            self.pulled += self.chunk
            yield b"\0" * self.chunk


def upload(data: bytes, name: str = "image.png", content_type: str = "image/png", field: str = "file") -> dict:
    return {"files": [(field, (name, data, content_type))]}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in exposition text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" ([0-9.e+-]+)"
    found = re.search(r"^" + pattern + "$", text, flags=re.MULTILINE)
    return float(found.group(1)) if found else 0.0
