"""Which model a run trains: the zoo model seeded from the run's seed, its input size and
normalisation fitted to the data (channels and classes come from the data)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from cnnkit.data.stats import channel_stats
from cnnkit.models.base import DefaultCfg
from cnnkit.models.factory import create_model


def build_model(name: str, *, num_classes: int, in_chans: int, seed: int, pretrained: str | None = None,
                img_size: int | None = None, overrides: dict[str, Any] | None = None) -> nn.Module:
    """create_model with its random initialisation drawn from `seed` (so that `--seed` fixes the
    whole run), and the default_cfg input size set to the data's channels and `img_size`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(name, num_classes=num_classes, in_chans=in_chans, pretrained=pretrained,
                             **(overrides or {}))
    cfg: DefaultCfg = model.default_cfg
    _, height, width = cfg.input_size
    if img_size is not None:
        height = width = img_size
    model.default_cfg = dataclasses.replace(cfg, input_size=(in_chans, height, width), num_classes=num_classes)
    return model


def fit_normalisation(cfg: DefaultCfg, dataset: Any) -> DefaultCfg:
    """Keep the model's mean/std when they have one value per input channel; otherwise (a grey
    dataset on an RGB-pretrained cfg) use the training set's own statistics."""
    channels = cfg.input_size[0]
    if len(cfg.mean) == channels:
        return cfg
    stats = channel_stats(dataset, max_items=2000)
    return dataclasses.replace(cfg, mean=tuple(stats.mean), std=tuple(stats.std))
