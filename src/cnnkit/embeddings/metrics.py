"""Retrieval metrics of embeddings by cosine similarity, computed in blocks: never an N x N matrix.

Definitions follow pytorch-metric-learning's AccuracyCalculator (Musgrave et al. 2020, "A metric
learning reality check"): for a query with R relevant references (same label; itself excluded in
leave-one-out) and relevance rel_i of its i-th nearest reference,
    precision@1 = rel_1;  R-precision = (1/R) sum_{i<=R} rel_i;
    MAP@R = (1/R) sum_{i<=R} rel_i * P@i  (P@i = precision of the first i);
    MRR = 1 / rank of the first relevant reference;  recall@k = 1 if any rel_i for i <= k.
Each is averaged over the queries that have at least one relevant reference (pml leaves the
others, "lone" queries, out).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cnnkit.errors import CnnkitError

ArrayLike = np.ndarray | torch.Tensor | Sequence


def _as_vectors(x: ArrayLike, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    if tensor.ndim != 2 or tensor.shape[0] == 0:
        raise CnnkitError(f"{name} must be a non-empty (N, D) array of embeddings, got shape {tuple(tensor.shape)}")
    bad = (~tensor.isfinite().all(dim=1)).nonzero().flatten()
    if len(bad):
        raise CnnkitError(f"{name} embeddings contain NaN or infinity ({len(bad)} rows, the first is row {int(bad[0])})")
    return F.normalize(tensor, dim=1)


def _as_labels(labels: ArrayLike, count: int, name: str) -> np.ndarray:
    array = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if array.shape != (count,):
        raise CnnkitError(f"{name} must hold one label per embedding ({count}), got shape {array.shape}")
    return array


def retrieval_metrics(
    query: ArrayLike,
    query_labels: ArrayLike,
    reference: ArrayLike | None = None,
    reference_labels: ArrayLike | None = None,
    *,
    k: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
    max_block: int = 16_000_000,
) -> dict[str, float]:
    """precision_at_1, r_precision, map_at_r, mrr, recall_at_{k} for each k, and num_queries (the
    queries counted). `reference=None`: each query searches the other queries (leave-one-out).
    Memory: about `max_block` similarities at a time (query chunk x (max R + chunk_size))."""
    queries = _as_vectors(query, "query")
    q_labels = _as_labels(query_labels, len(queries), "query_labels")
    leave_one_out = reference is None
    if leave_one_out:
        refs, r_labels = queries, q_labels
    else:
        if reference_labels is None:
            raise CnnkitError("reference_labels is required with reference")
        refs = _as_vectors(reference, "reference")
        r_labels = _as_labels(reference_labels, len(refs), "reference_labels")
        if refs.shape[1] != queries.shape[1]:
            raise CnnkitError(f"query has {queries.shape[1]}-d embeddings, reference {refs.shape[1]}-d")
    if not k or any(int(v) < 1 for v in k):
        raise CnnkitError(f"k must be one or more positive integers, got {tuple(k)}")
    # Labels of any type -> integer codes shared by both sets.
    _, codes = np.unique(np.concatenate([q_labels, r_labels]), return_inverse=True)
    q_codes = torch.as_tensor(codes[: len(q_labels)], dtype=torch.long)
    r_codes = torch.as_tensor(codes[len(q_labels):], dtype=torch.long)
    counts = torch.bincount(r_codes, minlength=int(codes.max()) + 1)
    relevant = counts[q_codes] - int(leave_one_out)  # R per query
    depth = min(int(max(relevant.max(), max(k))), len(refs) - int(leave_one_out))
    sums = {"p1": 0.0, "rp": 0.0, "map": 0.0, "mrr": 0.0, **{f"r{v}": 0.0 for v in k}}
    counted = 0
    query_chunk = max(1, min(chunk_size, max_block // (depth + chunk_size)))
    for start in range(0, len(queries), query_chunk):
        stop = min(start + query_chunk, len(queries))
        rows = torch.arange(start, stop)
        keep = relevant[rows] > 0
        if not keep.any():
            continue
        rows = rows[keep]
        top_sims, top_idx, best_relevant = _top_neighbours(
            queries[rows], q_codes[rows], refs, r_codes, depth, rows if leave_one_out else None, chunk_size)
        rel = (r_codes[top_idx] == q_codes[rows][:, None]).double()  # (n, depth)
        big_r = relevant[rows].double()
        within_r = (torch.arange(depth)[None, :] < big_r[:, None]).double()
        hits = torch.cumsum(rel, dim=1)
        precision_at_i = hits / torch.arange(1, depth + 1, dtype=torch.float64)
        sums["p1"] += float(rel[:, 0].sum())
        sums["rp"] += float(((rel * within_r).sum(1) / big_r).sum())
        sums["map"] += float(((rel * precision_at_i * within_r).sum(1) / big_r).sum())
        for v in k:
            sums[f"r{v}"] += float(rel[:, : min(v, depth)].amax(dim=1).sum())
        sums["mrr"] += float((1.0 / _first_relevant_rank(rel, queries[rows], q_codes[rows], best_relevant, refs, r_codes,
                                                        rows if leave_one_out else None, chunk_size)).sum())
        counted += len(rows)
    if counted == 0:
        raise CnnkitError("no query has a relevant reference (same label): retrieval metrics are undefined")
    metrics = {"precision_at_1": sums["p1"] / counted, "r_precision": sums["rp"] / counted,
               "map_at_r": sums["map"] / counted, "mrr": sums["mrr"] / counted}
    metrics.update({f"recall_at_{v}": sums[f"r{v}"] / counted for v in k})
    metrics["num_queries"] = float(counted)
    return metrics


def _similarity_blocks(queries: torch.Tensor, refs: torch.Tensor, query_rows: torch.Tensor | None, chunk: int):
    """(start, similarities (n, c)) per reference block; in leave-one-out a query's own entry is -inf."""
    for start in range(0, len(refs), chunk):
        block = queries @ refs[start:start + chunk].T
        if query_rows is not None:
            local = query_rows - start
            inside = (local >= 0) & (local < block.shape[1])
            block[inside.nonzero().flatten(), local[inside]] = -torch.inf
        yield start, block


def _top_neighbours(queries: torch.Tensor, q_codes: torch.Tensor, refs: torch.Tensor, r_codes: torch.Tensor,
                    depth: int, query_rows: torch.Tensor | None, chunk: int) -> tuple[torch.Tensor, ...]:
    """The `depth` most similar references of each query (similarities, indices), merged block by
    block, and each query's highest similarity to a relevant reference (for MRR beyond `depth`)."""
    top_sims = torch.full((len(queries), 0), -torch.inf)
    top_idx = torch.zeros((len(queries), 0), dtype=torch.long)
    best_relevant = torch.full((len(queries),), -torch.inf)
    for start, block in _similarity_blocks(queries, refs, query_rows, chunk):
        same = r_codes[start:start + block.shape[1]][None, :] == q_codes[:, None]
        best_relevant = torch.maximum(best_relevant, block.masked_fill(~same, -torch.inf).amax(dim=1))
        sims = torch.cat([top_sims, block], dim=1)
        idx = torch.cat([top_idx, torch.arange(start, start + block.shape[1]).expand(len(queries), -1)], dim=1)
        top_sims, order = sims.topk(min(depth, sims.shape[1]), dim=1)
        top_idx = idx.gather(1, order)
    return top_sims, top_idx, best_relevant


def _first_relevant_rank(rel: torch.Tensor, queries: torch.Tensor, q_codes: torch.Tensor, best_relevant: torch.Tensor,
                         refs: torch.Tensor, r_codes: torch.Tensor, query_rows: torch.Tensor | None,
                         chunk: int) -> torch.Tensor:
    """Rank (1-based) of each query's first relevant reference: from the top list when it is there,
    else 1 + the number of irrelevant references more similar than its best relevant one (a second
    pass; relevant ones are never counted: recomputed in other blocks, the best relevant one itself
    can come out a rounding error above its first-pass similarity)."""
    found = rel.any(dim=1)
    rank = torch.where(found, rel.argmax(dim=1).double() + 1, torch.zeros(len(rel), dtype=torch.float64))
    missing = (~found).nonzero().flatten()
    if len(missing):
        ahead = torch.zeros(len(missing), dtype=torch.float64)
        rows = None if query_rows is None else query_rows[missing]
        for start, block in _similarity_blocks(queries[missing], refs, rows, chunk):
            irrelevant = r_codes[start:start + block.shape[1]][None, :] != q_codes[missing][:, None]
            ahead += ((block > best_relevant[missing][:, None]) & irrelevant).sum(dim=1).double()
        rank[missing] = ahead + 1
    return rank
