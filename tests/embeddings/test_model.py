"""Every zoo model becomes an embedding model (shapes checked on the meta device: no weights),
and a real one yields unit vectors that train with every loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnkit.embeddings.losses import LOSSES, make_loss
from cnnkit.embeddings.model import EmbeddingModel, MetricLearner
from cnnkit.errors import CnnkitError
from cnnkit.models.factory import create_model, list_models


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_embeds(name: str) -> None:
    with torch.device("meta"):
        backbone = create_model(name, num_classes=3)
        channels, height, width = backbone.default_cfg.input_size
        model = EmbeddingModel(backbone, 16)
        # One forward on the meta device (shapes only): the projection's input width is right.
        assert model(torch.zeros(2, channels, height, width)).shape == (2, 16)
    assert isinstance(model.backbone.get_submodule(backbone.default_cfg.classifier), nn.Identity)


@pytest.mark.parametrize("loss", LOSSES)
def test_small_model_gives_unit_vectors_and_learns(loss: str) -> None:
    torch.manual_seed(0)
    learner = MetricLearner(EmbeddingModel(create_model("mnist_cnn", num_classes=4), 8), make_loss(loss, 4, 8))
    images, labels = torch.randn(16, 1, 28, 28), torch.arange(16) % 4
    assert torch.allclose(learner.embedder(images).norm(dim=1), torch.ones(16), atol=1e-5)
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-2)
    first = None
    for _ in range(15):
        value = learner.loss(learner(images), labels)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        first = float(value.detach()) if first is None else first
    assert float(value.detach()) < first


def test_bad_embedding_dim_is_named() -> None:
    with pytest.raises(CnnkitError, match="--embedding-dim"):
        EmbeddingModel(create_model("mnist_cnn"), 0)


def test_a_zero_class_backbone_embeds_its_pre_logits() -> None:
    """A timm-style feature extractor (num_classes=0) is a backbone as any other."""
    torch.manual_seed(0)
    backbone = create_model("mnist_cnn", num_classes=0).eval()
    images = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        pre_logits = backbone(images)
        model = EmbeddingModel(backbone, 8).eval()
        expected = torch.nn.functional.normalize(model.projection(pre_logits), dim=1)
        torch.testing.assert_close(model(images), expected)
