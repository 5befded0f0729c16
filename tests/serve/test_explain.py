"""POST /explain: the Grad-CAM overlay of the predicted (or named) class, or a clear 501 without explain."""

from __future__ import annotations

import base64
import io
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit.inference import Predictor
from cnnkit.serve.overlay import explain_module
from serve_helpers import CLASSES, png_bytes, run, serving, upload


def decode_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def post_explain(predictor: Predictor, image: bytes, query: str = ""):
    async def scenario():
        async with serving(predictor) as client:
            return await client.post("/explain" + query, **upload(image, "leaf.png"))

    return run(scenario)


@pytest.mark.skipif(explain_module() is not None, reason="cnnkit.explain provides cam: /explain is available")
def test_explain_answers_501_without_the_explain_package(predictor: Predictor) -> None:
    response = post_explain(predictor, png_bytes(1))
    assert response.status_code == 501
    assert response.json()["error"] == "explain not available" and "cnnkit.explain" in response.json()["detail"]


@pytest.mark.skipif(explain_module() is None, reason="cnnkit.explain has no cam (the explain branch is not merged)")
def test_explain_overlay_is_the_explain_packages_gradcam(predictor: Predictor) -> None:
    explain = explain_module()
    image = png_bytes(2)
    response = post_explain(predictor, image, "?class=dog")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["explained"]["label"] == "dog" and body["method"] == "gradcam"
    sample = predictor.sample(image)
    maps = explain.cam(predictor.model, predictor.normalise(sample[None]), method="gradcam", classes=[1])
    expected = explain.overlay(sample.permute(1, 2, 0).numpy(), maps[0].detach().numpy(), alpha=0.5)
    np.testing.assert_array_equal(decode_data_url(body["overlay"]), expected)
    np.testing.assert_array_equal(decode_data_url(body["view"]), sample.permute(1, 2, 0).numpy())
    top = post_explain(predictor, image).json()
    assert top["explained"]["label"] == top["predictions"][0]["label"]


def test_explain_passes_the_model_ready_batch_and_class_to_cam(predictor: Predictor,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's side of /explain, with a recording stand-in for `cnnkit.explain`."""
    calls = {}

    def cam(model, batch, *, method, classes):
        calls.update(model=model, batch=batch.clone(), method=method, classes=classes)
        return torch.linspace(0, 1, 24 * 24).reshape(1, 24, 24)

    def overlay(image, heat, *, alpha):
        calls.update(image=image.copy(), heat=np.asarray(heat), alpha=alpha)
        return (image * (1 - alpha) + 255 * alpha * np.asarray(heat)[..., None]).astype(np.uint8)

    stand_in = types.ModuleType("cnnkit.explain")
    stand_in.cam, stand_in.overlay = cam, overlay
    monkeypatch.setitem(sys.modules, "cnnkit.explain", stand_in)
    monkeypatch.setattr(cnnkit, "explain", stand_in, raising=False)
    image = png_bytes(3)
    response = post_explain(predictor, image, "?class=2")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["explained"] == {"label": CLASSES[2], "index": 2,
                                 "probability": pytest.approx(float(predictor.probabilities([image])[0, 2]), abs=1e-6)}
    assert calls["model"] is predictor.model and calls["method"] == "gradcam" and calls["classes"] == [2]
    torch.testing.assert_close(calls["batch"], predictor.preprocess([image]).batch, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(calls["image"], predictor.sample(image).permute(1, 2, 0).numpy())
    assert calls["alpha"] == 0.5
    np.testing.assert_array_equal(decode_data_url(body["overlay"]), overlay(calls["image"], calls["heat"], alpha=0.5))
    np.testing.assert_array_equal(decode_data_url(body["view"]), calls["image"])
    assert post_explain(predictor, image, "?class=zebra").status_code == 422
