"""The zoo against its references: published parameter counts, torchvision/timm state-dict names
and numerics (via the committed fixtures of tools/make_reference_fixtures.py), and a smoke test of
every registered model's contract (forward, backward, features, pre-logits, default_cfg).

Tests are grouped per model by pytest (module-scoped `built` fixture), so each model is built once.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from torch import nn

from cnnkit.models.base import ClassifierModel, DefaultCfg
from cnnkit.models.factory import create_model, list_models
from models.reference.name_keyed_fill import fill_probe, name_keyed_state_dict, reference_input
from models.reference.published import SHARED_ZOO_JSON, published_figures

REFERENCE_DIR = Path(__file__).parent / "reference"
MANIFEST = json.loads((REFERENCE_DIR / "manifest.json").read_text())
ZOO: dict[str, dict[str, Any]] = published_figures()
REFERENCE_NAMES: list[str] = MANIFEST["models"]
REGISTERED = list_models()

# zoo.json counts lenet5 with its own head and input; every other entry uses create_model's defaults.
# Models whose own defaults are not ImageNet's 1000 classes on RGB (create_model uses a model's own).
BUILD_KWARGS: dict[str, dict[str, int]] = {
    "lenet5": {"num_classes": 10, "in_chans": 1},
    "compact_cnn": {"num_classes": 9, "in_chans": 1},
    "mnist_cnn": {"num_classes": 10, "in_chans": 1},
    "all_cnn_c": {"num_classes": 10},
}
SMOKE_SIZE_LIMIT = 64  # small inputs keep the smoke test fast; models accept down to this
SMOKE_SIZE: dict[str, int] = {"inception_v3": 80}  # its stem needs >= 75
LOGITS_RELATIVE_TOLERANCE = 1e-8
PREPROCESSING: dict[str, dict[str, Any]] = json.loads((REFERENCE_DIR / "preprocessing.json").read_text())
# Where default_cfg departs from the weights' own preprocessing on purpose, and why.
PREPROCESSING_EXCEPTIONS: dict[str, set[str]] = {
    # Compound scaling gives the paper's 260 (zoo.json's input); torchvision evaluates its port at 288.
    "efficientnet_b2": {"input_size"},
}


class Built(NamedTuple):
    name: str
    model: nn.Module


def build_kwargs(name: str) -> dict[str, int]:
    return BUILD_KWARGS.get(name, {})


def require_registered(name: str) -> None:
    if name not in REGISTERED:
        pytest.skip(f"model {name!r} is not in the registry yet (its family has not landed)")


@pytest.fixture(scope="module")
def built(request: pytest.FixtureRequest) -> Built:
    """Model `request.param` from the registry, float32, built once for all tests of this module."""
    require_registered(request.param)
    return Built(request.param, create_model(request.param))


def on_meta(name: str, **kwargs: int) -> nn.Module:
    """The model's structure without storage or init cost (for shape-only checks)."""
    with torch.device("meta"):
        return create_model(name, **kwargs)


def load_reference(name: str) -> dict[str, Any]:
    with gzip.open(REFERENCE_DIR / f"{name}.json.gz", "rt") as handle:
        return json.load(handle)


def test_fill_matches_the_one_the_fixtures_were_made_with():
    assert fill_probe() == MANIFEST["fill_probe"], (
        f"the name-keyed fill changed (torch RNG stream?); fixtures were made with {MANIFEST['versions']}: "
        "regenerate them with tools/make_reference_fixtures.py"
    )


@pytest.mark.skipif(not SHARED_ZOO_JSON.is_file(), reason=f"{SHARED_ZOO_JSON} not found (no ../shared here)")
def test_committed_figures_are_those_of_shared_zoo_json():
    assert ZOO == json.loads(SHARED_ZOO_JSON.read_text())["models"], "run tools/make_reference_fixtures.py"


def test_every_published_model_is_registered():
    assert sorted(set(ZOO) - set(REGISTERED)) == []


def test_every_torchvision_and_timm_entry_has_a_fixture():
    expected = sorted(name for name, entry in ZOO.items() if entry["source"] in ("torchvision", "timm"))
    assert REFERENCE_NAMES == expected
    absent = [name for name in expected if not (REFERENCE_DIR / f"{name}.json.gz").is_file()]
    assert not absent, f"no fixture for {absent}: run tools/make_reference_fixtures.py"


@pytest.mark.parametrize("built", sorted(ZOO), indirect=True)
def test_parameter_count_matches_published(built: Built):
    count = sum(p.numel() for p in built.model.parameters())
    published = ZOO[built.name]["params"]
    assert count == published, f"{built.name}: {count:,} parameters, published {published:,}"


@pytest.mark.parametrize("built", REFERENCE_NAMES, indirect=True)
def test_state_dict_names_and_shapes_match_reference(built: Built):
    reference = [(key, tuple(shape), dtype) for key, shape, dtype in load_reference(built.name)["state_dict"]]
    ours = [(key, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for key, v in built.model.state_dict().items()]
    missing = sorted({key for key, _, _ in reference} - {key for key, _, _ in ours})
    unexpected = sorted({key for key, _, _ in ours} - {key for key, _, _ in reference})
    assert not missing and not unexpected, f"{built.name}: missing {missing[:5]}, unexpected {unexpected[:5]}"
    shapes = {key: (shape, dtype) for key, shape, dtype in ours}
    wrong = [
        f"{key} {shapes[key]} vs {(shape, dtype)}"
        for key, shape, dtype in reference
        if shapes[key] != (shape, dtype)
    ]
    assert not wrong, f"{built.name}: shape/dtype differs from the reference: {wrong[:5]}"


@pytest.mark.parametrize("built", REFERENCE_NAMES, indirect=True)
def test_state_dict_order_matches_reference(built: Built):
    reference = [key for key, _, _ in load_reference(built.name)["state_dict"]]
    ours = list(built.model.state_dict())
    first = next((i for i, (a, b) in enumerate(zip(ours, reference)) if a != b), min(len(ours), len(reference)))
    window = slice(first, first + 2)
    assert ours == reference, f"{built.name}: order differs from entry {first}: {ours[window]} vs {reference[window]}"


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_aux_heads_state_dict_matches_reference(name: str):
    """With aux_logits=True the layout is that of torchvision's published files (aux heads included)."""
    require_registered(name)
    reference = [(key, tuple(shape), dtype) for key, shape, dtype in load_reference(name)["state_dict_with_aux"]]
    model = on_meta(name, aux_logits=True)
    ours = [(key, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for key, v in model.state_dict().items()]
    assert ours == reference


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_logits_match_reference_after_name_keyed_fill(name: str):
    require_registered(name)
    reference = load_reference(name)
    model = on_meta(name).eval()
    if any(key not in model.state_dict() for key, _ in model.named_buffers()):
        model = create_model(name).double().eval()  # non-persistent buffers hold computed values
    # assign=True swaps the fill's float64 tensors in: no storage or init for the meta skeleton.
    model.load_state_dict(name_keyed_state_dict(model), strict=True, assign=True)
    with torch.no_grad():
        logits = model(reference_input(reference["input_size"]))
    expected = torch.tensor(reference["logits"], dtype=torch.float64)
    assert logits.shape == expected.shape
    error = (logits - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert error <= LOGITS_RELATIVE_TOLERANCE * scale, f"{name}: max |logit error| {error:.3e} vs scale {scale:.3e}"


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_default_cfg_preprocessing_matches_the_weights(name: str):
    """Input size, crop_pct, interpolation and mean/std are those of the torchvision/timm weights
    (tools/make_reference_fixtures.py records them), so their eval preprocessing needs no guess."""
    require_registered(name)
    cfg = on_meta(name).default_cfg
    reference = PREPROCESSING[name]
    ours = {
        "input_size": list(cfg.input_size),
        "crop_pct": pytest.approx(cfg.crop_pct, rel=1e-9),
        "interpolation": cfg.interpolation,
        "mean": pytest.approx(list(cfg.mean), rel=1e-9),
        "std": pytest.approx(list(cfg.std), rel=1e-9),
    }
    checked = set(ours) - PREPROCESSING_EXCEPTIONS.get(name, set())
    wrong = {key: (ours[key], reference[key]) for key in sorted(checked) if ours[key] != reference[key]}
    assert not wrong, f"{name}: default_cfg (ours, {reference['weights']}): {wrong}"


def smoke_input(name: str, cfg: DefaultCfg) -> torch.Tensor:
    channels, height, _ = cfg.input_size
    size = SMOKE_SIZE.get(name, min(height, SMOKE_SIZE_LIMIT))
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("built", REGISTERED, indirect=True)
def test_default_cfg_names_real_first_conv_and_classifier(built: Built):
    model, kwargs = built.model, build_kwargs(built.name)
    assert isinstance(model, ClassifierModel) and isinstance(model.default_cfg, DefaultCfg)
    cfg = model.default_cfg
    first_conv, classifier = model.get_submodule(cfg.first_conv), model.get_submodule(cfg.classifier)
    assert isinstance(first_conv, nn.Conv2d), f"{cfg.first_conv} is a {type(first_conv).__name__}"
    assert isinstance(classifier, (nn.Linear, nn.Conv2d)), f"{cfg.classifier} is a {type(classifier).__name__}"
    assert first_conv.in_channels == cfg.input_size[0] == kwargs.get("in_chans", 3)
    assert classifier.weight.shape[0] == cfg.num_classes == kwargs.get("num_classes", 1000)


@pytest.mark.parametrize("built", REGISTERED, indirect=True)
def test_forward_backward_reach_every_parameter(built: Built):
    model = built.model.train()
    x = smoke_input(built.name, model.default_cfg)
    logits = model(x)
    assert logits.shape == (2, model.default_cfg.num_classes)
    assert torch.isfinite(logits).all()
    model.zero_grad(set_to_none=True)
    logits.square().mean().backward()
    no_grad = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())
    ]
    assert not no_grad, f"{built.name}: no (finite) gradient for {no_grad[:5]}"
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("built", REGISTERED, indirect=True)
def test_features_are_maps_and_pre_logits_feed_the_classifier(built: Built):
    model = built.model.eval()
    x = smoke_input(built.name, model.default_cfg)
    with torch.no_grad():
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
        logits = model.forward_head(features)
        assert torch.equal(logits, model(x))
    assert features.ndim == 4 and features.shape[0] == 2, f"features {tuple(features.shape)}"
    assert pre_logits.ndim == 2 and pre_logits.shape[0] == 2, f"pre-logits {tuple(pre_logits.shape)}"
    classifier = model.get_submodule(model.default_cfg.classifier)
    if isinstance(classifier, nn.Linear):
        assert pre_logits.shape[1] == classifier.in_features


@pytest.mark.parametrize("name", REGISTERED)
def test_builder_honours_num_classes_and_in_chans(name: str):
    model = on_meta(name, num_classes=7, in_chans=2)
    cfg = model.default_cfg
    assert (cfg.num_classes, cfg.input_size[0]) == (7, 2)
    assert model.get_submodule(cfg.first_conv).weight.shape[1] == 2
    assert model.get_submodule(cfg.classifier).weight.shape[0] == 7


@pytest.mark.parametrize("built", REGISTERED, indirect=True)
def test_feature_layer_output_is_the_feature_map(built: Built):
    """default_cfg.feature_layer names a module whose output (a forward hook) is forward_features(x)."""
    model = built.model.eval()
    layer = model.default_cfg.feature_layer
    assert layer, f"{built.name} declares no default_cfg.feature_layer"
    captured: list[torch.Tensor] = []
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _i, out: captured.append(out.clone()))
    try:
        with torch.no_grad():
            features = model.forward_features(smoke_input(built.name, model.default_cfg))
    finally:
        handle.remove()
    assert len(captured) == 1, f"{layer} ran {len(captured)} times"
    assert captured[0].ndim == 4 and torch.equal(captured[0], features)
