"""POST /explain: the Grad-CAM overlay of the predicted (or named) class; a clear 501 on the ONNX backend."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit import explain
from cnnkit.deploy import export_onnx
from cnnkit.inference import Predictor
from serve_helpers import CLASSES, png_bytes, run, serving, tiny_model, upload


def decode_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def post_explain(predictor: Predictor, image: bytes, query: str = ""):
    async def scenario():
        async with serving(predictor) as client:
            return await client.post("/explain" + query, **upload(image, "leaf.png"))

    return run(scenario)


def test_explain_answers_501_on_the_onnx_backend(tmp_path: Path) -> None:
    """An exported model has no torch graph to differentiate: a clear 501, and /info says so."""
    path = export_onnx(tiny_model(), tmp_path / "tiny.onnx", class_names=CLASSES, model_name="compact_cnn")
    served = Predictor.from_onnx(path, batch_size=4)

    async def scenario():
        async with serving(served) as client:
            return (await client.post("/explain", **upload(png_bytes(1), "leaf.png")),
                    await client.get("/info"))

    response, info = run(scenario)
    assert response.status_code == 501
    body = response.json()
    assert body["error"] == "explain not available" and "onnx backend" in body["detail"]
    assert info.json()["explain_available"] is False


def test_explain_overlay_is_the_explain_packages_gradcam(predictor: Predictor) -> None:
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
    assert body["explained"]["probability"] == pytest.approx(float(predictor.probabilities([image])[0, 1]), abs=1e-6)
    by_index = post_explain(predictor, image, "?class=2").json()
    assert by_index["explained"]["label"] == CLASSES[2]
    assert post_explain(predictor, image, "?class=zebra").status_code == 422


def test_class_that_only_looks_like_a_number_is_a_422(predictor: Predictor) -> None:
    """`str.isdigit` accepts "²" and "٢", which `int` refuses or reads as 2: only ASCII digits index."""
    for name in ("²", "٢"):
        response = post_explain(predictor, png_bytes(2), f"?class={name}")
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "unknown class" and name in response.json()["detail"]


def test_explain_takes_several_files_as_the_readme_says(predictor: Predictor) -> None:
    """Field `files` answers a list in order, each the one-file answer of that image (it was a 422)."""
    images = [png_bytes(30), png_bytes(31)]

    async def scenario():
        async with serving(predictor) as client:
            many = await client.post("/explain?class=fox", files=[("files", (f"f{i}.png", data, "image/png"))
                                                                   for i, data in enumerate(images)])
            ones = [await client.post("/explain?class=fox", **upload(data, f"f{i}.png")) for i, data in enumerate(images)]
            return many, ones

    many, ones = run(scenario)
    assert many.status_code == 200, many.text
    answers = many.json()
    assert [a["filename"] for a in answers] == ["f0.png", "f1.png"]
    for answer, one in zip(answers, ones):
        one = one.json()
        assert answer["explained"]["label"] == one["explained"]["label"] == "fox"
        assert answer["explained"]["probability"] == pytest.approx(one["explained"]["probability"], abs=1e-5)
        assert [p["label"] for p in answer["predictions"]] == [p["label"] for p in one["predictions"]]
        np.testing.assert_array_equal(decode_data_url(answer["overlay"]), decode_data_url(one["overlay"]))
    assert answers[0]["overlay"] != answers[1]["overlay"], "each image has its own map"
