"""I3D inflation: a still video through the inflated network gives the 2D network's activations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnkit.models.inflate import inflate_to_3d
from cnnkit.models.factory import create_model, list_models
from models.reference.name_keyed_fill import name_keyed_state_dict

TOLERANCE = 1e-10  # float64, relative to the largest reference value


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape, f"{tuple(actual.shape)} != {tuple(expected.shape)}"
    error = (actual - expected).abs().max().item()
    assert error <= TOLERANCE * expected.abs().max().item(), f"max error {error:.3e}"


def filled(model: nn.Module) -> nn.Module:
    """`model` (possibly on the meta device) in float64 eval mode with name-keyed weights and BN statistics."""
    model = model.double().eval()
    model.load_state_dict(name_keyed_state_dict(model), assign=True)
    return model


def small_cnn() -> nn.Sequential:
    return filled(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(16, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    ))


def frames(channels: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def still_video(frame: torch.Tensor, length: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, length, H, W): the same frame `length` times."""
    return frame.unsqueeze(2).expand(-1, -1, length, -1, -1).contiguous()


@pytest.mark.parametrize("time_kernel", [3, 5])
def test_still_video_gives_the_2d_logits(time_kernel: int):
    model_2d = small_cnn()
    model_3d = inflate_to_3d(model_2d, time_kernel)
    frame = frames()
    with torch.no_grad():
        assert_close_relative(model_3d(still_video(frame, 4)), model_2d(frame))


def test_zero_time_padding_keeps_only_interior_frames():
    convs = filled(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    )
    inflated = inflate_to_3d(convs, 3, time_padding="zeros")
    frame = frames()
    with torch.no_grad():
        expected, video_out = convs(frame), inflated(still_video(frame, 7))
    assert video_out.shape == (2, 4, 7, 16, 16)
    for t in (2, 3, 4):  # two 3-frame convs: frames 2..4 never see the zero padding
        assert_close_relative(video_out[:, :, t], expected)
    for t in (0, 6):
        assert (video_out[:, :, t] - expected).abs().max() > 1e-3, f"frame {t} should see the zero padding"


def test_names_kept_and_weights_spread_over_time():
    model_2d = small_cnn()
    model_3d = inflate_to_3d(model_2d, 3)
    assert list(model_3d.state_dict()) == list(model_2d.state_dict())
    assert model_3d[0].weight.shape == (8, 3, 3, 3, 3)
    assert isinstance(model_3d[1], nn.BatchNorm3d) and isinstance(model_3d[3], nn.MaxPool3d)
    torch.testing.assert_close(model_3d[0].weight.sum(dim=2), model_2d[0].weight)
    assert torch.equal(model_3d[1].running_var, model_2d[1].running_var)
    assert isinstance(model_2d[0], nn.Conv2d), "the 2D model is left unchanged"


def test_time_kernel_per_layer():
    model_3d = inflate_to_3d(small_cnn(), lambda path, conv: 1 if path == "0" else 3)
    assert [m.kernel_size[0] for m in model_3d if isinstance(m, nn.Conv3d)] == [1, 3, 3]


def test_layer_without_3d_counterpart_is_refused():
    with pytest.raises(ValueError, match="cannot inflate ZeroPad2d"):
        inflate_to_3d(nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(3, 3, 3)))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zoo_resnet_on_a_still_video_gives_the_2d_logits(name: str):
    if name not in list_models():
        pytest.skip(f"model {name!r} is not in the registry yet")
    with torch.device("meta"):
        skeleton = create_model(name, num_classes=10)
    model_2d = filled(skeleton)
    model_3d = inflate_to_3d(model_2d, 3)
    frame = frames(size=32)
    with torch.no_grad():
        expected = model_2d(frame)
        assert_close_relative(model_3d(still_video(frame, 2)), expected)
