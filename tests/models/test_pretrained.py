"""Loading local weight files: safe formats, strict names, classifier and first-conv adaptation."""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.layers.conv_norm_act import ConvNormAct
from cnnkit.models.adapt import adapt_input_conv
from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.pretrained import load_pretrained, read_state_dict
from cnnkit.models.factory import create_model
from cnnkit.models.registry import register_model, unregister_model

TEST_MODEL = "zoo_infra_tiny_test_net"


class TinyNet(ClassifierModel):
    """(N, in_chans, 16, 16) -> (N, num_classes), with a nested classifier path to exercise dotted paths."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, 16, 16), first_conv="stem.0", classifier="head.fc", num_classes=num_classes
        )
        self.stem = ConvNormAct(in_chans, 8, 3)
        self.body = ConvNormAct(8, 16, 3, stride=2)
        self.head = nn.Module()
        self.head.fc = nn.Linear(16, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head.fc(x)


def zoo_infra_tiny_test_net(num_classes: int = 10, in_chans: int = 3) -> TinyNet:
    return TinyNet(num_classes, in_chans)


@pytest.fixture
def tiny_name() -> Iterator[str]:
    """TinyNet registered under a test-only name, removed afterwards."""
    register_model(TEST_MODEL, zoo_infra_tiny_test_net)
    yield TEST_MODEL
    unregister_model(TEST_MODEL)


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """`model` with every float tensor (BN statistics included) random, in eval mode, as after training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=generator) + (0.5 if "running_var" in key else -0.5))
    return model.eval()


def images(channels: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(2, channels, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def source(tiny_name: str) -> nn.Module:
    return trained_like(create_model(tiny_name))


def save(state: dict[str, Any], path: Path) -> Path:
    """Write `state` as safetensors or with torch.save, by the file's suffix."""
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize(
    "filename, wrap",
    [
        ("w.safetensors", lambda s: s),
        ("w.pth", lambda s: s),
        ("w.pt", lambda s: {"model": s, "epoch": 3}),
        ("w.bin", lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()}}),
        # torch.compile's OptimizedModule names every key '_orig_mod.<key>' (checked against
        # torch.compile(model).state_dict() in test_compiled_models_prefix_every_key_with_orig_mod).
        ("compiled.safetensors", lambda s: {f"_orig_mod.{k}": v for k, v in s.items()}),
        ("compiled.pt", lambda s: {f"_orig_mod.{k}": v for k, v in s.items()}),
        ("ddp-compiled.pt", lambda s: {"model": {f"module._orig_mod.{k}": v for k, v in s.items()}}),
        ("compiled-ddp.safetensors", lambda s: {f"_orig_mod.module.{k}": v for k, v in s.items()}),
    ],
    ids=[
        "safetensors",
        "pth-raw",
        "pt-model-entry",
        "bin-ddp-state-dict-entry",
        "compiled-safetensors",
        "compiled-pt",
        "ddp-of-compiled-pt",
        "compiled-ddp-safetensors",
    ],
)
def test_saved_weights_load_strictly_and_give_identical_logits(tiny_name, source, tmp_path, filename, wrap):
    path = save(wrap(source.state_dict()), tmp_path / filename)
    loaded = create_model(tiny_name, pretrained=path).eval()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        assert torch.equal(loaded(images()), source(images()))


def test_compiled_models_prefix_every_key_with_orig_mod(tiny_name, source):
    # Wrapping only: the state dict of torch.compile's OptimizedModule needs no compilation.
    compiled = torch.compile(source)
    assert list(compiled.state_dict()) == [f"_orig_mod.{key}" for key in source.state_dict()]


def test_only_a_prefix_shared_by_every_key_is_stripped(tmp_path):
    state = {"_orig_mod.weight": torch.ones(1), "bias": torch.zeros(1)}
    assert sorted(read_state_dict(save(state, tmp_path / "mixed.pt"))) == ["_orig_mod.weight", "bias"]


def test_other_num_classes_reinitialises_only_the_classifier(tiny_name, source, tmp_path, caplog):
    path = save(source.state_dict(), tmp_path / "w.safetensors")
    caplog.set_level(logging.INFO, logger="cnnkit")
    loaded = create_model(tiny_name, num_classes=4, pretrained=path)
    assert loaded.head.fc.weight.shape == (4, 16)
    assert loaded.default_cfg.num_classes == 4
    for key, value in source.state_dict().items():
        if not key.startswith("head.fc."):
            assert torch.equal(loaded.state_dict()[key], value), key
    messages = [r.getMessage() for r in caplog.records if r.name == "cnnkit"]
    assert len(messages) == 1 and "head.fc" in messages[0] and "4 classes" in messages[0], messages


def test_one_input_channel_equals_summing_rgb(tiny_name, source, tmp_path, caplog):
    path = save(source.state_dict(), tmp_path / "w.pth")
    caplog.set_level(logging.INFO, logger="cnnkit")
    grey_model = create_model(tiny_name, in_chans=1, pretrained=path).eval()
    grey = images(channels=1)
    with torch.no_grad():
        torch.testing.assert_close(grey_model(grey), source(grey.repeat(1, 3, 1, 1)))
    assert any("from 3 to 1 input channels" in r.getMessage() for r in caplog.records)


def test_five_input_channels_repeat_rgb_scaled_by_three_fifths(tiny_name, source, tmp_path):
    path = save(source.state_dict(), tmp_path / "w.safetensors")
    model = create_model(tiny_name, in_chans=5, num_classes=3, pretrained=path).eval()
    rgb = source.stem[0].weight
    assert model.stem[0].weight.shape == (8, 5, 3, 3)
    torch.testing.assert_close(model.stem[0].weight, torch.cat([rgb, rgb[:, :2]], dim=1) * 3 / 5)
    with torch.no_grad():
        assert model(images(channels=5)).shape == (2, 3)


class PlantsMarker:
    """A pickle payload that creates a file when unpickled: the attack weights_only=True stops."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    live = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(PlantsMarker(live)))  # the payload is live: plain unpickling runs it
    assert live.exists()
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(1), "payload": PlantsMarker(marker)}, path)
    with pytest.raises(CnnkitError, match="refused to load .*evil.pth"):
        read_state_dict(path)
    assert not marker.exists()


def test_missing_file_is_named(tiny_name, tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(CnnkitError, match="nowhere.safetensors not found"):
        create_model(tiny_name, pretrained=missing)


def test_unsupported_and_corrupt_files_are_named(tmp_path):
    text = tmp_path / "weights.txt"
    text.write_text("not weights")
    with pytest.raises(CnnkitError, match="weights.txt: unsupported weight file type '.txt'"):
        read_state_dict(text)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(CnnkitError, match="corrupt.safetensors"):
        read_state_dict(corrupt)
    no_tensors = save({"epoch": torch.tensor(3), "note": "x"}, tmp_path / "notes.pth")
    with pytest.raises(CnnkitError, match="notes.pth: entries that are not tensors: note"):
        read_state_dict(no_tensors)


def test_mismatched_keys_are_listed(tiny_name, source, tmp_path):
    state = dict(source.state_dict())
    state["extra.weight"] = state.pop("body.0.weight")
    path = save(state, tmp_path / "renamed.safetensors")
    expected = r"renamed.safetensors does not fit TinyNet: missing keys: body.0.weight; unexpected keys: extra.weight"
    with pytest.raises(CnnkitError, match=expected):
        create_model(tiny_name, pretrained=path)


def test_reset_classifier_replaces_head_reproducibly(tiny_name, source):
    before = {k: v.clone() for k, v in source.state_dict().items()}
    models = [trained_like(create_model(tiny_name)) for _ in range(2)]
    for model in models:
        model.reset_classifier(7, generator=torch.Generator().manual_seed(5))
    assert torch.equal(models[0].head.fc.weight, models[1].head.fc.weight)
    source.reset_classifier(7)
    assert source.head.fc.weight.shape == (7, 16) and source.default_cfg.num_classes == source.num_classes == 7
    assert source.head.fc.weight.abs().max() <= 1 / 16**0.5
    for key, value in source.state_dict().items():
        if not key.startswith("head.fc."):
            assert torch.equal(value, before[key]), key
    with pytest.raises(CnnkitError, match="num_classes must be an int >= 0, got -1"):
        source.reset_classifier(-1)


def test_zero_classes_from_a_weight_file_keep_its_backbone(tiny_name, source, tmp_path, caplog):
    """timm's `create_model(name, pretrained=True, num_classes=0)`: the file's backbone, no classifier;
    the note says the file's classifier was dropped (it said: re-initialised for the default count)."""
    path = save(source.state_dict(), tmp_path / "w.safetensors")
    caplog.set_level(logging.INFO, logger="cnnkit")
    model = create_model(tiny_name, num_classes=0, pretrained=path).eval()
    assert [r.getMessage() for r in caplog.records if r.name == "cnnkit"] == [
        f"{path}: classifier 'head.fc' dropped: the model has no classifier (file has 10)"]
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith("head.fc.")}
    assert model.state_dict().keys() == expected.keys()
    assert all(torch.equal(model.state_dict()[key], value) for key, value in expected.items())
    with torch.no_grad():
        torch.testing.assert_close(model(images()), source.forward_head(source.forward_features(images()), True))
    notes = load_pretrained(create_model(tiny_name, num_classes=0), path)
    assert notes == [f"{path}: classifier 'head.fc' dropped: the model has no classifier (file has 10)"]


def test_adapt_input_conv_follows_timm_rules():
    weight = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(adapt_input_conv(weight, 1), weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(adapt_input_conv(weight, 2), weight[:, :2] * 1.5)
    torch.testing.assert_close(adapt_input_conv(weight, 7), weight[:, [0, 1, 2, 0, 1, 2, 0]] * 3 / 7)
    with pytest.raises(ValueError, match="cannot adapt a 4-channel conv weight to 5 channels"):
        adapt_input_conv(torch.zeros(2, 4, 3, 3), 5)


@pytest.fixture(scope="module")
def googlenet_file_with_aux_heads(tmp_path_factory) -> tuple[Path, nn.Module]:
    """A GoogLeNet weight file as torchvision publishes it: main net plus aux1/aux2 heads."""
    source = trained_like(create_model("googlenet", aux_logits=True), seed=3)
    return save(source.state_dict(), tmp_path_factory.mktemp("googlenet") / "googlenet.pth"), source


def test_a_file_with_aux_heads_loads_into_the_model_without_them(googlenet_file_with_aux_heads, caplog):
    """As torchvision does with its own file: the aux heads are dropped (they were 'unexpected keys')."""
    path, source = googlenet_file_with_aux_heads
    caplog.set_level(logging.INFO, logger="cnnkit")
    model = create_model("googlenet", pretrained=path).eval()
    assert not hasattr(model, "aux1")
    with torch.no_grad():
        torch.testing.assert_close(model(torch.ones(1, 3, 64, 64)), source(torch.ones(1, 3, 64, 64)))
    messages = [r.getMessage() for r in caplog.records if r.name == "cnnkit"]
    note = "auxiliary head '{}' dropped (10 entries; no aux_logits)"
    assert messages == [f"{path}: {note.format(head)}" for head in ("aux1", "aux2")]


def test_other_num_classes_resizes_the_aux_classifiers_too(googlenet_file_with_aux_heads):
    """aux1.fc2/aux2.fc2 are re-initialised like fc (they were a shape-mismatch error); the rest loads."""
    path, source = googlenet_file_with_aux_heads
    model = create_model("googlenet", num_classes=5, aux_logits=True, pretrained=path)
    fresh = ("fc.", "aux1.fc2.", "aux2.fc2.")
    assert model.aux1.fc2.weight.shape == model.aux2.fc2.weight.shape == (5, 1024)
    for key, value in source.state_dict().items():
        if not key.startswith(fresh):
            assert torch.equal(model.state_dict()[key], value), key


def test_a_file_without_batch_norm_counters_loads_as_torch_loads_it(tiny_name, source, tmp_path):
    """torchvision's original weight files (saved before PyTorch 0.4.1) have no num_batches_tracked;
    load_state_dict(strict=True) fills them, and so must create_model (it listed them as missing)."""
    counters = [key for key in source.state_dict() if key.endswith("num_batches_tracked")]
    assert counters, "TinyNet has BatchNorms"
    state = {key: value for key, value in source.state_dict().items() if key not in counters}
    create_model(tiny_name).load_state_dict(state, strict=True)  # what torch itself accepts
    loaded = create_model(tiny_name, pretrained=save(state, tmp_path / "old.pth")).eval()
    assert all(int(loaded.state_dict()[key]) == 0 for key in counters)
    with torch.no_grad():
        assert torch.equal(loaded(images()), source(images()))


def test_torchvision_densenet_files_with_legacy_layer_names_load(tmp_path):
    """torchvision's published DenseNet files (densenet121-a639ec97.pth) say 'denselayer1.norm.1.weight'
    for 'denselayer1.norm1.weight' and hold no num_batches_tracked (torchvision renames on loading);
    they were refused as missing/unexpected keys."""
    from cnnkit.models.densenet import DENSENET_CFG, DenseNet, DenseNetConfig

    source = trained_like(DenseNet(DenseNetConfig(4, (2, 2), 8), DENSENET_CFG, num_classes=3))
    legacy = {
        re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", key): value
        for key, value in source.state_dict().items()
        if not key.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    model = DenseNet(DenseNetConfig(4, (2, 2), 8), DENSENET_CFG, num_classes=3)
    assert load_pretrained(model, save(legacy, tmp_path / "densenet.pth")) == []
    with torch.no_grad():
        assert torch.equal(model.eval()(torch.ones(1, 3, 32, 32)), source(torch.ones(1, 3, 32, 32)))
