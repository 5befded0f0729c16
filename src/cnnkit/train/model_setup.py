"""Which model a run trains: the zoo model seeded from the run's seed, its input size and
normalisation fitted to the data (channels and classes come from the data)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from torch import nn

from cnnkit.data.pipeline import SMALL_IMAGE
from cnnkit.data.stats import channel_stats
from cnnkit.models.base import DefaultCfg
from cnnkit.models.factory import create_model
from cnnkit.models.heads import HeadSpec


def build_model(name: str, *, num_classes: int, in_chans: int, seed: int, pretrained: str | None = None,
                img_size: int | None = None, overrides: dict[str, Any] | None = None,
                head: HeadSpec | None = None) -> nn.Module:
    """create_model with its random initialisation drawn from `seed` (so that `--seed` fixes the
    whole run), and the default_cfg input size set to the data's channels and `img_size`; `head`
    replaces the model's classifier head (after any pretrained weights loaded)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(name, num_classes=num_classes, in_chans=in_chans, pretrained=pretrained,
                             head=head, **(overrides or {}))
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


def small_image_side(model: nn.Module, image_size: tuple[int, int] | None) -> int | None:
    """The side to train small images at from scratch: the data's own (its longer side), raised
    to the smallest the model accepts; None when the images are not small (>= 64 px) or the model's
    default is no larger.

    Upsampling 28x28 digits to an ImageNet model's 224 px costs about 40x the compute for nothing
    the model can use (benchmarks/small_images.py: resnet18 trains at 661 images/s at 28 px against
    19 at 224 px on 2 cores, and reaches its accuracy either way).
    """
    if image_size is None or max(image_size) >= SMALL_IMAGE:
        return None
    default = model.default_cfg.input_size[1]
    side = max(image_size)
    while side < default:
        if _accepts(model, side):
            return side
        side *= 2
    return None


def _accepts(model: nn.Module, side: int) -> bool:
    """Whether a forward pass at side x side works (a 1-image trial in eval mode, mode restored)."""
    was_training = model.training
    channels = model.default_cfg.input_size[0]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, side, side))
        return True
    except (RuntimeError, ValueError):
        return False
    finally:
        model.train(was_training)


def fit_small_images(model: nn.Module, image_size: tuple[int, int] | None) -> None:
    """Train a from-scratch model on small images at their own size (see `small_image_side`),
    saying so on the 'cnnkit' logger; `--img-size` and `--pretrained` skip this."""
    side = small_image_side(model, image_size)
    if side is None:
        return
    cfg = model.default_cfg
    logging.getLogger("cnnkit").info(
        "%dx%d images: training at %d px, not the model's %d px default (from scratch, small images; "
        "--img-size overrides)", image_size[0], image_size[1], side, cfg.input_size[1])
    model.default_cfg = dataclasses.replace(cfg, input_size=(cfg.input_size[0], side, side))
