"""Nearest-neighbour search on random clustered 128-d vectors: exact (cnnkit's blockwise torch),
plain NumPy (one matmul over the whole matrix + argpartition), faiss HNSW and IVF side by side.

Per size (100k, 1M): queries/s of each (the same query batch for all, the fastest of `--repeats`
runs, the thread counts printed) and recall@10 against exact search, on held-out queries drawn
from the same clusters; HNSW is built with the library's defaults (M, efConstruction); the
HNSW/IVF search parameter is the one the build chose for recall@10 >= 0.95 on a sample of the stored vectors; build times are printed. HNSW at 1M is
skipped (and the reason printed) when the 100k build time projects past `--max-build` seconds.
Then the peak memory of `retrieval_metrics` with 200k reference embeddings (in a fresh process,
from the peak RSS, VmHWM, reset once the data is made), against the 149 GiB an N x N matrix would take.
Last line: `embed_search: HNSW <x>x exact at <size>, recall@10 <r>`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time

import numpy as np
import torch

from cnnkit.device_info import device_info
from cnnkit.embeddings.metrics import retrieval_metrics
from cnnkit.embeddings.search import (HNSW_EF_CONSTRUCTION, HNSW_M, VectorIndex, exact_search, import_faiss,
                                     normalise, recall_at)


def clustered(n: int, *, dim: int = 128, clusters: int = 1000, seed: int = 0,
              spread: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """n unit vectors around `clusters` random unit centres (noise of norm about `spread`), float32
    (n, dim), and their cluster labels; made in slices of 100k (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(clusters, dim, generator=generator), dim=1)
    parts, labels = [], []
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        labels.append(torch.randint(clusters, (m,), generator=generator))
        parts.append(normalise(centres[labels[-1]] + spread * torch.randn(m, dim, generator=generator) / dim**0.5))
    return np.concatenate(parts), torch.cat(labels).numpy()


def numpy_search(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """The plain way: the whole (Q, N) similarity matrix, argpartition, then sort the top k."""
    sims = queries @ vectors.T
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1)
    return np.take_along_axis(top, order, 1)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def best_of(repeats: int, fn, *args):
    """(result, fastest of `repeats` runs in seconds): every method gets the same warm-up and repeats."""
    runs = [timed(fn, *args) for _ in range(repeats)]
    return runs[0][0], min(seconds for _, seconds in runs)


def bench_size(n: int, queries_count: int, max_build: float, hnsw_build_per_item: float | None, repeats: int) -> dict:
    data, _ = clustered(n + queries_count)
    vectors, queries = data[:n], data[n:]
    print(f"\n== {n:,} vectors x 128, {queries_count} queries ==")
    (_, truth), t_exact = best_of(repeats, exact_search, queries, vectors, 10)
    top_np, t_numpy = best_of(repeats, numpy_search, queries, vectors, 10)
    rows = {"exact (cnnkit, torch blocks)": (queries_count / t_exact, 1.0, 0.0),
            "NumPy matmul + argpartition": (queries_count / t_numpy, recall_at(top_np, truth), 0.0)}
    result = {"exact_qps": queries_count / t_exact, "numpy_qps": queries_count / t_numpy}
    for kind in ("hnsw", "ivf"):
        if kind == "hnsw" and hnsw_build_per_item is not None and hnsw_build_per_item * n > max_build:
            print(f"hnsw: skipped at {n:,}: the 100k build projects to {hnsw_build_per_item * n:.0f} s "
                  f"(> --max-build {max_build:.0f} s) on this machine")
            continue
        index, t_build = timed(lambda: VectorIndex.build(vectors, kind, target_recall=0.95, sample=300,
                                                         generator=torch.Generator().manual_seed(0)))
        print(f"{kind}: built in {t_build:.1f} s; {index.report.describe()}")
        (_, found), t_search = best_of(repeats, index.search, queries, 10)
        recall = recall_at(found, truth)
        rows[f"faiss {kind} ({index.report.parameter}={index.report.value})"] = (
            queries_count / t_search, recall, t_build)
        result[f"{kind}_qps"], result[f"{kind}_recall"], result[f"{kind}_build"] = (
            queries_count / t_search, recall, t_build)
        del index
    print("| method | queries/s | x exact | recall@10 | build s |\n|---|---|---|---|---|")
    for name, (qps, recall, build) in rows.items():
        print(f"| {name} | {qps:,.0f} | {qps / result['exact_qps']:.2f}x | {recall:.4f} | {build:.1f} |")
    return result


def _rss_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _metrics_peak(n: int, queries: int, conn) -> None:
    data, labels = clustered(n, seed=3)  # 1000 classes: R about n / 1000
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
        f.write("5")
    before = _rss_kib("VmRSS")
    start = time.perf_counter()
    metrics = retrieval_metrics(data[:queries], labels[:queries], data, labels)
    seconds = time.perf_counter() - start
    conn.send((before, _rss_kib("VmHWM"), seconds, metrics["map_at_r"]))


def metrics_memory(n: int, queries: int) -> None:
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_metrics_peak, args=(n, queries, child))
    process.start()
    before, after, seconds, map_at_r = parent.recv()
    process.join()
    print(f"\nretrieval_metrics: {queries:,} queries against {n:,} x 128 references (R about {n // 1000}) in "
          f"{seconds:.1f} s; RSS {before / 1024:.0f} MiB with the data made -> peak {after / 1024:.0f} MiB "
          f"(+{(after - before) / 1024:.0f} MiB); an N x N float32 matrix of {n:,} would be "
          f"{n * n * 4 / 2**30:.0f} GiB. MAP@R {map_at_r:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--max-build", type=float, default=400.0, help="skip an HNSW build projected past this")
    parser.add_argument("--repeats", type=int, default=2, help="each search is timed this many times, the fastest kept")
    parser.add_argument("--metrics-n", type=int, default=200_000)
    parser.add_argument("--metrics-queries", type=int, default=500,
                        help="queries of the memory check (its memory per query block does not depend on it)")
    args = parser.parse_args()
    print(device_info().describe())
    faiss = import_faiss()
    print(f"threads: torch {torch.get_num_threads()} (exact), faiss OpenMP {faiss.omp_get_max_threads()} (hnsw, ivf); "
          f"every method searches the same {args.queries} queries as one batch, fastest of {args.repeats} runs; "
          f"hnsw M {HNSW_M}, efConstruction {HNSW_EF_CONSTRUCTION}")
    results, per_item = {}, None
    for n in (int(s) for s in args.sizes.split(",")):
        results[n] = bench_size(n, args.queries, args.max_build, per_item, args.repeats)
        if "hnsw_build" in results[n] and per_item is None:
            per_item = results[n]["hnsw_build"] / n
    metrics_memory(args.metrics_n, args.metrics_queries)
    for n in sorted(results, reverse=True):
        r = results[n]
        print(f"exact vs NumPy argpartition at {n:,}: {r['exact_qps'] / r['numpy_qps']:.2f}x")
    n = max((n for n in results if "hnsw_qps" in results[n]), default=None)
    if n is not None:
        r = results[n]
        print(f"embed_search: HNSW {r['hnsw_qps'] / r['exact_qps']:.1f}x exact at {n:,}, recall@10 {r['hnsw_recall']:.3f}")


if __name__ == "__main__":
    main()
