"""An embedding model: any zoo backbone's pre-logits vector, a linear projection, L2 normalisation.

Built from the model contract (`forward_features`, then `forward_head(..., pre_logits=True)`), so
every zoo model works; the backbone's classifier is replaced by Identity (it is never used, and
unused parameters would trip DDP).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.embeddings.losses import ProxyLoss
from cnnkit.errors import CnnkitError
from cnnkit.models.base import ClassifierModel
from cnnkit.models.heads import NoClassifier


def _pre_logits_width(backbone: nn.Module) -> int:
    """Width of the pre-logits vector: the classifier's input features (also kept by a 0-class
    model's NoClassifier), else a trial forward."""
    classifier = backbone.get_submodule(backbone.default_cfg.classifier)
    if isinstance(classifier, (nn.Linear, NoClassifier)):
        return classifier.in_features
    channels, height, width = backbone.default_cfg.input_size
    with torch.no_grad():
        probe = torch.zeros(1, channels, height, width, device=next(backbone.parameters()).device)
        return int(backbone.forward_head(backbone.forward_features(probe), pre_logits=True).flatten(1).shape[1])


class EmbeddingModel(nn.Module):
    """images (N, C, H, W) -> unit embeddings (N, embedding_dim); `default_cfg` is the backbone's."""

    def __init__(self, backbone: nn.Module, embedding_dim: int = 128) -> None:
        super().__init__()
        if not isinstance(backbone, ClassifierModel):
            raise CnnkitError(f"an embedding backbone must be a zoo model (ClassifierModel), got {type(backbone).__name__}")
        if embedding_dim < 1:
            raise CnnkitError(f"--embedding-dim must be >= 1, got {embedding_dim}")
        width = _pre_logits_width(backbone)
        backbone.set_submodule(backbone.default_cfg.classifier, nn.Identity())
        self.backbone = backbone
        self.projection = nn.Linear(width, embedding_dim)
        self.embedding_dim = embedding_dim

    @property
    def default_cfg(self):
        return self.backbone.default_cfg

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> the backbone's last feature map (N, C', h, w)."""
        return self.backbone.forward_features(images)

    def forward_head(self, feature_map: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> unit embeddings (N, embedding_dim): they are this model's output and its
        pre-logits vector alike, so `Predictor.features` of an embedder gives the embeddings."""
        pooled = self.backbone.forward_head(feature_map, pre_logits=True)
        return F.normalize(self.projection(pooled.flatten(1)), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))


class MetricLearner(nn.Module):
    """What the trainer fits: the embedder and the loss's parameters (class proxies) together, so
    checkpoints, EMA, resume and DDP cover both. forward returns what `criterion` needs: cosines to
    the proxies (N, num_classes) for proxy losses (then usable as logits for top-1), else the
    embeddings (N, D)."""

    def __init__(self, embedder: EmbeddingModel, criterion: nn.Module) -> None:
        super().__init__()
        self.embedder, self.criterion = embedder, criterion

    @property
    def default_cfg(self):
        return self.embedder.default_cfg

    @property
    def uses_proxies(self) -> bool:
        return isinstance(self.criterion, ProxyLoss)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        embeddings = self.embedder(images)
        return self.criterion.cosines(embeddings) if self.uses_proxies else embeddings

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.uses_proxies:
            return self.criterion.loss_from_cosines(outputs, targets)
        return self.criterion(outputs, targets)
