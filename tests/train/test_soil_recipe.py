"""examples/soil.yaml, the soil case study's recipe: read as written, and run end to end with
tiny settings (resnet18, 32 px, one epoch per phase) on a generated photo folder of 3 classes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from colour_folders import write_colour_folders
from torch import nn

from cnnkit.cli import main
from cnnkit.data.transforms_color import ColorJitter
from cnnkit.data.transforms_geometric import RandomResizedCrop, RandomRotation, RandomVerticalFlip
from cnnkit.inference import load_run
from cnnkit.models.factory import create_model
from cnnkit.models.heads import HeadSpec
from cnnkit.train.finetune import Phase, check_phases, parse_phases
from cnnkit.train.options import resolve
from cnnkit.train.preprocessing import pipelines, resolve_augment

RECIPE = Path(__file__).resolve().parents[2] / "examples" / "soil.yaml"


def test_recipe_reads_as_the_course_wrote_it() -> None:
    names = ["model", "out", "img_size", "pretrained", "augment", "drop_outliers", "model_opt", "head",
             "head_dropout", "phases"]
    args = argparse.Namespace(config=str(RECIPE), **{name: None for name in names})
    config, run = resolve(args, default_model="resnet50")
    assert run.model == "resnet50" and run.img_size == 224 and config.optimizer == "adam"
    assert run.head_spec() == HeadSpec(hidden=(256,), dropout=0.4)
    phases = parse_phases(run.phases)
    assert phases == (Phase("head", 5, lr=1e-3), Phase("layer3+layer4", 10, lr=1e-4), Phase("all", 5, lr=1e-5))
    model = create_model("resnet50", num_classes=6, head=run.head_spec())
    check_phases(model, phases)
    head = model.get_submodule(model.head_path)
    assert [(type(m), getattr(m, "in_features", None)) for m in head] == [
        (nn.Linear, 2048), (nn.ReLU, None), (nn.Dropout, None), (nn.Linear, 256)]
    steps, cfg = resolve_augment(model.default_cfg, run.augment)
    train, _ = pipelines(cfg, steps)
    crop, _, vflip, rotation, jitter = train.sample.transforms[1:]
    assert isinstance(crop, RandomResizedCrop) and crop.size == (224, 224) and crop.scale == (0.7, 1.0)
    assert isinstance(vflip, RandomVerticalFlip) and isinstance(rotation, RandomRotation)
    assert rotation.degrees == (-30.0, 30.0) and isinstance(jitter, ColorJitter) and jitter.hue == (-0.1, 0.1)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 10 RGB 40x48 photos: reddish, greenish and bluish soil-like noise."""
    return write_colour_folders(tmp_path_factory.mktemp("soil"), (("clay", 0), ("loam", 1), ("sand", 2)), images=10,
                                size=(40, 48), noise_below=90, channel_from=150, suffix=".jpg")


def test_recipe_runs_end_to_end(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "soil"
    code = main(["finetune", str(photos), "--config", str(RECIPE), "--model", "resnet18", "--img-size", "32",
                 "--phases", "head:1@1e-3,layer3+layer4:1@1e-4,all:1@1e-5", "--batch-size", "8",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "phase 1/3 (head) epoch 1/1" in printed and "phase 2/3 (layer3+layer4) epoch 1/1" in printed
    assert "phases: 1/3 head 1 epochs @ 0.001, 2/3 layer3+layer4 1 epochs @ 0.0001, 3/3 all 1 epochs @ 1e-05; " \
           "total 3 epochs" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["head"] == {"hidden": [256], "dropout": 0.4, "activation": "relu"}
    assert [p["trainable"] for p in summary["phases"]] == ["head", "layer3+layer4", "all"]
    assert "optimizer: adam" in (out / "phase2-layer3+layer4" / "config.yaml").read_text()
    model, run = load_run(out)
    assert run.class_names == ("clay", "loam", "sand") and run.default_cfg.input_size == (3, 32, 32)
    assert isinstance(model.fc, nn.Sequential) and model.fc[2].p == 0.4 and model.fc[3].out_features == 3


def test_phases_belong_to_finetune(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", str(photos), "--config", str(RECIPE), "--out", str(tmp_path / "r")]) == 2
    assert "are for `cnnkit finetune`" in capsys.readouterr().err
    assert not (tmp_path / "r").exists(), "refused before anything is written"


def test_unfrozen_lr_scale_and_layer_decay_are_used_or_refused(photos: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    """Every unfrozen phase of the recipe has its @LR: --layer-decay was taken and ignored. They can
    also come from YAML like every other flag (they were unknown keys), and are range-checked."""
    out = tmp_path / "r"
    assert main(["finetune", str(photos), "--config", str(RECIPE), "--model", "resnet18", "--img-size", "16",
                 "--phases", "head:1@1e-3,all:1@1e-4", "--batch-size", "8", "--layer-decay", "0.5",
                 "--out", str(out), "--quiet"]) == 2
    assert "layer_decay apply to phases without @LR" in capsys.readouterr().err
    assert not out.exists(), "refused before anything is written"
    config = tmp_path / "decay.yaml"
    config.write_text("phases: head:1,all:1\nlayer_decay: 0.5\nunfrozen_lr_scale: 0.2\n")
    assert main(["train", str(photos), "--config", str(config), "--out", str(out)]) == 2
    assert "layer_decay 0.5" in capsys.readouterr().err
    from cnnkit.train.commands import finetune_phases
    from cnnkit.train.finetune import Phase
    from cnnkit.train.options import RunOptions

    assert finetune_phases(RunOptions("resnet18", phases="head:1,all:1", layer_decay=0.5, unfrozen_lr_scale=0.2)) \
        == (Phase("head", 1), Phase("all", 1, lr_scale=0.2, layer_decay=0.5))
    config.write_text("layer_decay: 0\n")
    assert main(["finetune", str(photos), "--config", str(config), "--out", str(out)]) == 2
    assert "layer_decay must be a number in (0, 1.0], got 0" in capsys.readouterr().err


def test_finetune_and_lr_find_refuse_settings_they_would_ignore(photos: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    """finetune's epochs are its phases'; lr-find sweeps the LR: --epochs and --lr were taken and ignored."""
    out = tmp_path / "r"
    assert main(["finetune", str(photos), "--config", str(RECIPE), "--model", "resnet18", "--img-size", "16",
                 "--phases", "head:1@1e-3", "--batch-size", "8", "--epochs", "20", "--out", str(out), "--quiet"]) == 2
    assert "the epochs come from --phases" in capsys.readouterr().err
    assert not out.exists()
    assert main(["lr-find", str(photos), "--img-size", "16", "--batch-size", "8", "--num-steps", "4", "--lr", "0.1",
                 "--epochs", "3", "--plot", str(tmp_path / "lr.png")]) == 2
    assert "cnnkit lr-find: error: --lr, --epochs do not apply: it sweeps the LR itself" in capsys.readouterr().err
