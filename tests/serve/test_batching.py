"""Dynamic batching: each request gets its own answer, batched equals batch-1, the loop stays free."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from cnnkit.inference import Predictor
from cnnkit.serve.batcher import DynamicBatcher, QueueFullError
from serve_helpers import CLASSES, metric, png_bytes, run, serving, upload


class SlowBackend:
    """The tiny model's backend, `seconds` slower per forward pass (a big model on a busy machine)."""

    name = "torch"
    device = torch.device("cpu")

    def __init__(self, inner, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return self.inner.logits(batch)


def slow(predictor: Predictor, seconds: float) -> Predictor:
    return Predictor(SlowBackend(predictor.backend, seconds), class_names=CLASSES, default_cfg=predictor.default_cfg)


def test_concurrent_tagged_requests_get_their_own_answers_equal_to_batch_one(predictor: Predictor) -> None:
    images = [png_bytes(seed) for seed in range(12)]
    expected = torch.cat([predictor.probabilities([image]) for image in images])  # batch size 1 each

    async def scenario():
        async with serving(predictor, max_batch_size=8, max_delay_ms=200) as client:
            responses = await asyncio.gather(*(client.post("/predict?top_k=3", **upload(image, f"tag-{i}.png"))
                                               for i, image in enumerate(images)))
            return responses, (await client.get("/metrics")).text

    responses, text = run(scenario)
    for i, response in enumerate(responses):
        body = response.json()
        assert body["filename"] == f"tag-{i}.png"
        got = torch.zeros(len(CLASSES))
        for p in body["predictions"]:
            got[p["index"]] = p["probability"]
        torch.testing.assert_close(got, expected[i], rtol=0, atol=1e-5)
    assert metric(text, "cnnkit_batch_size_sum") == len(images)
    assert metric(text, "cnnkit_batch_size_count") < len(images), "requests were batched together"
    assert metric(text, "cnnkit_batch_size_bucket", le="8.0") == metric(text, "cnnkit_batch_size_count")


def test_several_files_in_one_request_answer_a_list_in_order(predictor: Predictor) -> None:
    images = [png_bytes(20 + i) for i in range(3)]
    labels = [p.label for p in predictor.predict(images, top_k=1)]

    async def scenario():
        async with serving(predictor) as client:
            files = [("files", (f"f{i}.png", data, "image/png")) for i, data in enumerate(images)]
            return await client.post("/predict?top_k=1", files=files)

    body = run(scenario).json()
    assert [b["filename"] for b in body] == ["f0.png", "f1.png", "f2.png"]
    assert [b["predictions"][0]["label"] for b in body] == labels


def test_batcher_respects_size_and_delay() -> None:
    seen: list[int] = []

    def forward(samples: torch.Tensor) -> torch.Tensor:
        seen.append(len(samples))
        return samples.float().flatten(1)[:, :2]

    async def scenario():
        pool = ThreadPoolExecutor(1)
        batcher = DynamicBatcher(forward, executor=pool, max_batch_size=4, max_delay_ms=50, max_queue=100)
        batcher.start()
        samples = [torch.full((1, 2, 2), i, dtype=torch.uint8) for i in range(10)]
        rows = await asyncio.gather(*(batcher.submit(s) for s in samples))
        started = time.perf_counter()
        await batcher.submit(samples[0])
        alone = time.perf_counter() - started
        await batcher.stop()
        pool.shutdown()
        return rows, alone

    rows, alone = run(scenario)
    assert [int(r[0]) for r in rows] == list(range(10)), "each future got its own row"
    assert seen[:3] == [4, 4, 2] and seen[3] == 1
    assert 0.045 <= alone < 1.0, "a lone request waits for the delay, then runs"


def test_samples_queued_during_a_forward_pass_leave_without_waiting_the_delay_again() -> None:
    """The delay counts from when a sample was queued: B and C, queued while A's slow forward pass
    ran, have waited longer than the delay when it ends and go straight into the next pass."""
    seen: list[int] = []

    def forward(samples: torch.Tensor) -> torch.Tensor:
        seen.append(len(samples))
        time.sleep(0.4)
        return samples.float().flatten(1)

    async def scenario():
        pool = ThreadPoolExecutor(1)
        batcher = DynamicBatcher(forward, executor=pool, max_batch_size=8, max_delay_ms=400, max_queue=100)
        batcher.start()
        first = batcher.submit(torch.zeros(1, dtype=torch.uint8))
        await asyncio.sleep(0.5)  # A left after 0.4 s of delay and is in its forward pass
        later = [batcher.submit(torch.ones(1, dtype=torch.uint8)) for _ in range(2)]
        await first
        first_done = time.perf_counter()
        await asyncio.gather(*later)
        gap = time.perf_counter() - first_done
        await batcher.stop()
        pool.shutdown()
        return gap

    gap = run(scenario)
    assert seen == [1, 2]
    assert gap < 0.7, f"{gap:.2f} s: the second pass (0.4 s) should start at once, not after another 0.4 s delay"


def test_queue_full_is_503_with_retry_after() -> None:
    async def scenario():
        batcher = DynamicBatcher(lambda s: s, executor=ThreadPoolExecutor(1), max_batch_size=1, max_delay_ms=0,
                                 max_queue=2)
        batcher.submit(torch.zeros(1))
        batcher.submit(torch.zeros(1))
        try:
            batcher.submit(torch.zeros(1))
        except QueueFullError as error:
            return str(error)
        return None

    assert run(scenario) == "2 samples already waiting"


def test_busy_server_answers_health_503_and_504(predictor: Predictor) -> None:
    """A 0.4 s forward pass: /healthz answers meanwhile; a full queue is 503; a slow answer 504."""
    slow_predictor = slow(predictor, 0.4)

    async def scenario():
        async with serving(slow_predictor, max_batch_size=1, max_delay_ms=0, max_queue=1, timeout_s=0.3) as client:
            busy = asyncio.create_task(client.post("/predict", **upload(png_bytes(1))))
            await asyncio.sleep(0.1)  # the first request is now in the forward pass
            started = time.perf_counter()
            health = await client.get("/healthz")
            health_s = time.perf_counter() - started
            waiting = asyncio.create_task(client.post("/predict", **upload(png_bytes(2))))
            await asyncio.sleep(0.05)  # the second waits in the queue (max_queue=1)
            refused = await client.post("/predict", **upload(png_bytes(3)))
            return health, health_s, refused, await busy, await waiting

    health, health_s, refused, first, second = run(scenario)
    assert health.status_code == 200 and health_s < 0.2, "the event loop is free while the model runs"
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "server busy"
    assert first.status_code == 504 and first.json()["error"] == "timed out"
    assert second.status_code == 504


def test_a_request_makes_no_thread_pool_hops_beyond_decode_and_forward(predictor: Predictor, monkeypatch) -> None:
    """FastAPI runs plain `def` dependencies and endpoints in its thread pool: every one is a thread
    hand-off on the request path. The service's own are `async def`; only decoding and the forward
    pass leave the event loop (in their own pools)."""
    import fastapi.dependencies.utils
    import fastapi.routing

    hops: list[str] = []

    async def counting(function, *args, **kwargs):
        hops.append(getattr(function, "__name__", repr(function)))
        return function(*args, **kwargs)

    monkeypatch.setattr(fastapi.dependencies.utils, "run_in_threadpool", counting)
    monkeypatch.setattr(fastapi.routing, "run_in_threadpool", counting)

    async def scenario():
        async with serving(predictor) as client:
            return [await client.post("/predict", **upload(png_bytes(1))), await client.get("/info")]

    assert [r.status_code for r in run(scenario)] == [200, 200]
    assert hops == [], f"ran in FastAPI's thread pool: {hops}"


def test_a_forward_pass_with_too_few_rows_fails_its_requests_and_the_batcher_goes_on() -> None:
    """An answer of the wrong size raised IndexError inside the batcher's task: it died, and every
    later request waited for its timeout while /readyz still said ready."""
    calls: list[int] = []

    def forward(samples: torch.Tensor) -> torch.Tensor:
        calls.append(len(samples))
        rows = samples.float().flatten(1)
        return rows[:1] if len(calls) == 1 else rows

    async def scenario():
        pool = ThreadPoolExecutor(1)
        batcher = DynamicBatcher(forward, executor=pool, max_batch_size=2, max_delay_ms=50, max_queue=10)
        batcher.start()
        try:
            first = await asyncio.wait_for(asyncio.gather(
                *(batcher.submit(torch.full((1,), i, dtype=torch.uint8)) for i in range(2)), return_exceptions=True), 5)
            later = await asyncio.wait_for(batcher.submit(torch.full((1,), 7, dtype=torch.uint8)), 5)
        finally:
            await batcher.stop()
            pool.shutdown()
        return first, later

    first, later = run(scenario)
    assert all(isinstance(e, RuntimeError) and "1 rows for a batch of 2" in str(e) for e in first), first
    assert int(later[0]) == 7
