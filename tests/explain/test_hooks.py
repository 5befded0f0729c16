"""The tensor hook registered inside the forward hook is safe with in-place activations after the
target layer: on zoo models (ResNet, MobileNetV2, DenseNet) its gradient and activation equal
those of a copy of the same model whose activations are not in place."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cnnkit.explain.activation_maps import cam
from cnnkit.explain.hooks import capture_output
from explain.reference_models import filled
from models.reference.name_keyed_fill import reference_input

TARGET = 3


def out_of_place_copy(model: nn.Module) -> nn.Module:
    """The same weights with every `inplace=True` activation switched to out of place."""
    twin = copy.deepcopy(model)
    changed = 0
    for module in twin.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
            changed += 1
    assert changed, "the model has no in-place activation: the test would prove nothing"
    return twin


def reference_capture(model: nn.Module, layer: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(activation, d logit[TARGET] / d activation) by plain autograd on the kept output tensor."""
    kept = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: kept.append(o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(logits[:, TARGET].sum(), kept[0])
    return kept[0].detach(), gradient


def hooked_capture(model: nn.Module, layer: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with capture_output(dict(model.named_modules())[layer], layer, gradients=True) as capture:
        logits = model(x.clone().requires_grad_(True))
        gradient = capture.backward(logits[:, TARGET].sum())
    return capture.output(), gradient


# Each layer is followed by an in-place activation: ReLU(inplace=True) after ResNet's bn1 and a
# BasicBlock's bn1, ReLU6(inplace=True) after MobileNetV2's BatchNorms, DenseNet's relu5 after
# norm5 and a dense layer's relu1 after its norm1; last, the model's default (feature) layer.
CASES = {
    "resnet18": ("bn1", "layer1.0.bn1", "layer4"),
    "mobilenet_v2": ("features.0.1", "features.18.1", "features"),
    "densenet121": ("features.denseblock4.denselayer16.norm1", "features.norm5", "features"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradient_and_activation_equal_those_of_an_out_of_place_copy(name):
    model = filled(name)
    twin = out_of_place_copy(model)
    x = reference_input(32)
    for layer in CASES[name]:
        expected_activation, expected_gradient = reference_capture(twin, layer, x)
        activation, gradient = hooked_capture(model, layer, x)
        assert float(gradient.abs().max()) > 0, layer
        assert torch.allclose(activation, expected_activation, rtol=0, atol=1e-12), layer
        assert torch.allclose(gradient, expected_gradient, rtol=0, atol=1e-12), layer
        if layer != CASES[name][-1]:  # an in-place ReLU follows it: values it would have clipped
            assert float(expected_activation.min()) < 0, layer
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())
    for method in ("hirescam", "layercam"):
        ours = cam(model, x, method=method, target_layer=CASES[name][1], classes=TARGET, normalize=False)
        theirs = cam(twin, x, method=method, target_layer=CASES[name][1], classes=TARGET, normalize=False)
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-12), method


def test_a_naive_gradient_after_the_in_place_relu_would_differ():
    """What the hook avoids: the output tensor itself, after ReLU(inplace=True), holds the clipped
    values, and its gradient is the one after the ReLU, not the layer's."""
    model = filled("resnet18")
    x = reference_input(32)
    kept = []
    handle = model.bn1.register_forward_hook(lambda m, i, o: kept.append(o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    naive = torch.autograd.grad(logits[:, TARGET].sum(), kept[0])[0]
    activation, gradient = hooked_capture(model, "bn1", x)
    assert float(kept[0].detach().min()) == 0 and float(activation.min()) < 0
    assert not torch.allclose(naive, gradient)


def test_frozen_parameters_still_give_gradients_and_keep_their_flags():
    model = filled("resnet18")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    x = reference_input(32)
    twin = out_of_place_copy(model)
    for parameter in twin.parameters():
        parameter.requires_grad_(True)
    _, expected_gradient = reference_capture(twin, "layer3", x)
    _, gradient = hooked_capture(model, "layer3", x)
    assert torch.allclose(gradient, expected_gradient, rtol=0, atol=1e-12)
    assert float(cam(model, x, target_layer="layer3", classes=TARGET).std()) > 0
    assert not any(p.requires_grad for p in model.parameters())


class FailsAfterTheTarget(nn.Module):
    """The forward raises after the target layer ran (its tensor hook is already registered); the
    ReLU is out of place, so the test can read the hooks left on the layer's output tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.relu(self.conv(x))
        raise RuntimeError("the head is broken")


def test_a_forward_that_raises_after_the_target_leaves_no_forward_or_tensor_hook():
    model = FailsAfterTheTarget().train()
    model.conv.bias.requires_grad_(False)
    outputs = []
    spy = model.conv.register_forward_hook(lambda m, i, o: outputs.append(o))
    with pytest.raises(RuntimeError, match="the head is broken"):
        cam(model, torch.randn(1, 1, 6, 6), target_layer="conv", classes=0)
    spy.remove()
    assert not outputs[0]._backward_hooks, "the tensor hook on the layer's output was removed"
    assert all(not m._forward_hooks for m in model.modules())
    assert model.training and model.conv.training and [p.requires_grad for p in model.parameters()] == [True, False]
