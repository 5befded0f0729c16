"""Small images trained from scratch run at their own size, not upsampled to an ImageNet default."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import cnnkit
from cnnkit.cli import main
from cnnkit.inference import read_summary
from cnnkit.train.model_setup import small_image_side


@pytest.mark.parametrize(("name", "image", "side"), [
    ("resnet18", (28, 28), 28),  # the data's own size (layer4 on 1x1 maps still trains fast)
    ("resnet18", (24, 30), 30),  # non-square: the longer side
    ("compact_cnn", (28, 28), 28),  # below its 32 px default too
    ("inception_v3", (28, 28), 112),  # 28 and 56 are too small for its stem: the smallest that runs
    ("resnet18", (96, 96), None),  # not small: the model's own default stays
    ("mnist_cnn", (28, 28), None),  # already the model's default
])
def test_the_side_follows_the_data_and_what_the_model_accepts(name, image, side) -> None:
    model = cnnkit.create_model(name, num_classes=3, in_chans=1)
    assert small_image_side(model, image) == side
    assert model.training, "the trial forward restores the mode"


def test_cnnkit_train_says_what_it_chose_and_img_size_overrides(tiny_folder: Path, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    base = ["train", str(tiny_folder), "--model", "resnet18", "--epochs", "1", "--batch-size", "8", "--quiet"]
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert "16x16 images: training at 16 px, not the model's 224 px default" in caplog.text
    assert read_summary(tmp_path / "a").default_cfg.input_size == (3, 16, 16)
    assert main([*base, "--out", str(tmp_path / "b"), "--img-size", "32"]) == 0
    assert read_summary(tmp_path / "b").default_cfg.input_size == (3, 32, 32)
