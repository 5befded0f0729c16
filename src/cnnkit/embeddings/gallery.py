"""A searchable gallery on disk: embeddings, where each came from, labels, and the index.

    GALLERY/vectors.npy    unit float32 vectors (N, D)
    GALLERY/gallery.json   kind, dim, run, paths, labels, the index's build report
    GALLERY/index.faiss    the faiss index (hnsw, ivf kinds only)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError
from cnnkit.embeddings.search import KINDS, BuildReport, IndexKind, VectorIndex, import_faiss

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
        """A new gallery of `vectors` (N, D) with one path and label each, indexed as `kind`."""
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
        if not len(self):
            raise CnnkitError("the gallery is empty: nothing to search")
        scores, indices = self.index.search(queries, min(k, len(self)))
        return [[Match(self.paths[i], self.labels[i], float(s)) for s, i in zip(row_s, row_i) if i >= 0]
                for row_s, row_i in zip(scores, indices)]

    # ----------------------------------------------------------------- storage
    def save(self, folder: str | Path) -> Path:
        """Write the gallery to `folder`. Every file is written beside its old one first and
        swapped in only when all are written, so a failed save leaves the previous gallery whole."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.index.kind, "dim": self.index.dim, "run": self.run, "report": asdict(self.index.report),
                "paths": self.paths, "labels": self.labels}
        names = [_VECTORS, *([_FAISS] if self.index.index is not None else []), _META]  # metadata swapped in last
        try:
            with open(folder / f"{_VECTORS}.tmp", "wb") as handle:
                np.save(handle, self.index.vectors)
            if self.index.index is not None:
                import_faiss().write_index(self.index.index, str(folder / f"{_FAISS}.tmp"))
            (folder / f"{_META}.tmp").write_text(json.dumps(meta, indent=1))
        except BaseException:
            for name in names:
                (folder / f"{name}.tmp").unlink(missing_ok=True)
            raise
        for name in names:
            os.replace(folder / f"{name}.tmp", folder / name)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Gallery:
        """The gallery saved in `folder`; a missing, corrupt or inconsistent file is an error naming it."""
        folder = Path(folder)
        meta_path, vectors_path, faiss_path = folder / _META, folder / _VECTORS, folder / _FAISS
        if not meta_path.is_file():
            raise CnnkitError(f"{folder} is not a gallery: {_META} is missing (make one with `cnnkit index`)")
        try:
            meta = json.loads(meta_path.read_text())
            kind, dim, run = meta["kind"], int(meta["dim"]), str(meta.get("run", ""))
            paths, labels, report = list(meta["paths"]), list(meta["labels"]), BuildReport(**meta["report"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CnnkitError(f"{meta_path}: unreadable gallery metadata ({error!r})") from None
        if kind not in KINDS:
            raise CnnkitError(f"{meta_path}: unknown index kind {kind!r} (one of {', '.join(KINDS)})")
        try:
            vectors = np.load(vectors_path)
        except (OSError, ValueError, EOFError) as error:
            raise CnnkitError(f"{vectors_path}: unreadable gallery vectors ({error})") from None
        if vectors.shape != (len(paths), dim):
            raise CnnkitError(f"{vectors_path} holds vectors of shape {vectors.shape} but {meta_path} lists "
                              f"{len(paths)} items of {dim}-d: the gallery is inconsistent, rebuild it")
        index = VectorIndex(kind, dim)
        index.vectors, index.report = vectors.astype(np.float32), report
        if kind != "exact":
            faiss = import_faiss()
            try:
                index.index = faiss.read_index(str(faiss_path))
                index._set_parameter(report.value)
            except (RuntimeError, AttributeError) as error:
                raise CnnkitError(f"{faiss_path}: unreadable {kind} index "
                                  f"({str(error).strip().splitlines()[-1][:200]})") from None
            if index.index.ntotal != len(vectors) or index.index.d != dim:
                raise CnnkitError(f"{faiss_path} holds {index.index.ntotal} {index.index.d}-d vectors but "
                                  f"{vectors_path} {len(vectors)} {dim}-d ones: the gallery is inconsistent, rebuild it")
        return cls(index, paths, labels, run=run)
