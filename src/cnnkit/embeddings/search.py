"""Nearest neighbours by cosine similarity: exact (blockwise torch) or approximate (faiss HNSW, IVF).

Vectors are L2-normalised on the way in, so an inner-product index returns cosines in [-1, 1]
(faiss on raw vectors returns inner products, the usual "similarity above 1" surprise).
Approximate indexes are tuned at build time: efSearch (HNSW, Malkov & Yashunin 2018) or nprobe
(IVF, Jegou et al. 2011) is raised until recall@10 against exact search on a sample of the
vectors reaches `target_recall`, and that recall is reported (not faiss's defaults, left untested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from cnnkit.errors import CnnkitError

IndexKind = Literal["exact", "hnsw", "ivf"]
KINDS: tuple[str, ...] = ("exact", "hnsw", "ivf")
# HNSW graph: M links per node (2M on the bottom layer), each node's links chosen among
# efConstruction candidates. efConstruction must be well above 2M or the bottom layer's lists fill
# with poor links: faiss's default 40 with M 32 plateaued at recall@10 0.957 even at efSearch 256 on
# 1M clustered vectors, while M 16 / efConstruction 80 reached 0.95 at efSearch 96, 4x fewer
# distance computations per query and a faster build (benchmarks/RESULTS.md, 2026-12-02).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 80
# efSearch tried in turn, steps of 1.25x-1.5x: the first to reach the recall target is kept, so a
# coarser (doubling) ladder would overshoot it by up to 2x in search time.
EF_SEARCH_STEPS: tuple[int, ...] = (16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 512, 768, 1024)


def normalise(vectors: Any, *, name: str = "vectors") -> np.ndarray:
    """Float32 rows of unit L2 norm (N, D), C-contiguous (what faiss wants). A NaN or infinite
    entry is an error naming `name`: its row would otherwise top every search (NaN sorts first)."""
    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().cpu().float()  # bfloat16 has no NumPy dtype
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] == 0:
        raise CnnkitError(f"{name} must be (N, D), got shape {array.shape}")
    bad = np.nonzero(~np.isfinite(array).all(axis=1))[0]
    if len(bad):
        raise CnnkitError(f"{name} contain NaN or infinity ({len(bad)} rows, the first is row {bad[0]})")
    return np.ascontiguousarray(F.normalize(torch.from_numpy(array), dim=1).numpy())


def exact_search(queries: np.ndarray, vectors: np.ndarray, k: int, *, query_chunk: int = 1024,
                 reference_chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (cosines (Q, k), indices (Q, k)) of unit `queries` among unit `vectors`, by blocks of
    query_chunk x reference_chunk similarities (256 MiB at the defaults), never Q x N at once.
    Equal cosines rank by lower index (a stable argsort's order), whatever the blocks."""
    k = min(k, len(vectors))
    base, out_s, out_i = torch.from_numpy(vectors), [], []
    for q0 in range(0, len(queries), query_chunk):
        q = torch.from_numpy(queries[q0:q0 + query_chunk])
        best_s = torch.full((len(q), 0), -torch.inf)
        best_i = torch.zeros((len(q), 0), dtype=torch.long)
        for r0 in range(0, len(base), reference_chunk):
            s, i = _block_top(q @ base[r0:r0 + reference_chunk].T, k)
            best_s, best_i = _in_order(torch.cat([best_s, s], 1), torch.cat([best_i, i + r0], 1))
            best_s, best_i = best_s[:, :k], best_i[:, :k]
        out_s.append(best_s)
        out_i.append(best_i)
    return torch.cat(out_s).numpy(), torch.cat(out_i).numpy()


def _block_top(block: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (scores, columns) of each row of `block` (n, c), in `_in_order`; where scores tied
    with the k-th straddle the cut (topk would pick any of them), the lowest columns are kept."""
    width = min(k, block.shape[1])
    scores, columns = block.topk(min(k + 1, block.shape[1]), dim=1)  # one more: is the cut inside a tie?
    crowded = (scores[:, width] == scores[:, width - 1]).nonzero().flatten().tolist() if scores.shape[1] > width else []
    scores, columns = scores[:, :width].clone(), columns[:, :width].clone()
    for row in crowded:
        candidates = (block[row] >= scores[row, -1]).nonzero().flatten()  # ascending columns
        columns[row] = candidates[block[row, candidates].argsort(descending=True, stable=True)[:width]]
        scores[row] = block[row, columns[row]]
    return _in_order(scores, columns)


def _in_order(scores: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row sorted by score, highest first, equal scores by lower index."""
    by_index = indices.argsort(dim=1)
    scores, indices = scores.gather(1, by_index), indices.gather(1, by_index)
    by_score = scores.argsort(dim=1, descending=True, stable=True)
    return scores.gather(1, by_score), indices.gather(1, by_score)


def import_faiss():
    """faiss, imported on first use: exact search works without it."""
    try:
        import faiss
    except ImportError:
        raise CnnkitError("approximate indexes (hnsw, ivf) need faiss: pip install faiss-cpu "
                          "(or use --kind exact, which needs nothing more)") from None
    return faiss


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of `truth` (Q, k) that appears in the same row of `found`."""
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / truth.size


@dataclass(frozen=True)
class BuildReport:
    """How an index was tuned: its kind, the search parameter chosen, the recall@10 it measured
    against exact search on `sample` stored vectors (each vector's own entry left out)."""

    kind: str
    parameter: str
    value: int
    recall_at_10: float
    sample: int

    def describe(self) -> str:
        if self.kind == "exact":
            return "exact index: recall@10 1.0 by construction"
        return (f"{self.kind} index: {self.parameter}={self.value}, recall@10 {self.recall_at_10:.4f} "
                f"against exact search on {self.sample} sampled vectors")


class VectorIndex:
    """Cosine k-NN over unit vectors (N, D): `add`, `search(queries, k) -> (cosines, indices)`."""

    def __init__(self, kind: IndexKind, dim: int, *, index: Any = None) -> None:
        if kind not in KINDS:
            raise CnnkitError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.kind, self.dim, self.index = kind, dim, index
        self.vectors = np.zeros((0, dim), np.float32)  # exact: the data; faiss: kept for re-tuning
        self.report = BuildReport(kind, "", 0, 1.0, 0)

    # ----------------------------------------------------------------- building
    @classmethod
    def build(cls, vectors: Any, kind: IndexKind = "exact", *, target_recall: float = 0.95, sample: int = 500,
              generator: torch.Generator | None = None, hnsw_m: int = HNSW_M,
              hnsw_ef_construction: int = HNSW_EF_CONSTRUCTION, ivf_lists: int | None = None) -> VectorIndex:
        """Index `vectors` (normalised here); hnsw/ivf are tuned to `target_recall` (recall@10)."""
        vectors = normalise(vectors)
        if not len(vectors):
            raise CnnkitError(f"cannot build a{'n' if kind[0] in 'ei' else ''} {kind} index of no vectors")
        index = cls(kind, vectors.shape[1])
        if kind == "hnsw":
            faiss = import_faiss()
            if hnsw_m < 2 or hnsw_ef_construction < 1:
                raise CnnkitError(f"hnsw needs M >= 2 and efConstruction >= 1, got {hnsw_m} and {hnsw_ef_construction}")
            index.index = faiss.IndexHNSWFlat(index.dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.index.hnsw.efConstruction = hnsw_ef_construction
        elif kind == "ivf":
            faiss = import_faiss()
            lists = ivf_lists or max(1, min(int(math.sqrt(len(vectors))), len(vectors) // 39))
            index.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(index.dim), index.dim, lists,
                                             faiss.METRIC_INNER_PRODUCT)
            train_rows = _sample_rows(len(vectors), min(len(vectors), 64 * lists), generator)
            index.index.train(vectors[train_rows])
        index.add(vectors)
        if kind != "exact":
            index.tune(target_recall, sample=sample, generator=generator)
        return index

    def add(self, vectors: Any) -> None:
        """Append `vectors` (N, D), normalised here; an approximate index is not re-tuned (see `tune`)."""
        vectors = normalise(vectors)
        if vectors.shape[1] != self.dim:
            raise CnnkitError(f"vectors are {vectors.shape[1]}-d, the index holds {self.dim}-d ones")
        if self.index is not None:
            self.index.add(vectors)
        self.vectors = np.concatenate([self.vectors, vectors])

    def __len__(self) -> int:
        return len(self.vectors)

    def tune(self, target_recall: float, *, sample: int = 500, generator: torch.Generator | None = None) -> BuildReport:
        """Raise efSearch / nprobe from small until recall@10 on `sample` stored vectors reaches
        `target_recall` (or the parameter's ceiling); log and keep the report."""
        name, candidates = ("efSearch", EF_SEARCH_STEPS) if self.kind == "hnsw" else \
            ("nprobe", [n for n in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if n <= self.index.nlist] or [1])
        if len(self) < 2:  # a single vector has no neighbour to measure: any search finds it
            self._set_parameter(candidates[0])
            self.report = BuildReport(self.kind, name, candidates[0], 1.0, 0)
            return self.report
        rows = _sample_rows(len(self), min(sample, len(self)), generator)
        queries = self.vectors[rows]
        k = min(11, len(self))
        truth = _without_self(exact_search(queries, self.vectors, k)[1], rows)
        recall, value = 0.0, candidates[0]
        for value in candidates:
            self._set_parameter(value)
            recall = recall_at(_without_self(self.search(queries, k)[1], rows), truth)
            if recall >= target_recall:
                break
        self.report = BuildReport(self.kind, name, value, recall, len(rows))
        return self.report

    def _set_parameter(self, value: int) -> None:
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = value
        else:
            self.index.nprobe = value

    # ----------------------------------------------------------------- searching
    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(cosines (Q, k), indices (Q, k)), most similar first; index -1 where fewer than k exist."""
        if k < 1:
            raise CnnkitError(f"k must be >= 1, got {k}")
        queries = normalise(queries, name="queries")
        if queries.shape[1] != self.dim:
            raise CnnkitError(f"queries are {queries.shape[1]}-d, the index holds {self.dim}-d vectors")
        if self.index is None:
            scores, indices = exact_search(queries, self.vectors, k)
            missing = k - indices.shape[1]  # k > N: padded as faiss pads, index -1 and score -FLT_MAX
            if missing:
                scores = np.pad(scores, ((0, 0), (0, missing)), constant_values=np.finfo(np.float32).min)
                indices = np.pad(indices, ((0, 0), (0, missing)), constant_values=-1)
            return scores, indices
        return self.index.search(queries, k)


def _sample_rows(size: int, count: int, generator: torch.Generator | None) -> np.ndarray:
    generator = generator or torch.Generator().manual_seed(0)
    return torch.randperm(size, generator=generator)[:count].sort().values.numpy()


def _without_self(indices: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each row's neighbours minus the query's own index, cut to one fewer column (recall@10 of
    k = 11 searches)."""
    width = indices.shape[1] - 1
    out = np.empty((len(rows), width), dtype=indices.dtype)
    for r, (found, own) in enumerate(zip(indices, rows)):
        kept = found[found != own]
        out[r] = kept[:width] if len(kept) >= width else np.r_[kept, np.full(width - len(kept), -2)]
    return out
