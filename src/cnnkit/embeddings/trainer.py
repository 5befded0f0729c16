"""The Trainer, taught metric learning: the loss comes from the model's criterion, validation is
retrieval (leave-one-out on the validation set) instead of classification accuracy, and P x K
batches when asked. Everything else (checkpoints, resume, EMA, progress, DDP) is the Trainer's."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from cnnkit.data.epoch_sampling import dataset_targets
from cnnkit.data.loader import make_loader
from cnnkit.embeddings.metrics import retrieval_metrics
from cnnkit.embeddings.model import EmbeddingModel, MetricLearner
from cnnkit.embeddings.sampler import pk_epoch_order
from cnnkit.errors import CnnkitError
from cnnkit.train.metrics import ClassificationMeter
from cnnkit.train.trainer import Trainer


VAL_METRICS = ("precision_at_1", "r_precision", "map_at_r", "mrr", "recall_at_1", "recall_at_5")


class LossMeter(ClassificationMeter):
    """Tracks only the loss (a triplet loss has no class scores to count top-1 with)."""

    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss: float) -> None:
        self.loss_sum += loss * targets.numel()
        self.count += targets.numel()

    def compute(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}loss": self.loss_sum / self.count} if self.count else {}


@torch.no_grad()
def embed_batches(embedder: EmbeddingModel, loader: DataLoader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings (N, D) float32 on the CPU, labels (N,)) of every batch, the model in eval mode."""
    was_training = embedder.training
    embedder.eval()
    vectors, labels = [], []
    for images, targets in loader:
        vectors.append(embedder(images.to(device)).float().cpu())
        labels.append(targets.cpu())
    embedder.train(was_training)
    return torch.cat(vectors), torch.cat(labels)


class EmbeddingTrainer(Trainer):
    """A Trainer whose model is a `MetricLearner`; `pk` = (P, K) turns on P x K training batches
    (set before the loaders are made: pass it through `configure_pk`)."""

    pk: tuple[int, int] | None = None

    def __init__(self, model: MetricLearner, *args: Any, **kwargs: Any) -> None:
        if not isinstance(model, MetricLearner):
            raise CnnkitError("EmbeddingTrainer trains a MetricLearner (an EmbeddingModel with its loss)")
        super().__init__(model, *args, **kwargs)
        if self.config.mixup_alpha or self.config.cutmix_alpha:
            raise CnnkitError("--task embedding does not mix images: leave mixup_alpha and cutmix_alpha at 0")
        # A proxy loss (ArcFace, CosFace, NormSoftmax) is a mean over samples against the proxies, so
        # accumulated micro-batches give the large batch's gradient; a triplet loss mines within a batch.
        if self.config.accumulate_steps > 1 and not model.uses_proxies:
            raise CnnkitError(f"--task embedding: accumulate_steps {self.config.accumulate_steps} would not make a "
                              "larger batch for the triplet loss: it mines its triplets within one batch; leave it "
                              "at 1 and raise --batch-size (the proxy losses, e.g. arcface, accumulate)")
        if self.config.label_smoothing or self.config.class_weighted_loss:
            raise CnnkitError("--task embedding: label_smoothing and class_weighted_loss apply to cross-entropy "
                              "classification only; leave them off")

    def new_meter(self) -> ClassificationMeter:
        return ClassificationMeter(self.num_classes) if self.model.uses_proxies else LossMeter(self.num_classes)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.model.loss(outputs, targets)

    def _loader(self, dataset, sample_transform, batch_transform, *, train: bool):
        if not (train and self.pk):
            return super()._loader(dataset, sample_transform, batch_transform, train=train)
        p, k = self.pk
        if self.config.batch_size != p * k:
            raise CnnkitError(f"P x K sampling: --batch-size must be P*K = {p * k}, got {self.config.batch_size}")
        config = self.config
        return make_loader(
            dataset, batch_size=config.batch_size, train=True, seed=config.seed, num_workers=config.num_workers,
            device=self.device, sample_transform=sample_transform, batch_transform=batch_transform,
            rank=self.dist.rank, world_size=self.dist.world_size, channels_last=config.channels_last,
            epoch_order=pk_epoch_order(dataset_targets(dataset), p, k, world_size=self.dist.world_size),
        )

    def evaluate(self, loader: DataLoader, *, prefix: str = "") -> dict[str, float]:
        """Retrieval metrics of the (EMA) embedder on `loader`, each item querying the others.
        Under DDP each rank scores its own share and the ranks average (so all agree on the best
        epoch and early stopping)."""
        embedder = self.eval_model.embedder
        vectors, labels = embed_batches(embedder, loader, self.device)
        try:
            metrics = retrieval_metrics(vectors, labels.numpy(), k=(1, 5))
            values = torch.tensor([metrics[name] for name in VAL_METRICS], dtype=torch.float64)
        except CnnkitError:  # no class with two items here: nothing to retrieve
            values = torch.full((len(VAL_METRICS),), torch.nan, dtype=torch.float64)
        if self.dist.enabled:
            values = self.dist.all_reduce_sum(values) / self.dist.world_size
        if values.isnan().any():
            return {}  # the monitor falls back to train_loss
        return {f"{prefix}{name}": float(v) for name, v in zip(VAL_METRICS, values)}


def with_pk(p: int | None, k: int | None) -> type[EmbeddingTrainer]:
    """EmbeddingTrainer with P x K batches (a subclass, since the loaders are made in __init__)."""
    if p is None or k is None:
        return EmbeddingTrainer
    return type("PKEmbeddingTrainer", (EmbeddingTrainer,), {"pk": (p, k)})
