"""`fit_embedding`: train a MetricLearner through `cnnkit.train.fit` (same run directory, resume,
checkpoints, DDP), then score the best weights on an evaluation set and record in the run's
RunSummary (RUN/summary.json, through `update_summary`):

    task: "embedding", embedding_loss, embedding_dim, holdout_classes (names), evaluated_on
    retrieval:    precision_at_1, r_precision, map_at_r, mrr, recall_at_k (leave-one-out)
    verification: auc, eer, tar_at_far_*, 10-fold accuracy... over all pairs of (up to
                  `pair_items`) evaluation items; verification_threshold (best-accuracy one)
    RUN/roc.json: the ROC curve (fpr, tpr)

The evaluation set is the held-out classes (`--holdout-classes K`: the last K classes, never
trained on; the CUB-200 protocol), else the test split, else the validation split.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from cnnkit.data.dataset import ImageDataset, SubsetDataset
from cnnkit.data.epoch_sampling import SampleTransform
from cnnkit.data.loader import BatchTransform
from cnnkit.embeddings.metrics import retrieval_metrics
from cnnkit.embeddings.model import MetricLearner
from cnnkit.embeddings.trainer import embed_batches, with_pk
from cnnkit.embeddings.verification import verification_metrics
from cnnkit.errors import CnnkitError
from cnnkit.inference import RunSummary, update_summary
from cnnkit.train.config import TrainConfig
from cnnkit.train.distributed import DistributedContext
from cnnkit.train.evaluate import ordered_loader
from cnnkit.train.fit import DataBundle, RunInfo, fit
from cnnkit.train.trainer import pick_device


@dataclass(frozen=True)
class EmbeddingOptions:
    """What `--task embedding` adds to a training run."""

    loss: str = "arcface"
    embedding_dim: int = 128
    holdout_classes: int = 0
    margin: float | None = None  # None: the loss's published default
    scale: float | None = None
    mining: str | None = None  # triplet only; None: batch_hard
    pk: tuple[int, int] | None = None  # P classes x K samples per batch
    pair_items: int = 2000  # verification pairs: all pairs of up to this many evaluation items


def _restrict(dataset: Dataset, keep: Sequence[bool]) -> SubsetDataset:
    if not isinstance(dataset, ImageDataset):
        raise CnnkitError(f"--holdout-classes needs a cnnkit image dataset, got {type(dataset).__name__}")
    return SubsetDataset(dataset, [i for i, k in enumerate(keep) if k])


def holdout_split(splits: dict[str, Dataset], class_names: Sequence[str], holdout: int
                  ) -> tuple[dict[str, Dataset], list[Dataset], list[str]]:
    """(each split without the last `holdout` classes, each split's items of those classes, the
    training class names). Training labels stay 0..K-holdout-1: no relabelling needed."""
    if not 0 <= holdout <= len(class_names) - 2:
        raise CnnkitError(f"--holdout-classes must leave at least 2 training classes of {len(class_names)}, got {holdout}")
    if holdout == 0:
        return dict(splits), [], list(class_names)
    first_held = len(class_names) - holdout
    kept, held = {}, []
    for name, dataset in splits.items():
        targets = list(dataset.targets)
        kept[name] = _restrict(dataset, [t < first_held for t in targets])
        held.append(_restrict(dataset, [t >= first_held for t in targets]))
    return kept, [h for h in held if len(h)], list(class_names[:first_held])


def embed_datasets(learner: MetricLearner, datasets: Sequence[Dataset], transform: SampleTransform | None,
                   batch_transform: BatchTransform | None, *, device: torch.device, seed: int,
                   batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (N, D) and labels (N,) of all items of `datasets`, in order, eval preprocessing."""
    vectors, labels = [], []
    for dataset in datasets:
        loader = ordered_loader(dataset, transform, batch_size=batch_size, seed=seed, device=device,
                                batch_transform=batch_transform)
        v, y = embed_batches(learner.embedder, loader, device)
        vectors.append(v)
        labels.append(y)
    return torch.cat(vectors), torch.cat(labels)


def pair_scores(vectors: torch.Tensor, labels: torch.Tensor, *, max_items: int,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and same-label flags of every pair (i < j) of up to `max_items` items (a seeded draw)."""
    if len(vectors) > max_items:
        chosen = torch.randperm(len(vectors), generator=generator)[:max_items]
        vectors, labels = vectors[chosen], labels[chosen]
    unit = torch.nn.functional.normalize(vectors.float(), dim=1)
    upper = torch.ones(len(unit), len(unit), dtype=torch.bool).triu(diagonal=1)
    return (unit @ unit.T)[upper], (labels[:, None] == labels[None, :])[upper]


def evaluate_embeddings(vectors: torch.Tensor, labels: torch.Tensor, *, pair_items: int = 2000,
                        seed: int = 0) -> tuple[dict[str, float], dict[str, Any]]:
    """(retrieval metrics, verification metrics) of one evaluation set."""
    retrieval = retrieval_metrics(vectors, labels.numpy(), k=(1, 5, 10))
    scores, same = pair_scores(vectors, labels, max_items=pair_items, generator=torch.Generator().manual_seed(seed))
    return retrieval, verification_metrics(scores.numpy(), same.numpy())


def fit_embedding(learner: MetricLearner, data: DataBundle, config: TrainConfig, info: RunInfo,
                  options: EmbeddingOptions, *, evaluation_sets: Sequence[Dataset], evaluation_name: str,
                  run_dir: str | Path, resume: bool = False, distributed: DistributedContext | None = None,
                  quiet: bool = False, holdout_names: Sequence[str] = ()) -> RunSummary:
    """Train (`cnnkit.train.fit` with an EmbeddingTrainer), then evaluate `evaluation_sets` with the
    best weights and add the results to the run's summary; returns it. `holdout_names`: the
    classes kept out of training (recorded as `holdout_classes`)."""
    run_dir = Path(run_dir)
    summary = fit(learner, dataclasses.replace(data, test=None), config, info, run_dir=run_dir,
                  resume=resume, distributed=distributed, quiet=quiet, trainer_class=with_pk(*(options.pk or (None, None))))
    dist = distributed or DistributedContext()
    if not dist.is_main:
        return summary
    device = pick_device(config.device) if not dist.enabled else dist.device
    learner.load_state_dict(load_file(run_dir / "best.safetensors"))
    learner.to(device)
    vectors, labels = embed_datasets(learner, evaluation_sets, data.eval_transform, data.eval_batch_transform,
                                     device=device, seed=config.seed, batch_size=config.batch_size)
    retrieval, verification = evaluate_embeddings(vectors, labels, pair_items=options.pair_items, seed=config.seed)
    roc = {"fpr": verification.pop("fpr"), "tpr": verification.pop("tpr")}
    (run_dir / "roc.json").write_text(json.dumps(roc))
    return update_summary(
        run_dir, task="embedding", embedding_loss=options.loss, embedding_dim=options.embedding_dim,
        holdout_classes=list(holdout_names), evaluated_on=evaluation_name, retrieval=retrieval,
        verification=verification, verification_threshold=verification["threshold"])
