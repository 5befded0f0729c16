"""What one running app holds: the predictor, its batcher and thread pools, metrics, readiness,
and for an embedding model its gallery.

Request work is split by cost: decoding and resizing in a small thread pool, the forward pass
(and Grad-CAM) in one inference thread fed by the `DynamicBatcher`; the event loop only waits.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import torch

from cnnkit.data.decode import BadImageError
from cnnkit.embeddings.gallery import Gallery, Match
from cnnkit.embeddings.model import EmbeddingModel
from cnnkit.errors import CnnkitError
from cnnkit.inference import Prediction, Predictor, Prepared
from cnnkit.serve.batcher import DynamicBatcher, QueueFullError
from cnnkit.serve.errors import ServeError
from cnnkit.serve.metrics import ServeMetrics
from cnnkit.serve.settings import ServeSettings
from cnnkit.serve.uploads import Upload, check_header, sniff_format


class ServeState:
    """The per-app objects; `start` (in the lifespan) runs the warm-up forward and opens /readyz."""

    def __init__(self, predictor: Predictor, settings: ServeSettings, gallery: Gallery | None = None) -> None:
        self.predictor = predictor
        self.settings = settings
        if settings.max_pixels > predictor.max_pixels:  # the decoder would refuse what the header check let in
            raise CnnkitError(f"serve: max_pixels {settings.max_pixels} is above the predictor's decoding limit "
                              f"{predictor.max_pixels} (Predictor.max_pixels): lower --max-pixels")
        self.embedding_dim = embedding_dim(predictor)
        if gallery is not None and self.embedding_dim is None:
            raise CnnkitError("serve: a gallery (--index) needs an embedding run; this model is a classifier")
        if gallery is not None and gallery.index.dim != self.embedding_dim:
            raise CnnkitError(f"serve: the gallery holds {gallery.index.dim}-d vectors, the model embeds "
                              f"{self.embedding_dim}-d ones (index it with this run)")
        self.gallery = gallery
        self.threads = settings.threads or torch.get_num_threads()
        self.metrics = ServeMetrics()
        self.ready = False
        self.decode_pool: ThreadPoolExecutor | None = None
        self.inference_pool: ThreadPoolExecutor | None = None
        self.batcher: DynamicBatcher | None = None

    async def start(self) -> None:
        # The forward runs on `threads`; decoding on one thread per image, so that it forms no OpenMP
        # team of its own (each thread running torch on several threads does, and once the teams
        # outnumber the cores libgomp stops spinning between parallel regions: benchmarks/RESULTS.md).
        self.decode_pool = ThreadPoolExecutor(self.settings.decode_threads, thread_name_prefix="cnnkit-decode",
                                              initializer=torch.set_num_threads, initargs=(1,))
        self.inference_pool = ThreadPoolExecutor(1, thread_name_prefix="cnnkit-infer",
                                                 initializer=torch.set_num_threads, initargs=(self.threads,))
        self.batcher = DynamicBatcher(self.forward, executor=self.inference_pool,
                                      max_batch_size=self.settings.max_batch_size,
                                      max_delay_ms=self.settings.max_delay_ms, max_queue=self.settings.max_queue,
                                      observe=self.metrics.observe_batch)
        self.batcher.start()
        channels, height, width = self.predictor.default_cfg.input_size
        warm_up = torch.zeros(1, channels, height, width, dtype=torch.uint8)
        await asyncio.get_running_loop().run_in_executor(self.inference_pool, self.forward, warm_up)
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self.batcher is not None:
            await self.batcher.stop()
        for pool in (self.decode_pool, self.inference_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    @property
    def task(self) -> str:
        return "classification" if self.embedding_dim is None else "embedding"

    def require_task(self, task: str, endpoint: str) -> None:
        """409 when `endpoint` needs a model of the other kind, naming the endpoints that fit."""
        if self.task == task:
            return
        use = "/predict or /explain" if self.task == "classification" else "/embed or /search"
        raise ServeError(409, f"not {'an' if task == 'embedding' else 'a'} {task} model",
                         f"{endpoint} needs {'an' if task == 'embedding' else 'a'} {task} model; "
                         f"{self.predictor.model_name or 'this model'} is {'an' if self.task == 'embedding' else 'a'} "
                         f"{self.task} model: use {use}")

    def require_gallery(self) -> Gallery:
        """The gallery /search looks in; 404 when the server was started without one."""
        if self.gallery is None:
            raise ServeError(404, "no gallery index", "the server was started without --index DIR "
                                                      "(build one with `cnnkit index RUN FOLDER --out DIR`)")
        return self.gallery

    async def search(self, vectors: torch.Tensor, k: int) -> list[list[Match]]:
        """The gallery's k nearest items of each vector (N, D), found in the decode pool (not the loop)."""
        gallery = self.require_gallery()
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, gallery.search, vectors, k)

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        """uint8 samples (N, C, H, W) -> logits (N, K), or unit embeddings (N, D) of an embedding
        model, on the CPU (runs in the inference thread)."""
        return self.predictor.backend.logits(self.predictor.normalise(samples)).cpu()

    def prepare(self, upload: Upload) -> torch.Tensor:
        """Magic bytes, header pixel count, then decode and resize: uint8 (C, H, W) at the input size."""
        label = upload.label
        image_format = sniff_format(upload.data, label)
        check_header(upload.data, label, image_format=image_format, max_pixels=self.settings.max_pixels)
        try:
            return self.predictor.sample(upload.data, name=label)
        except BadImageError as error:
            raise ServeError(400, "unreadable image", f"{label}: {error.reason}") from error
        except (OSError, ValueError) as error:  # a decoder that fails past the header checks
            raise ServeError(400, "unreadable image", f"{label}: {error}") from error

    async def decode(self, uploads: list[Upload]) -> list[torch.Tensor]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(self.decode_pool, self.prepare, u) for u in uploads)))

    async def outputs(self, samples: list[torch.Tensor]) -> torch.Tensor:
        """Each sample through the batcher: logits (N, K) or embeddings (N, D); 503 when the queue is
        full, 504 past `timeout_s`."""
        if self.batcher is None or not self.ready:
            raise ServeError(503, "not ready", "the model is still loading", headers={"Retry-After": "1"})
        futures = []
        try:
            for sample in samples:
                futures.append(self.batcher.submit(sample))
        except QueueFullError as error:
            for future in futures:
                future.cancel()
            raise ServeError(503, "server busy", f"the queue is full ({error}); retry shortly",
                             headers={"Retry-After": "1"}) from error
        try:
            rows = await asyncio.wait_for(asyncio.gather(*futures), self.settings.timeout_s)
        except asyncio.TimeoutError as error:
            raise ServeError(504, "timed out", f"no answer within {self.settings.timeout_s} s (--timeout-s)") from error
        except Exception as error:  # the model itself failed; the batcher goes on with the next batch
            raise ServeError(500, "inference failed", f"{type(error).__name__}: {error}") from error
        return torch.stack(list(rows))

    def predictions(self, probabilities: torch.Tensor, names: list[str], *, top_k: int) -> list[Prediction]:
        """The top-k of each row of (N, K) `probabilities` (`Predictor.probabilities_from_logits`)."""
        prepared = Prepared(torch.empty(0), list(range(len(names))), [])
        return self.predictor.top_k(probabilities, prepared, top_k=top_k, sources=names)


def embedding_dim(predictor: Predictor) -> int | None:
    """The embedding size when `predictor` runs an embedding model (`cnnkit.embeddings`), else None."""
    model = getattr(predictor.backend, "model", None)
    return model.embedding_dim if isinstance(model, EmbeddingModel) else None
