"""Finished embedding runs: rebuild the embedder from RUN/summary.json, and embed image files
through the inference core's `Predictor` (the run's evaluation preprocessing, batching, backend).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from cnnkit.embeddings.model import EmbeddingModel
from cnnkit.errors import CnnkitError
from cnnkit.inference import Predictor, RunSummary, TorchBackend, read_summary
from cnnkit.models.factory import create_model
from cnnkit.train.progress import RateReporter

_PREFIX = "embedder."  # best.safetensors holds the MetricLearner: embedder.* and criterion.*
WEIGHTS_FILE = "best.safetensors"


def read_embedding_summary(run_dir: str | Path) -> RunSummary:
    """RUN/summary.json of an embedding run; any other run is an error naming it."""
    summary = read_summary(run_dir)
    if summary.task != "embedding" or summary.embedding_dim is None:
        raise CnnkitError(f"{run_dir} is not an embedding run (train it with `cnnkit train DATA --task embedding`)")
    return summary


def load_embedder(run_dir: str | Path, *, device: str | torch.device | None = None) -> tuple[EmbeddingModel, RunSummary]:
    """The run's EmbeddingModel (best weights, eval mode, the run's default_cfg) and its summary."""
    run_dir = Path(run_dir)
    summary = read_embedding_summary(run_dir)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise CnnkitError(f"{run_dir} has no {WEIGHTS_FILE}: the run finished no epoch")
    backbone = create_model(summary.model_name, num_classes=max(1, summary.num_classes),
                            in_chans=summary.default_cfg.input_size[0], **summary.model_options)
    backbone.default_cfg = summary.default_cfg
    model = EmbeddingModel(backbone, summary.embedding_dim)
    try:
        stored = load_file(weights)
    except (SafetensorError, OSError) as error:
        raise CnnkitError(f"cannot read {weights} as a safetensors file: {error}") from None
    state = {k[len(_PREFIX):]: v for k, v in stored.items() if k.startswith(_PREFIX)}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CnnkitError(f"{weights} does not fit {summary.model_name} with a {summary.embedding_dim}-d "
                          f"embedding ({str(error)[:300]})") from None
    model = model.eval()
    return (model.to(device) if device is not None else model), summary


def embedding_predictor(run_dir: str | Path, *, device: str | torch.device | None = None,
                        batch_size: int = 32) -> tuple[Predictor, RunSummary]:
    """A Predictor over the run's embedder: `predictor.features(images)` are its unit embeddings (N, D)."""
    model, summary = load_embedder(run_dir, device=device)
    predictor = Predictor(TorchBackend(model, device=device), class_names=summary.class_names,
                          default_cfg=summary.default_cfg, model_name=summary.model_name, batch_size=batch_size)
    return predictor, summary


def embed_files(predictor: Predictor, paths: Sequence[str | Path], *,
                progress: bool = False) -> tuple[torch.Tensor, list[str], list[tuple[str, str]]]:
    """(embeddings (N, D) of the files that decoded, their paths, [(path, why)] of those skipped),
    a batch at a time through `predictor`; `progress` shows a bar on a terminal, else a line on
    stderr at least every 30 s (no carriage returns piling up in a log)."""
    files = [str(p) for p in paths]
    vectors, kept, skipped = [], [], []
    reporter = RateReporter(len(files), label="embedded", stream=sys.stderr, enabled=progress)
    try:
        for start in range(0, len(files), predictor.batch_size):
            chunk = files[start:start + predictor.batch_size]
            prepared = predictor.preprocess(chunk)
            skipped += [(failure.source, failure.reason) for failure in prepared.failures]
            if prepared.positions:
                vectors.append(predictor.features(prepared.batch))
                kept += [chunk[position] for position in prepared.positions]
            reporter.update(start + len(chunk))
    finally:
        reporter.close()
    dim = predictor.model.embedding_dim
    return (torch.cat(vectors) if vectors else torch.zeros(0, dim)), kept, skipped
