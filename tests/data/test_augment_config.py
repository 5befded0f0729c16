"""Augmentation from configuration: presets equal the pipelines they name, the soil recipe's
list builds the transforms it says, and bad names or values are errors listing the valid ones."""

from __future__ import annotations

import pytest
import torch

from cnnkit.data.augment_config import AUGMENTS, augment_pipeline, parse_augment, random_crops
from cnnkit.data.pipeline import eval_pipeline, train_pipeline
from cnnkit.data.transforms_color import ColorJitter
from cnnkit.data.transforms_erasing import RandomErasing
from cnnkit.data.transforms_geometric import (
    CenterCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomRotation,
    RandomVerticalFlip,
    Resize,
    rotate,
)
from cnnkit.errors import CnnkitError
from cnnkit.models.base import DefaultCfg
from cnnkit.train.preprocessing import resolve_augment

CFG = DefaultCfg(input_size=(3, 24, 24), crop_pct=0.875)
SOIL = [{"random_resized_crop": {"size": 24, "scale": [0.7, 1.0]}}, {"hflip": 0.5}, {"vflip": 0.5},
        {"rotate": 30}, {"color_jitter": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.1}}]


def _image(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (3, 40, 52), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _run(pipeline, seed: int = 3) -> torch.Tensor:
    return pipeline(_image(), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("preset, reference", [
    ("standard", lambda cfg: train_pipeline(cfg)),
    ("flip", lambda cfg: train_pipeline(cfg, auto_scale=(1.0, 1.0), color_jitter=0.0)),
    ("none", eval_pipeline),
])
def test_presets_are_the_pipelines_they_name(preset: str, reference) -> None:
    steps, cfg = resolve_augment(CFG, preset)
    ours, theirs = augment_pipeline(cfg, steps), reference(cfg)
    assert repr(ours.sample) == repr(theirs.sample) and ours.decode_hint == theirs.decode_hint
    for seed in range(3):
        assert torch.equal(_run(ours, seed), _run(theirs, seed))
    assert cfg.crop_pct == (0.875 if preset == "standard" else 1.0), "whole-image training -> whole-image eval"


def test_soil_list_builds_its_transforms_in_order() -> None:
    steps = parse_augment(SOIL)
    assert random_crops(steps)
    pipeline = augment_pipeline(CFG, steps)
    crop, hflip, vflip, rotation, jitter = pipeline.sample.transforms[1:]
    assert isinstance(crop, RandomResizedCrop) and crop.size == (24, 24) and crop.scale == (0.7, 1.0)
    assert isinstance(hflip, RandomHorizontalFlip) and isinstance(vflip, RandomVerticalFlip) and vflip.p == 0.5
    assert isinstance(rotation, RandomRotation) and rotation.degrees == (-30.0, 30.0)
    assert rotation.interpolation == "bilinear"
    assert isinstance(jitter, ColorJitter) and jitter.brightness == (0.7, 1.3) and jitter.hue == (-0.1, 0.1)
    out = _run(pipeline)
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    assert torch.equal(out, _run(pipeline)) and not torch.equal(out, _run(pipeline, seed=4))


def test_rotate_step_is_bilinear_rotation_by_a_drawn_angle() -> None:
    (step,) = parse_augment([{"rotate": {"degrees": [90, 90]}}])
    image = _image()[:, :40, :40]
    turned = step.build(CFG)(image, generator=torch.Generator())
    assert torch.equal(turned, rotate(image, 90.0, interpolation="bilinear"))
    # A quarter turn of a square image is exact: the pixels of torch.rot90 (counter-clockwise).
    assert torch.equal(rotate(image, 90.0, interpolation="bilinear"), torch.rot90(image, 1, dims=(-2, -1)))


def test_shorthands_and_stages() -> None:
    steps = parse_augment(["hflip", {"color_jitter": 0.2}, {"random_erasing": 1.0}, {"resize": 30}])
    assert steps[0].params.p == 0.5
    assert (steps[1].params.brightness, steps[1].params.contrast, steps[1].params.hue) == (0.2, 0.2, 0.0)
    pipeline = augment_pipeline(CFG, steps)
    kinds = [type(t) for t in pipeline.sample.transforms[1:]]
    assert kinds == [RandomHorizontalFlip, ColorJitter, Resize, Resize, CenterCrop], "ends at the input size"
    assert isinstance(pipeline.batch.transforms[-1], RandomErasing), "erasing runs after Normalize"
    assert _run(pipeline).shape == (3, 24, 24)


@pytest.mark.parametrize("value, message", [
    ([{"rotation": 30}], "unknown transform 'rotation'; valid: " + ", ".join(AUGMENTS)),
    ([{"hflip": {"prob": 0.5}}], "hflip has no parameter 'prob'; its parameters: p"),
    ([{"color_jitter": {"hue": 0.7}}], "color_jitter"),
    ([{"random_resized_crop": {"scale": [0.5, 2.0]}}], "random_resized_crop"),
    ([{"rotate": "thirty"}], "rotate.degrees"),
    ([{"rotate": {"interpolation": "bicubic"}}], "must be one of"),
    ([{"hflip": 0.5, "vflip": 0.5}], "one-key mapping"),
    ("fancy", "unknown preset 'fancy'; presets: standard, flip, none"),
])
def test_bad_configuration_is_an_error_listing_the_valid_names(value, message: str) -> None:
    with pytest.raises(CnnkitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_augment(value)


def test_crop_to_another_size_than_the_model_input_is_an_error() -> None:
    steps = parse_augment([{"random_resized_crop": {"size": 224}}])
    with pytest.raises(CnnkitError, match=r"\(224, 224\) but the model's input is \(24, 24\)"):
        augment_pipeline(CFG, steps)
