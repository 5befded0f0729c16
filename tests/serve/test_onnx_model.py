"""`cnnkit serve model.onnx`: an exported model serves the same answers as its torch predictor."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_helpers import CLASSES, png_bytes, run, serving, tiny_model, upload

from cnnkit.deploy import export_onnx
from cnnkit.errors import CnnkitError
from cnnkit.inference import Predictor
from cnnkit.serve.commands import load_predictor


def test_an_exported_onnx_model_serves_the_torch_predictors_answers(predictor: Predictor, tmp_path: Path) -> None:
    path = export_onnx(tiny_model(), tmp_path / "tiny.onnx", class_names=CLASSES, model_name="compact_cnn")
    served = load_predictor(str(path), device="cpu", batch_size=4)
    assert served.backend.name == "onnx" and served.class_names == CLASSES
    assert served.default_cfg == predictor.default_cfg, "the preprocessing travels in the file"
    image = png_bytes(3)
    expected = predictor.predict(image, top_k=3)[0]

    async def scenario():
        async with serving(served) as client:
            return await client.post("/predict?top_k=3", **upload(image)), await client.get("/info")

    response, info = run(scenario)
    assert response.status_code == 200, response.text
    assert info.json()["backend"] == "onnx"
    body = response.json()["predictions"]
    assert [p["label"] for p in body] == [c.label for c in expected.top]
    for got, want in zip(body, expected.top):
        assert got["probability"] == pytest.approx(want.probability, abs=1e-5)


def test_serving_an_onnx_model_honours_the_device(tmp_path: Path) -> None:
    import onnxruntime as ort

    path = export_onnx(tiny_model(), tmp_path / "tiny.onnx", class_names=CLASSES, model_name="compact_cnn")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the refusal below cannot happen here")
    with pytest.raises(CnnkitError, match="CUDAExecutionProvider"):
        load_predictor(str(path), device="cuda", batch_size=4)


def test_an_onnx_model_is_served_on_the_threads_given(tmp_path: Path) -> None:
    """`--threads` reaches ONNX Runtime's intra-op pool (it used one thread per core whatever --workers was)."""
    from cnnkit.serve import ServeSettings, commands

    path = export_onnx(tiny_model(), tmp_path / "tiny.onnx", class_names=CLASSES, model_name="compact_cnn")
    app = commands.build_app(str(path), "cpu", ServeSettings(threads=1))
    options = app.state.serve.predictor.backend.session.get_session_options()
    assert options.intra_op_num_threads == 1 and app.state.serve.threads == 1
