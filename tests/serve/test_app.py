"""The endpoints: predictions equal the Predictor's, readiness, info, metrics, docs, the page."""

from __future__ import annotations

import re

import pytest
import torch

from cnnkit.inference import Predictor
from cnnkit.serve import ServeSettings, create_app
from serve_helpers import CLASSES, metric, png_bytes, run, serving, upload


def test_predict_answers_the_predictors_top_k(predictor: Predictor) -> None:
    image = png_bytes(1)
    expected = predictor.predict(image, top_k=2)[0]

    async def scenario():
        async with serving(predictor) as client:
            return await client.post("/predict?top_k=2", **upload(image, "kitten.png"))

    response = run(scenario)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["filename"] == "kitten.png" and body["latency_ms"] > 0
    assert [p["label"] for p in body["predictions"]] == [c.label for c in expected.top]
    for got, want in zip(body["predictions"], expected.top):
        assert got["probability"] == pytest.approx(want.probability, abs=1e-6)


def test_readiness_info_health_and_docs(predictor: Predictor) -> None:
    app = create_app(predictor, ServeSettings(max_batch_size=4))

    async def scenario():
        import httpx

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve.test") as client:
            before = await client.get("/readyz")
            async with app.router.lifespan_context(app):
                return before, [await client.get(path) for path in ("/readyz", "/healthz", "/info", "/docs",
                                                                     "/openapi.json", "/redoc")]

    before, (ready, health, info, docs, openapi, redoc) = run(scenario)
    assert before.status_code == 503 and before.json()["error"] == "not ready"
    assert ready.json() == {"status": "ready"} and health.json() == {"status": "ok"}
    info = info.json()
    assert info["classes"] == list(CLASSES) and info["input_size"] == [3, 24, 24]
    assert info["backend"] == "torch" and info["batching"]["max_batch_size"] == 4
    assert info["limits"]["max_upload_bytes"] == 10 * 1024 * 1024 and info["auth"] is False
    assert docs.status_code == 200 and "<script" not in docs.text, "/docs is the offline reference, no Swagger UI"
    assert all(f"<code>{path}</code>" in docs.text for path in ("/predict", "/explain", "/info", "/metrics"))
    paths = openapi.json()["paths"]
    assert {"/predict", "/explain", "/info", "/healthz", "/readyz", "/metrics"} <= set(paths)
    assert "multipart/form-data" in paths["/predict"]["post"]["requestBody"]["content"]
    assert redoc.status_code == 404, "ReDoc loads from a CDN (blank offline): /docs replaces it"


def test_metrics_count_requests_batches_and_keep_apps_apart(predictor: Predictor) -> None:
    async def scenario():
        async with serving(predictor) as client, serving(predictor) as other:
            await client.post("/predict", **upload(png_bytes(2)))
            await client.post("/predict", **upload(b"hello", "notes.txt"))
            await client.get("/no-such-page")
            return (await client.get("/metrics")).text, (await other.get("/metrics")).text

    text, other = run(scenario)
    assert metric(text, "cnnkit_requests_total", endpoint="/predict", status="200") == 1
    assert metric(text, "cnnkit_requests_total", endpoint="/predict", status="415") == 1
    assert metric(text, "cnnkit_requests_total", endpoint="other", status="404") == 1
    assert metric(text, "cnnkit_batch_size_count") == 1 and metric(text, "cnnkit_queue_seconds_count") == 1
    assert metric(text, "cnnkit_request_latency_seconds_count", endpoint="/predict") == 2
    assert metric(other, "cnnkit_requests_total", endpoint="/predict", status="200") == 0


def test_page_is_self_contained(predictor: Predictor) -> None:
    async def scenario():
        async with serving(predictor) as client:
            return await client.get("/")

    page = run(scenario)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<script>" in html and "<style>" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "no external scripts, styles or fonts"
    assert "@import" not in html and "url(http" not in html
    assert 'name="viewport"' in html, "readable on a phone-sized window"


def test_errors_are_json_with_error_and_detail(predictor: Predictor) -> None:
    async def scenario():
        async with serving(predictor) as client:
            return [await client.get("/nope"), await client.get("/predict"),
                    await client.post("/predict?top_k=0", **upload(png_bytes(3)))]

    for response in run(scenario):
        body = response.json()
        assert set(body) == {"error", "detail"}, body
    statuses = [r.status_code for r in run(scenario)]
    assert statuses == [404, 405, 422]


def test_backend_failure_is_a_json_500_and_the_server_recovers(predictor: Predictor) -> None:
    calls = {"n": 0}

    class Flaky:
        name, device = "torch", torch.device("cpu")

        def logits(self, batch):
            calls["n"] += 1
            if calls["n"] == 2:  # the first call is the warm-up
                raise RuntimeError("out of memory (simulated)")
            return predictor.backend.logits(batch)

    flaky = Predictor(Flaky(), class_names=CLASSES, default_cfg=predictor.default_cfg)

    async def scenario():
        async with serving(flaky) as client:
            return [await client.post("/predict", **upload(png_bytes(4))) for _ in range(2)]

    failed, fine = run(scenario)
    assert failed.status_code == 500 and failed.json()["error"] == "inference failed"
    assert fine.status_code == 200


def test_an_unexpected_exception_is_a_json_500_too(predictor: Predictor) -> None:
    """A bug the handlers did not foresee still answers the one error shape, not Starlette's plain text."""
    import httpx

    app = create_app(predictor)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    async def scenario():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve.test") as client:
            return await client.get("/boom")

    response = run(scenario)
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "internal server error" and set(response.json()) == {"error", "detail"}
    assert "a bug" not in response.text, "the exception's text stays in the server's log"
