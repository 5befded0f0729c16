"""Finished embedding runs: rebuild the embedder, embed image files, store fields in summary.json.

The two functions touching run loading and image preprocessing (`load_embedder`, `embed_files`)
use the trainer's `setup` helpers and the data pipeline; they are the place to switch to
`cnnkit.inference` (Predictor.features / load_run / update_summary) once it exists.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from cnnkit.data.decode import BadImageError, decode_image
from cnnkit.data.pipeline import eval_pipeline
from cnnkit.embeddings.model import EmbeddingModel
from cnnkit.errors import CnnkitError
from cnnkit.models.base import DefaultCfg
from cnnkit.models.factory import create_model
from cnnkit.train.checkpoint import atomic_write

_PREFIX = "embedder."  # best.safetensors holds the MetricLearner: embedder.* and criterion.*


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise CnnkitError(f"{run_dir} is not a finished run: {path.name} is missing")
    summary = json.loads(path.read_text())
    if summary.get("task") != "embedding":
        raise CnnkitError(f"{run_dir} is not an embedding run (train it with `cnnkit train DATA --task embedding`)")
    return summary


def update_summary(run_dir: str | Path, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into RUN/summary.json (atomically) and return the new summary."""
    path = Path(run_dir) / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    summary.update(fields)
    text = json.dumps(summary, indent=2, default=float)
    atomic_write(path, lambda f: f.write(text.encode()))
    return summary


def load_embedder(run_dir: str | Path, *, device: str | torch.device = "cpu") -> tuple[EmbeddingModel, dict[str, Any]]:
    """The run's EmbeddingModel (best weights, eval mode) and its summary."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    cfg = DefaultCfg(**{k: tuple(v) if isinstance(v, list) else v for k, v in summary["default_cfg"].items()})
    backbone = create_model(summary["model_name"], num_classes=max(1, len(summary["class_names"])),
                            in_chans=cfg.input_size[0], **summary.get("model_overrides", {}))
    backbone.default_cfg = cfg
    model = EmbeddingModel(backbone, int(summary["embedding_dim"]))
    weights = run_dir / "best.safetensors"
    if not weights.is_file():
        raise CnnkitError(f"{run_dir} has no {weights.name}: the run finished no epoch")
    state = {k[len(_PREFIX):]: v for k, v in load_file(weights).items() if k.startswith(_PREFIX)}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CnnkitError(f"{weights} does not fit {summary['model_name']} with a {summary['embedding_dim']}-d "
                          f"embedding ({error})") from None
    return model.eval().to(device), summary


@torch.no_grad()
def embed_files(model: EmbeddingModel, paths: Sequence[str | Path], *, batch_size: int = 32,
                progress: bool = False) -> tuple[torch.Tensor, list[str], list[tuple[str, str]]]:
    """(embeddings (N, D) of the files that decoded, their paths, [(path, why)] of those skipped),
    preprocessed as at evaluation (the run's default_cfg); `progress` prints a count to stderr."""
    cfg = model.default_cfg
    evaluation = eval_pipeline(cfg)
    mode = "L" if cfg.input_size[0] == 1 else "RGB"
    device = next(model.parameters()).device
    vectors, kept, skipped, batch, batch_paths = [], [], [], [], []

    def flush() -> None:
        if batch:
            vectors.append(model(torch.stack(batch).to(device)).float().cpu())
            kept.extend(batch_paths)
            batch.clear()
            batch_paths.clear()

    for done, path in enumerate(paths, start=1):
        try:
            image = decode_image(str(path), mode=mode, size_hint=evaluation.decode_hint)
        except (BadImageError, OSError) as error:
            skipped.append((str(path), str(error)))
            continue
        batch.append(evaluation(image))
        batch_paths.append(str(path))
        if len(batch) == batch_size:
            flush()
        if progress and (done % 256 == 0 or done == len(paths)):
            print(f"\rembedded {done}/{len(paths)}", end="", file=sys.stderr, flush=True)
    flush()
    if progress and paths:
        print(file=sys.stderr)
    dim = model.embedding_dim
    return (torch.cat(vectors) if vectors else torch.zeros(0, dim)), kept, skipped
