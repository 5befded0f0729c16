"""Class activation maps against pytorch-grad-cam and captum (fixtures), hook safety, the zoo."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.explain.activation_maps import cam
from cnnkit.explain.layers import default_layer_name
from cnnkit.inference import Predictor
from explain.reference_models import (SCORECAM_TARGETS, TARGETS, compact_input, filled, max_difference,
                                      resnet_input)

MAP_TOLERANCE = 1e-4


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"])
def test_gradient_methods_equal_pytorch_grad_cam(resnet, expected, method):
    ours = cam(resnet, resnet_input(), method=method, target_layer="layer4", classes=TARGETS)
    assert ours.shape == (2, 64, 64)
    assert max_difference(ours, expected[f"layer4/{method}"]) < MAP_TOLERANCE


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_a_middle_layer_by_module_equals_pytorch_grad_cam(resnet, expected, method):
    ours = cam(resnet, resnet_input(), method=method, target_layer=resnet.layer3, classes=TARGETS)
    assert max_difference(ours, expected[f"layer3/{method}"]) < MAP_TOLERANCE


def test_gradcam_equals_captum_layer_gradcam_upsampled_and_min_maxed(resnet, expected):
    ours = cam(resnet, resnet_input(), method="gradcam", target_layer="layer4", classes=TARGETS)
    assert max_difference(ours, expected["layer4/captum_gradcam"]) < MAP_TOLERANCE


def test_eigencam_equals_pytorch_grad_cam_up_to_sign(resnet, expected):
    ours = cam(resnet, resnet_input(), method="eigencam", target_layer="layer4")
    for index in range(2):
        errors = [max_difference(ours[index:index + 1], expected[key][index:index + 1])
                  for key in ("layer4/eigencam", "layer4/eigencam_flipped")]
        assert min(errors) < MAP_TOLERANCE, errors


def test_scorecam_equals_pytorch_grad_cam_whatever_the_batch_size(expected):
    model = filled("compact_cnn")
    for batch_size in (64, 5):
        ours = cam(model, compact_input(), method="scorecam", target_layer="features.2",
                   classes=SCORECAM_TARGETS, batch_size=batch_size)
        assert max_difference(ours, expected["compact/scorecam"]) < MAP_TOLERANCE


def test_raw_map_is_signed_and_normalised_map_is_its_relu_min_max(resnet):
    raw = cam(resnet, resnet_input(), method="hirescam", target_layer="layer3", classes=TARGETS, normalize=False)
    assert raw.min() < 0 < raw.max()
    normalised = cam(resnet, resnet_input(), method="hirescam", target_layer="layer3", classes=TARGETS)
    assert normalised.min() == 0 and abs(float(normalised.max()) - 1) < 1e-6
    # Where the raw map is at its largest, the normalised one is (nearly: upsampling comes between) too.
    flat_raw, flat_norm = raw.flatten(1), normalised.flatten(1)
    assert flat_norm.gather(1, flat_raw.argmax(1, keepdim=True)).min() > 0.999


def test_classes_by_top1_int_name_and_per_image(resnet):
    x = resnet_input()
    top1 = resnet(x).argmax(1).tolist()
    assert torch.equal(cam(resnet, x), cam(resnet, x, classes=top1))
    names = [f"class{i}" for i in range(1000)]
    by_name = cam(resnet, x, classes="class3", class_names=names)
    assert torch.equal(by_name, cam(resnet, x, classes=3))
    with pytest.raises(CnnkitError, match="not one of the classes: class0, class1"):
        cam(resnet, x, classes="cat", class_names=names)
    with pytest.raises(CnnkitError, match="no class names"):
        cam(resnet, x, classes="cat")
    with pytest.raises(CnnkitError, match="3 entries for 2 images"):
        cam(resnet, x, classes=[1, 2, 3])


def test_unknown_layer_lists_the_layers_with_spatial_output(resnet):
    with pytest.raises(CnnkitError, match=r"unknown target layer 'layer9'.*layer4 \(512x2x2\)"):
        cam(resnet, resnet_input(), target_layer="layer9")
    with pytest.raises(CnnkitError, match="unknown CAM method"):
        cam(resnet, resnet_input(), method="gradcam+++")
    # A layer that exists but has no spatial output (the head) lists them too.
    with pytest.raises(CnnkitError, match=r"'fc' outputs \(2, 1000\), not a .*feature map; layers with a spatial "
                                          r"output: .*layer4 \(512x2x2\)"):
        cam(resnet, resnet_input(), target_layer="fc")


def test_default_layer_is_the_declared_feature_layer_else_the_last_spatial_one(resnet):
    assert default_layer_name(resnet, resnet_input()[:1]) == "layer4"
    compact = filled("compact_cnn")
    assert default_layer_name(compact, compact_input()[:1]) == "features"
    compact.default_cfg = type(compact.default_cfg)(**{**compact.default_cfg.to_dict(), "feature_layer": "features.2"})
    assert default_layer_name(compact, compact_input()[:1]) == "features.2"


class InplaceNet(nn.Module):
    """Target conv followed by an in-place ReLU: the captured activation must be the conv's output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


def test_in_place_relu_after_the_target_layer_keeps_the_signed_activation_and_its_gradient():
    torch.manual_seed(0)
    model = InplaceNet().double()
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    # By hand: A = conv(x) (signed), dlogit/dA = w_c * [A > 0] / 36; HiResCAM = sum_c grad * A.
    a = model.conv(x).detach()
    gradient = model.fc.weight[1][None, :, None, None].detach() * (a > 0) / 36
    expected = (gradient * a).sum(dim=1)
    ours = cam(model, x, method="hirescam", target_layer="conv", classes=1, normalize=False)
    assert torch.allclose(ours, expected, atol=1e-12)


def test_hooks_modes_and_requires_grad_are_restored_even_when_the_forward_raises(resnet):
    model = filled("compact_cnn").train()
    model.features[0].eval()
    model.classifier.weight.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    cam(model, compact_input(), method="gradcam++")
    with pytest.raises(RuntimeError):
        cam(model, torch.randn(1, 3, 32, 32, dtype=torch.float64), target_layer="features.2")
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


@pytest.mark.filterwarnings("ignore::FutureWarning")  # gc.get_objects() meets torch's deprecated aliases
def test_two_hundred_calls_leave_no_hook_and_no_memory_behind():
    model = filled("compact_cnn")
    x = compact_input()[:1, :, :16, :16]
    for _ in range(20):  # warm-up: allocator pools and lazy initialisation settle
        cam(model, x)
    gc.collect()
    before = len(gc.get_objects())
    tensors_before = sum(isinstance(o, torch.Tensor) for o in gc.get_objects())
    for _ in range(200):
        cam(model, x, method="layercam", target_layer="features.4")
    gc.collect()
    tensors_after = sum(isinstance(o, torch.Tensor) for o in gc.get_objects())
    assert tensors_after == tensors_before
    assert len(gc.get_objects()) - before < 50
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_a_real_predictor_brings_its_class_names_and_preprocessing(tmp_path):
    model = filled("compact_cnn").float()
    names = tuple(f"c{i}" for i in range(9))
    predictor = Predictor.from_model(model, names)
    pictures = [np.full((32, 32), 40 * i, dtype=np.uint8) + np.eye(32, dtype=np.uint8) * 90 for i in range(2)]
    paths = [tmp_path / f"picture{i}.png" for i in range(2)]
    for picture, path in zip(pictures, paths):
        Image.fromarray(picture).save(path)
    # compact_cnn's default_cfg: grey 32x32, mean 0.5, std 0.5
    batch = torch.stack([(torch.from_numpy(p).float()[None] / 255 - 0.5) / 0.5 for p in pictures])
    expected = cam(model, batch, classes=4, normalize=False)
    assert float(expected.std()) > 0
    assert torch.allclose(cam(predictor, pictures, classes="c4", normalize=False), expected, atol=1e-6)
    assert torch.allclose(cam(predictor, [str(p) for p in paths], classes="c4", normalize=False), expected, atol=1e-6)
    assert torch.allclose(cam(predictor, batch, classes="c4", normalize=False), expected, atol=1e-6)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CnnkitError, match="broken.png"):
        cam(predictor, [str(paths[0]), str(tmp_path / "broken.png")])


def test_a_plain_module_defaults_to_its_last_spatial_layer_before_the_head_pool():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(2, 1, 8, 8)
    assert default_layer_name(model, x[:1]) == "1"
    assert torch.equal(cam(model, x), cam(model, x, target_layer=model[1]))


def test_a_batch_of_another_float_dtype_runs_in_the_models_and_an_empty_one_is_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(2, 1, 8, 8)
    expected = cam(model, x, classes=[0, 2], normalize=False)
    assert torch.allclose(cam(model, x.double(), classes=[0, 2], normalize=False), expected, atol=1e-6)
    assert torch.allclose(cam(model.double(), x, classes=[0, 2], normalize=False).float(), expected, atol=1e-6)
    assert torch.equal(cam(model, x, classes=np.int64(2)), cam(model, x, classes=2))
    assert torch.equal(cam(model, x, classes=np.array([0, 2])), cam(model, x, classes=[0, 2]))
    with pytest.raises(CnnkitError, match="empty batch"):
        cam(model, x[:0])
