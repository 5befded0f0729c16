"""A searchable gallery on disk: embeddings, where each came from, labels, and the index.

    GALLERY/vectors.npy    unit float32 vectors (N, D)
    GALLERY/gallery.json   kind, dim, run, paths, labels, the index's build report
    GALLERY/index.faiss    the faiss index (hnsw, ivf kinds only)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError
from cnnkit.embeddings.search import BuildReport, IndexKind, VectorIndex, import_faiss

_META, _VECTORS, _FAISS = "gallery.json", "vectors.npy", "index.faiss"


@dataclass(frozen=True)
class Match:
    """One search result: the gallery item's path and label, and its cosine to the query."""

    path: str
    label: str
    score: float


class Gallery:
    """Vectors with their paths and labels behind a `VectorIndex`; `save` / `load` a folder."""

    def __init__(self, index: VectorIndex, paths: Sequence[str], labels: Sequence[str], *, run: str = "") -> None:
        if not len(paths) == len(labels) == len(index):
            raise CnnkitError(f"gallery: {len(index)} vectors but {len(paths)} paths and {len(labels)} labels")
        self.index, self.paths, self.labels, self.run = index, list(paths), list(labels), run

    @classmethod
    def build(cls, vectors: Any, paths: Sequence[str], labels: Sequence[str], *, kind: IndexKind = "exact",
              run: str = "", target_recall: float = 0.95) -> Gallery:
        return cls(VectorIndex.build(vectors, kind, target_recall=target_recall), paths, labels, run=run)

    def add(self, vectors: Any, paths: Sequence[str], labels: Sequence[str], *, target_recall: float = 0.95) -> None:
        """Append items (e.g. a second folder); an approximate index is re-tuned for the new size."""
        if not len(paths) == len(labels) == len(vectors):
            raise CnnkitError(f"gallery add: {len(vectors)} vectors but {len(paths)} paths and {len(labels)} labels")
        self.index.add(vectors)
        self.paths += list(paths)
        self.labels += list(labels)
        if self.index.kind != "exact":
            self.index.tune(target_recall)

    def __len__(self) -> int:
        return len(self.paths)

    def search(self, queries: Any, k: int = 5) -> list[list[Match]]:
        """The k most similar items of each query (N, D), best first."""
        scores, indices = self.index.search(queries, min(k, len(self)))
        return [[Match(self.paths[i], self.labels[i], float(s)) for s, i in zip(row_s, row_i) if i >= 0]
                for row_s, row_i in zip(scores, indices)]

    # ----------------------------------------------------------------- storage
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / _VECTORS, self.index.vectors)
        if self.index.index is not None:
            import_faiss().write_index(self.index.index, str(folder / _FAISS))
        meta = {"kind": self.index.kind, "dim": self.index.dim, "run": self.run, "report": asdict(self.index.report),
                "paths": self.paths, "labels": self.labels}
        (folder / _META).write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Gallery:
        folder = Path(folder)
        meta_path = folder / _META
        if not meta_path.is_file():
            raise CnnkitError(f"{folder} is not a gallery: {_META} is missing (make one with `cnnkit index`)")
        try:
            meta = json.loads(meta_path.read_text())
            kind, dim = meta["kind"], int(meta["dim"])
            vectors = np.load(folder / _VECTORS)
        except (OSError, ValueError, KeyError) as error:
            raise CnnkitError(f"{folder}: unreadable gallery ({error})") from None
        index = VectorIndex(kind, dim)
        index.vectors = vectors.astype(np.float32)
        if kind != "exact":
            index.index = import_faiss().read_index(str(folder / _FAISS))
            index.report = BuildReport(**meta["report"])
            index._set_parameter(index.report.value)
        return cls(index, meta["paths"], meta["labels"], run=meta.get("run", ""))
