"""How a run's images become model inputs: the augmentation (a preset or configured steps of
cnnkit.data.augment_config), the train and eval pipelines built from the model's default_cfg,
the on-device batch stage, and the DataBundle the trainer reads."""

from __future__ import annotations

import dataclasses

from cnnkit.data.augment_config import AugmentStep, augment_pipeline, parse_augment, random_crops
from cnnkit.data.loader import BatchMix, BatchTransform, device_stage
from cnnkit.data.mix import CutMix, MixUp
from cnnkit.data.pipeline import Pipeline, augments_by_default, eval_pipeline
from cnnkit.models.base import DefaultCfg
from cnnkit.train.config import TrainConfig
from cnnkit.train.data_prep import PreparedData
from cnnkit.train.fit import DataBundle

Augment = str | tuple[AugmentStep, ...]  # a preset name (PRESETS) or configured steps


def resolve_augment(cfg: DefaultCfg, augment: Augment | None) -> tuple[tuple[AugmentStep, ...], DefaultCfg]:
    """The training steps of a preset or list; `augment=None` picks "standard" for photos and
    "none" for small images. Without random crops the eval view is the whole image too
    (crop_pct 1), so the cfg records that."""
    if augment is None:
        augment = "standard" if augments_by_default(*cfg.input_size[1:]) else "none"
    steps = parse_augment(augment, source="--augment") if isinstance(augment, str) else tuple(augment)
    if not random_crops(steps):
        cfg = dataclasses.replace(cfg, crop_pct=1.0)
    return steps, cfg


def augment_steps(augment: Augment) -> tuple[AugmentStep, ...]:
    """The steps of a preset's name, or the configured steps themselves."""
    return parse_augment(augment, source="augment") if isinstance(augment, str) else tuple(augment)


def pipelines(cfg: DefaultCfg, augment: Augment) -> tuple[Pipeline, Pipeline]:
    """(train, eval) pipelines for the steps (or a preset's name) and cfg of `resolve_augment`."""
    return augment_pipeline(cfg, augment_steps(augment)), eval_pipeline(cfg)


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
    steps = augment_steps(augment)
    train, evaluation = pipelines(cfg, steps)
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
        augment=steps,
    )
