"""/embed and /search of an embedding run: vectors equal the Predictor's own, matches equal
`Gallery.search`'s, and the clear errors where the model or the gallery does not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from serve_helpers import CLASSES, metric, png_bytes, run, serving, tiny_model, upload

from cnnkit.cli import main
from cnnkit.embeddings.gallery import Gallery
from cnnkit.embeddings.model import EmbeddingModel
from cnnkit.embeddings.runs import embedding_predictor
from cnnkit.errors import CnnkitError
from cnnkit.inference import Predictor
from cnnkit.serve import create_app
from cnnkit.train.run_summary import RunSummary, write_summary

DIM = 8


@pytest.fixture(scope="module")
def embedding_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedding run as `cnnkit train --task embedding` leaves one: the tiny backbone, a DIM-d head."""
    folder = tmp_path_factory.mktemp("embedding_run")
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = EmbeddingModel(tiny_model(), DIM)
    save_file({f"embedder.{k}": v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "best.safetensors"))
    write_summary(folder, RunSummary(model_name="compact_cnn", class_names=CLASSES, default_cfg=model.default_cfg,
                                     model_options={}, task="embedding", embedding_dim=DIM))
    return folder


@pytest.fixture(scope="module")
def embedder(embedding_run: Path) -> Predictor:
    return embedding_predictor(embedding_run, batch_size=4)[0]


@pytest.fixture(scope="module")
def gallery_dir(embedder: Predictor, embedding_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gallery of 12 noise images as `cnnkit index` writes one (labels by seed parity)."""
    images = tmp_path_factory.mktemp("gallery_images")
    paths = []
    for seed in range(12):
        path = images / f"{'even' if seed % 2 == 0 else 'odd'}_{seed}.png"
        path.write_bytes(png_bytes(100 + seed))
        paths.append(str(path))
    vectors = embedder.features(paths)
    out = tmp_path_factory.mktemp("gallery")
    Gallery.build(vectors, paths, [Path(p).name.split("_")[0] for p in paths], run=str(embedding_run.resolve())
                  ).save(out)
    return out


def test_embed_answers_the_predictors_unit_vectors_one_or_many(embedder: Predictor) -> None:
    images = [png_bytes(seed) for seed in (1, 2, 3)]
    expected = embedder.features(images)

    async def scenario():
        async with serving(embedder, max_batch_size=4) as client:
            one = await client.post("/embed", **upload(images[0], "a.png"))
            many = await client.post("/embed", files=[("files", (f"{i}.png", data, "image/png"))
                                                      for i, data in enumerate(images)])
            refused = await client.post("/embed", **upload(b"plain text", "notes.txt", "text/plain"))
            return one, many, refused, (await client.get("/metrics")).text

    one, many, refused, text = run(scenario)
    assert refused.status_code == 415 and refused.json()["error"] == "unsupported file type"
    assert metric(text, "cnnkit_requests_total", endpoint="/embed", status="200") == 2
    assert metric(text, "cnnkit_requests_total", endpoint="/embed", status="415") == 1
    assert metric(text, "cnnkit_batch_size_sum") == 4  # the samples went through the batcher
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["model"] == "compact_cnn" and body["dim"] == DIM and body["filename"] == "a.png"
    assert body["latency_ms"] > 0
    got = torch.tensor(body["embedding"])
    assert torch.allclose(got, expected[0], atol=1e-5)
    assert got.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert many.status_code == 200, many.text
    assert [item["filename"] for item in many.json()] == ["0.png", "1.png", "2.png"]
    assert torch.allclose(torch.tensor([item["embedding"] for item in many.json()]), expected, atol=1e-5)


def test_search_answers_the_gallerys_own_matches(embedder: Predictor, gallery_dir: Path) -> None:
    gallery = Gallery.load(gallery_dir)
    queries = [png_bytes(105), png_bytes(7)]  # a gallery image itself, and a new one
    expected = gallery.search(embedder.features(queries), 3)

    async def scenario():
        async with serving(embedder, gallery=gallery, default_top_k=3) as client:
            return await client.post("/search", files=[("files", (f"q{i}.png", data, "image/png"))
                                                       for i, data in enumerate(queries)])

    response = run(scenario)
    assert response.status_code == 200, response.text
    answers = response.json()
    assert [a["filename"] for a in answers] == ["q0.png", "q1.png"]
    for answer, matches in zip(answers, expected):
        assert [m["rank"] for m in answer["matches"]] == [1, 2, 3]
        assert [(m["path"], m["label"]) for m in answer["matches"]] == [(m.path, m.label) for m in matches]
        assert [m["score"] for m in answer["matches"]] == pytest.approx([m.score for m in matches], abs=1e-5)
    assert answers[0]["matches"][0]["path"].endswith("odd_5.png")
    assert answers[0]["matches"][0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_wrong_endpoint_for_the_model_or_no_gallery_is_a_clear_error(embedder: Predictor,
                                                                       predictor: Predictor) -> None:
    image = upload(png_bytes(4))

    async def scenario():
        async with serving(embedder) as client:
            answers = {path: await client.post(path, **image) for path in ("/predict", "/explain", "/search")}
            answers["info"] = await client.get("/info")
            answers["good"] = await client.post("/embed", **image)  # still serving after the refusals
        async with serving(predictor) as client:
            answers["embed on a classifier"] = await client.post("/embed", **image)
            answers["search on a classifier"] = await client.post("/search", **image)
            answers["classifier info"] = await client.get("/info")
        return answers

    answers = run(scenario)
    for path in ("/predict", "/explain"):
        assert answers[path].status_code == 409, answers[path].text
        assert answers[path].json()["error"] == "not a classification model"
        assert "/embed or /search" in answers[path].json()["detail"]
    assert answers["/search"].status_code == 404
    assert answers["/search"].json()["error"] == "no gallery index" and "--index" in answers["/search"].json()["detail"]
    for name in ("embed on a classifier", "search on a classifier"):
        assert answers[name].status_code == 409
        assert answers[name].json()["error"] == "not an embedding model"
        assert "/predict or /explain" in answers[name].json()["detail"]
    info = answers["info"].json()
    assert info["task"] == "embedding" and info["embedding_dim"] == DIM and info["index"] is None
    assert info["explain_available"] is False
    classifier = answers["classifier info"].json()
    assert classifier["task"] == "classification" and classifier["embedding_dim"] is None
    assert answers["good"].status_code == 200


def test_cli_serves_an_embedding_run_with_its_gallery(embedding_run: Path, gallery_dir: Path, tmp_path: Path,
                                                      random_run: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app, **kwargs))
    assert main(["serve", str(embedding_run), "--index", str(gallery_dir)]) == 0
    app = served["app"]

    async def scenario():
        async with app.router.lifespan_context(app):
            import httpx

            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve.test") as client:
                return (await client.get("/info")).json(), await client.post("/search?top_k=2", **upload(png_bytes(3)))

    info, searched = run(scenario)
    assert info["index"] == {"kind": "exact", "size": 12, "dim": DIM, "recall_at_10": 1.0}
    assert searched.status_code == 200 and len(searched.json()["matches"]) == 2

    assert main(["serve", str(random_run), "--index", str(gallery_dir)]) == 2  # the gallery is another run's
    assert "holds embeddings of run" in capsys.readouterr().err
    assert main(["serve", str(embedding_run), "--index", str(tmp_path)]) == 2
    assert "gallery.json is missing" in capsys.readouterr().err
    with pytest.raises(CnnkitError, match="needs an embedding run"):
        create_app(Predictor.from_run(random_run), gallery=Gallery.load(gallery_dir))
    other = Gallery.build(torch.randn(3, DIM + 1), ["a", "b", "c"], ["", "", ""])
    with pytest.raises(CnnkitError, match=f"{DIM + 1}-d vectors, the model embeds {DIM}-d"):
        create_app(embedding_predictor(embedding_run)[0], gallery=other)
