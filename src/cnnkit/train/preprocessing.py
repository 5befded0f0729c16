"""How a run's images become model inputs: the augmentation choice, the train and eval pipelines
built from the model's default_cfg, the on-device batch stage, and the DataBundle the trainer reads."""

from __future__ import annotations

import dataclasses
from typing import Literal

from cnnkit.data.loader import BatchMix, BatchTransform, device_stage
from cnnkit.data.mix import CutMix, MixUp
from cnnkit.data.pipeline import Pipeline, augments_by_default, eval_pipeline, train_pipeline
from cnnkit.models.base import DefaultCfg
from cnnkit.train.config import TrainConfig
from cnnkit.train.data_prep import PreparedData
from cnnkit.train.fit import DataBundle

Augment = Literal["standard", "flip", "none"]


def resolve_augment(cfg: DefaultCfg, augment: Augment | None) -> tuple[Augment, DefaultCfg]:
    """`augment=None` picks "standard" for photos and "none" for small images; without random
    crops the eval view is the whole image too (crop_pct 1), so the cfg records that."""
    if augment is None:
        augment = "standard" if augments_by_default(*cfg.input_size[1:]) else "none"
    if augment != "standard":
        cfg = dataclasses.replace(cfg, crop_pct=1.0)
    return augment, cfg


def pipelines(cfg: DefaultCfg, augment: Augment) -> tuple[Pipeline, Pipeline]:
    """(train, eval) pipelines for a cfg returned by `resolve_augment`."""
    evaluation = eval_pipeline(cfg)
    if augment == "standard":
        return train_pipeline(cfg), evaluation
    if augment == "flip":
        return train_pipeline(cfg, auto_scale=(1.0, 1.0), color_jitter=0.0), evaluation
    return evaluation, evaluation


def batch_stage(pipeline: Pipeline, config: TrainConfig | None, num_classes: int) -> BatchTransform:
    """The on-device part: float conversion + Normalize, then MixUp or CutMix when configured
    (when both are, each batch picks one at random, as timm does)."""
    mixers: list[BatchMix] = []
    if config is not None and config.mixup_alpha > 0:
        mixers.append(MixUp(num_classes, alpha=config.mixup_alpha))
    if config is not None and config.cutmix_alpha > 0:
        mixers.append(CutMix(num_classes, alpha=config.cutmix_alpha))
    return device_stage(pipeline.batch, mixers)


def data_bundle(data: PreparedData, cfg: DefaultCfg, config: TrainConfig, augment: Augment) -> DataBundle:
    train, evaluation = pipelines(cfg, augment)
    classes = len(data.class_names)
    # The decode hint follows the model's preprocessing (timm's order: model, data config, dataset):
    # JPEGs decode at the smallest DCT scale each pipeline needs, as `Predictor` decodes them.
    val, test = data.splits.get("val"), data.splits.get("test")
    return DataBundle(
        train=data.splits["train"].with_decode_hint(train.decode_hint),
        val=None if val is None else val.with_decode_hint(evaluation.decode_hint),
        test=None if test is None else test.with_decode_hint(evaluation.decode_hint),
        train_transform=train.sample, eval_transform=evaluation.sample,
        batch_transform=batch_stage(train, config, classes),
        eval_batch_transform=batch_stage(evaluation, None, classes),
    )
