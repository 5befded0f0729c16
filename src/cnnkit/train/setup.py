"""From a data path and a model name to datasets, transforms and a model that fit each other.

Shared by `cnnkit train`, `finetune`, `lr-find`, `eval` and `predict`: the number of input
channels and classes comes from the data; preprocessing comes from the model's default_cfg.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from cnnkit.data.loader import BatchMix, BatchTransform, device_stage
from cnnkit.data.mix import CutMix, MixUp
from cnnkit.data.pipeline import Pipeline, augments_by_default, eval_pipeline, train_pipeline
from cnnkit.data.sources import DataSource, open_source
from cnnkit.data.splits import load_split, save_split, split_of
from cnnkit.data.stats import channel_stats
from cnnkit.errors import CnnkitError
from cnnkit.models.base import DefaultCfg
from cnnkit.models.channel_plan import apply_channel_plan
from cnnkit.models.factory import create_model
from cnnkit.train.config import TrainConfig
from cnnkit.train.fit import DataBundle, RunInfo

Augment = Literal["standard", "flip", "none"]


@dataclass(frozen=True)
class PreparedData:
    source: DataSource
    splits: dict[str, Any]  # name -> dataset of uint8 (C, H, W) images
    in_chans: int
    class_names: list[str]


def prepare_data(path: str, *, seed: int, run_dir: Path | None = None, saved_split: Path | None = None,
                 **source_options: Any) -> PreparedData:
    """Open `path` (`source_options` go to `open_source`), take its given train/val/test splits or
    cut a stratified 70/15/15 one, saved to RUN/split.json. `saved_split` (a run's split.json, for
    resume and eval) is reused instead of cutting anew, and refused if the data changed since."""
    source = open_source(path, seed=seed, **source_options)
    if source.has_given_splits:
        splits = {name: source.dataset(name) for name in source.splits}
        if "train" not in splits:
            raise CnnkitError(f"{path}: has splits {sorted(splits)} but no 'train'")
        record: dict[str, Any] = {"given": {name: len(ds) for name, ds in splits.items()}}
        if run_dir is not None:
            (run_dir / "split.json").write_text(json.dumps(record, indent=2))
    else:
        whole = source.dataset()
        reuse = saved_split is not None and saved_split.is_file()
        split = load_split(saved_split) if reuse else split_of(whole, seed=seed)
        splits = split.subsets(whole)
        if run_dir is not None and not reuse:
            save_split(split, run_dir / "split.json")
    image, _ = splits["train"][0]
    return PreparedData(source, splits, int(image.shape[0]), list(source.classes))


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
    return DataBundle(
        train=data.splits["train"], val=data.splits.get("val"), test=data.splits.get("test"),
        train_transform=train.sample, eval_transform=evaluation.sample,
        batch_transform=batch_stage(train, config, classes),
        eval_batch_transform=batch_stage(evaluation, None, classes),
    )


def run_info(model_name: str, model: nn.Module, data: PreparedData, overrides: dict[str, Any]) -> RunInfo:
    return RunInfo(model_name=model_name, class_names=data.class_names,
                   default_cfg=model.default_cfg.to_dict(), model_overrides=overrides)


def load_run(run_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained model from RUN/summary.json and RUN/best.safetensors, in eval mode."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise CnnkitError(f"{run_dir} is not a finished run: {summary_path.name} is missing")
    summary = json.loads(summary_path.read_text())
    cfg = summary["default_cfg"]
    model = create_model(summary["model_name"], num_classes=len(summary["class_names"]),
                         in_chans=cfg["input_size"][0], **summary.get("model_overrides", {}))
    if summary.get("channel_plan"):  # a channel-pruned run (cnnkit prune --structured channels)
        apply_channel_plan(model, summary["channel_plan"])
    weights = run_dir / "best.safetensors"
    if not weights.is_file():
        raise CnnkitError(f"{run_dir} has no {weights.name}: the run finished no epoch")
    model.load_state_dict(load_file(weights))
    model.default_cfg = DefaultCfg(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    # channels_last: 1.1-1.8x faster inference on CPU for the zoo (benchmarks/zoo_speed.py).
    return model.eval().to(memory_format=torch.channels_last), summary
