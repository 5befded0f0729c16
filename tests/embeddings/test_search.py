"""Exact search equals a brute-force argsort; faiss indexes reach their recall target; a gallery
survives a save/load and grows by a second folder; without faiss the error names faiss-cpu."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest
import torch

from cnnkit.embeddings.gallery import Gallery
from cnnkit.embeddings.search import (EF_SEARCH_STEPS, HNSW_EF_CONSTRUCTION, HNSW_M, VectorIndex, _sample_rows,
                                     _without_self, exact_search, normalise, recall_at)
from cnnkit.errors import CnnkitError


def clustered(n: int, dim: int = 16, clusters: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=generator)
    labels = torch.randint(clusters, (n,), generator=generator)
    return (centres[labels] + 0.5 * torch.randn(n, dim, generator=generator)).numpy(), labels.numpy()


def test_exact_search_equals_brute_force_in_blocks() -> None:
    vectors, _ = clustered(500)
    queries, _ = clustered(37, seed=1)
    scores, indices = exact_search(normalise(queries), normalise(vectors), 7, query_chunk=8, reference_chunk=33)
    full = normalise(queries) @ normalise(vectors).T
    np.testing.assert_array_equal(indices, np.argsort(-full, axis=1)[:, :7])
    np.testing.assert_allclose(scores, np.take_along_axis(full, indices, 1), atol=1e-6)
    assert scores.max() <= 1.0 + 1e-6  # cosines, whatever the raw norms


@pytest.mark.parametrize(("query_chunk", "reference_chunk"), [(1024, 65536), (3, 7), (1, 1), (2, 50)])
def test_exact_search_ranks_equal_cosines_by_lower_index(query_chunk: int, reference_chunk: int) -> None:
    """Duplicates in the gallery: 15 copies of each of 4 directions (exact cosines 1 and 0), 5 asked
    for: the 5 lowest indices among the copies, in order, as a stable argsort, whatever the blocks."""
    directions = np.eye(4, 8, dtype=np.float32)
    order = np.random.default_rng(0).permutation(60)
    gallery = directions[np.arange(60) % 4][order]
    scores, indices = exact_search(directions, gallery, 5, query_chunk=query_chunk, reference_chunk=reference_chunk)
    expected = np.argsort(-(directions @ gallery.T), axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(indices, expected)
    assert (scores == 1.0).all()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_index_is_tuned_to_the_recall_target(kind: str) -> None:
    pytest.importorskip("faiss")
    data, _ = clustered(4100)
    vectors, queries = data[:4000], data[4000:]  # held-out queries from the same clusters
    index = VectorIndex.build(vectors * 7.0, kind, target_recall=0.9, sample=200,
                              generator=torch.Generator().manual_seed(0))
    assert index.report.recall_at_10 >= 0.9 and index.report.value >= 1
    scores, found = index.search(queries, 10)
    _, truth = exact_search(normalise(queries), normalise(vectors), 10)
    hits = sum(len(set(f) & set(t)) for f, t in zip(found.tolist(), truth.tolist())) / truth.size
    assert hits >= 0.85 and scores.max() <= 1.0 + 1e-5  # inner products of unit vectors


def test_hnsw_keeps_the_first_efsearch_step_that_reaches_the_target() -> None:
    pytest.importorskip("faiss")
    vectors = torch.randn(3000, 96, generator=torch.Generator().manual_seed(0)).numpy()  # no clusters: hard
    index = VectorIndex.build(vectors, "hnsw", target_recall=0.97, sample=200, generator=torch.Generator().manual_seed(0))
    graph = index.index.hnsw
    assert graph.efConstruction == HNSW_EF_CONSTRUCTION and graph.nb_neighbors(1) == HNSW_M
    chosen = EF_SEARCH_STEPS.index(index.report.value)
    assert chosen > 0, "the target should need more than the smallest efSearch on this data"
    rows = _sample_rows(len(index), 200, torch.Generator().manual_seed(0))
    truth = _without_self(exact_search(index.vectors[rows], index.vectors, 11)[1], rows)
    graph.efSearch = EF_SEARCH_STEPS[chosen - 1]  # the step below misses the target on the same sample
    below = recall_at(_without_self(index.search(index.vectors[rows], 11)[1], rows), truth)
    assert below < 0.97 <= index.report.recall_at_10
    with pytest.raises(CnnkitError, match="efConstruction"):
        VectorIndex.build(vectors, "hnsw", hnsw_ef_construction=0)


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_gallery_save_load_and_add(tmp_path, kind: str) -> None:
    if kind != "exact":
        pytest.importorskip("faiss")
    vectors, labels = clustered(300)
    gallery = Gallery.build(vectors[:200], [f"a/{i}.jpg" for i in range(200)], [str(x) for x in labels[:200]],
                            kind=kind, run="runs/x")
    gallery.save(tmp_path / "g")
    loaded = Gallery.load(tmp_path / "g")
    loaded.add(vectors[200:], [f"b/{i}.jpg" for i in range(100)], [str(x) for x in labels[200:]])
    loaded.save(tmp_path / "g")
    again = Gallery.load(tmp_path / "g")
    assert len(again) == 300 and again.run == "runs/x" and again.index.kind == kind
    assert again.paths == [f"a/{i}.jpg" for i in range(200)] + [f"b/{i}.jpg" for i in range(100)]
    assert again.labels == [str(x) for x in labels]
    if kind != "exact":  # the tuned efSearch / nprobe comes back with the index
        graph_or_lists = again.index.index.hnsw.efSearch if kind == "hnsw" else again.index.index.nprobe
        assert graph_or_lists == again.index.report.value == loaded.index.report.value
    match = again.search(vectors[250:251], k=3)[0][0]  # an item of the second folder finds itself
    with pytest.raises(CnnkitError, match="queries are 8-d, the index holds 16-d"):
        again.search(np.ones((1, 8)))
    with pytest.raises(CnnkitError, match="vectors are 8-d, the index holds 16-d"):
        again.add(np.ones((1, 8)), ["c.jpg"], ["0"])
    assert match.path == "b/50.jpg" and match.score == pytest.approx(1.0, abs=1e-5)


def test_a_failed_save_leaves_the_previous_gallery_whole(tmp_path, monkeypatch) -> None:
    faiss = pytest.importorskip("faiss")
    vectors, labels = clustered(150)
    Gallery.build(vectors[:100], [f"{i}.jpg" for i in range(100)], [str(x) for x in labels[:100]],
                  kind="hnsw").save(tmp_path)
    grown = Gallery.load(tmp_path)
    grown.add(vectors[100:], [f"{i}.jpg" for i in range(100, 150)], [str(x) for x in labels[100:]])

    def disk_full(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", disk_full)
    with pytest.raises(RuntimeError, match="disk full"):
        grown.save(tmp_path)
    kept = Gallery.load(tmp_path)  # the 100-item gallery, not 150 vectors beside 100 paths
    assert len(kept) == len(kept.index.vectors) == kept.index.index.ntotal == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery.json", "index.faiss", "vectors.npy"]


def test_missing_faiss_is_named(monkeypatch) -> None:
    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("no faiss")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    vectors, _ = clustered(50)
    assert len(VectorIndex.build(vectors, "exact")) == 50  # exact search needs no faiss
    with pytest.raises(CnnkitError, match="faiss-cpu"):
        VectorIndex.build(vectors, "hnsw")


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_k_beyond_the_index_pads_like_faiss(kind: str) -> None:
    """(Q, k) whatever the kind: the missing neighbours are index -1, score -FLT_MAX (faiss's padding)."""
    if kind != "exact":
        pytest.importorskip("faiss")
    vectors, _ = clustered(6)
    scores, indices = VectorIndex.build(vectors, kind).search(vectors[:2], 9)
    assert indices.shape == scores.shape == (2, 9)
    assert (indices[:, 6:] == -1).all() and (scores[:, 6:] == np.finfo(np.float32).min).all()
    np.testing.assert_array_equal(np.sort(indices[:, :6], axis=1), np.tile(np.arange(6), (2, 1)))


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_a_one_item_approximate_index_builds_and_finds_it(kind: str) -> None:
    pytest.importorskip("faiss")
    vector, _ = clustered(1)
    index = VectorIndex.build(vector, kind)  # the tuning had nothing to measure: ZeroDivisionError
    assert index.report.recall_at_10 == 1.0 and index.report.sample == 0
    assert index.search(vector, 1)[1].tolist() == [[0]]


def test_nan_vectors_are_refused_by_name_and_bfloat16_is_read() -> None:
    """A NaN row would be every query's top match (NaN sorts first): refused, naming the argument."""
    vectors, _ = clustered(50)
    vectors[3, 2] = np.nan
    with pytest.raises(CnnkitError, match=r"vectors contain NaN .*row 3"):
        VectorIndex.build(vectors, "exact")
    index = VectorIndex.build(vectors[4:], "exact")
    with pytest.raises(CnnkitError, match="queries contain NaN"):
        index.search(vectors[:4], 3)
    half = torch.tensor(vectors[4:], dtype=torch.bfloat16)
    values = half.float().numpy()  # the bfloat16 values, exactly, as float32
    np.testing.assert_allclose(normalise(half), values / np.linalg.norm(values, axis=1, keepdims=True), rtol=1e-6)


def test_bad_gallery_folder_is_named(tmp_path) -> None:
    with pytest.raises(CnnkitError, match="not a gallery"):
        Gallery.load(tmp_path)


def test_empty_gallery_is_refused_by_name() -> None:
    for kind in ("exact", "hnsw", "ivf"):
        if kind != "exact":
            pytest.importorskip("faiss")
        with pytest.raises(CnnkitError, match=f"{kind} index of no vectors"):
            Gallery.build(np.zeros((0, 8)), [], [], kind=kind)
    empty = Gallery(VectorIndex("exact", 8), [], [])
    with pytest.raises(CnnkitError, match="gallery is empty"):
        empty.search(np.ones((1, 8)))


@pytest.mark.parametrize("damage", ["index", "vectors", "meta", "kind", "count"])
def test_corrupt_gallery_files_are_named(tmp_path, damage: str) -> None:
    pytest.importorskip("faiss")
    vectors, labels = clustered(120)
    Gallery.build(vectors, [f"{i}.jpg" for i in range(120)], [str(x) for x in labels], kind="ivf").save(tmp_path)
    if damage == "index":
        (tmp_path / "index.faiss").write_bytes((tmp_path / "index.faiss").read_bytes()[:100])
        expected = "index.faiss: unreadable ivf index"
    elif damage == "vectors":
        (tmp_path / "vectors.npy").write_bytes(b"garbage")
        expected = "vectors.npy: unreadable"
    elif damage == "meta":
        meta = json.loads((tmp_path / "gallery.json").read_text())
        del meta["paths"]
        (tmp_path / "gallery.json").write_text(json.dumps(meta))
        expected = "gallery.json: unreadable gallery metadata"
    elif damage == "kind":
        meta = json.loads((tmp_path / "gallery.json").read_text())
        (tmp_path / "gallery.json").write_text(json.dumps({**meta, "kind": "lsh"}))
        expected = "gallery.json: unknown index kind 'lsh'"
    else:  # a save cut short: more vectors than paths
        np.save(tmp_path / "vectors.npy", np.concatenate([vectors, vectors[:5]]).astype(np.float32))
        expected = "vectors.npy holds vectors of shape"
    with pytest.raises(CnnkitError, match=expected):
        Gallery.load(tmp_path)


def test_tuning_returns_its_report_without_logging_it(caplog: pytest.LogCaptureFixture) -> None:
    """`cnnkit index` prints the build report in its summary line; the index logged it too, so the CLI
    showed the recall line twice."""
    pytest.importorskip("faiss")
    data, _ = clustered(300)
    with caplog.at_level("DEBUG", logger="cnnkit"):
        index = VectorIndex.build(data, "hnsw", target_recall=0.9, sample=100,
                                  generator=torch.Generator().manual_seed(0))
    assert "recall@10" in index.report.describe() and not caplog.records
