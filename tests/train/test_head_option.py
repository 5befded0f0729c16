"""`--head mlp:256 --head-dropout 0.4`: built with HeadSpec, stored in the run, rebuilt by load_run."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from cnnkit.errors import CnnkitError
from cnnkit.inference import load_run
from cnnkit.models.heads import HeadSpec
from cnnkit.train.config import TrainConfig
from cnnkit.train.fit import DataBundle, RunInfo, fit
from cnnkit.train.model_setup import build_model
from cnnkit.train.options import resolve
from cnnkit.train.run_summary import read_summary


def _images(n: int = 24, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.rand(n, 3, 16, 16, generator=generator)
    images[:, 0] += labels.view(-1, 1, 1).float() / 3
    return TensorDataset(images, labels)


def test_trained_mlp_head_comes_back_with_equal_logits(tmp_path: Path) -> None:
    spec = HeadSpec.parse("mlp:16", dropout=0.4)
    model = build_model("compact_cnn", num_classes=3, in_chans=3, seed=0, img_size=16, head=spec)
    head = model.get_submodule(model.head_path)
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear] and head[2].p == 0.4
    info = RunInfo.for_model("compact_cnn", model, ["a", "b", "c"], head=spec)
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-3, optimizer="adam", channels_last=False)
    summary = fit(model, DataBundle(train=_images()), config, info, run_dir=tmp_path / "run", quiet=True)
    assert summary.head == spec
    assert read_summary(tmp_path / "run").head == summary.head
    loaded, _ = load_run(tmp_path / "run")
    loaded_head = loaded.get_submodule(loaded.head_path)
    assert [type(m) for m in loaded_head] == [type(m) for m in head] and loaded_head[2].p == 0.4
    batch = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    trained = model.state_dict()
    assert all(torch.equal(value, trained[name]) for name, value in loaded.state_dict().items())
    with torch.no_grad():  # load_run's model is channels_last: the same sums in another order
        torch.testing.assert_close(loaded(batch), model.eval()(batch), rtol=1e-5, atol=1e-6)


def _args(**given) -> argparse.Namespace:
    names = ["config", "model", "out", "img_size", "pretrained", "augment", "drop_outliers", "model_opt",
             "head", "head_dropout"]
    return argparse.Namespace(**{name: given.get(name) for name in names})


def test_head_from_flags_and_yaml(tmp_path: Path) -> None:
    _, run = resolve(_args(head="mlp:256", head_dropout=0.4), default_model="resnet18")
    assert run.head_spec() == HeadSpec(hidden=(256,), dropout=0.4)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("head: mlp:512,256\nhead_dropout: 0.2\n")
    _, run = resolve(_args(config=str(recipe)), default_model="resnet18")
    assert run.head_spec() == HeadSpec(hidden=(512, 256), dropout=0.2)
    _, run = resolve(_args(config=str(recipe), head_dropout=0.5), default_model="resnet18")
    assert run.head_spec().dropout == 0.5, "a flag wins over the YAML file"
    _, run = resolve(_args(), default_model="resnet18")
    assert run.head_spec() is None


def test_bad_head_is_an_error_naming_the_form() -> None:
    with pytest.raises(CnnkitError, match="mlp:WIDTH"):
        resolve(_args(head="mlp256"), default_model="resnet18")
    with pytest.raises(CnnkitError, match="dropout"):
        resolve(_args(head="mlp:8", head_dropout=1.5), default_model="resnet18")
