"""Conv -> norm -> activation, the unit most CNNs are built from.

Kept as an `nn.Sequential` with children `0, 1, 2` so that state-dict names match
torchvision's `Conv2dNormActivation` (e.g. `features.0.0.weight`, `features.0.1.running_mean`).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

NormFactory = Callable[[int], nn.Module]
ActFactory = Callable[..., nn.Module]


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps the spatial size at stride 1 for an odd kernel: (k - 1) // 2 * d."""
    return (kernel_size - 1) // 2 * dilation


class ConvNormAct(nn.Sequential):
    """(N, C_in, H, W) -> (N, C_out, H / stride, W / stride).

    The conv has no bias when a norm follows (the norm's shift makes it redundant).
    `norm_layer=None` or `activation_layer=None` drop that part; `inplace=None` is for
    activations that take no `inplace` argument (e.g. GELU).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        dilation: int = 1,
        norm_layer: NormFactory | None = nn.BatchNorm2d,
        activation_layer: ActFactory | None = nn.ReLU,
        *,
        inplace: bool | None = True,
        bias: bool | None = None,
    ) -> None:
        if padding is None:
            padding = same_padding(kernel_size, dilation)
        if bias is None:
            bias = norm_layer is None
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation, groups=groups, bias=bias)
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer(inplace=inplace) if inplace is not None else activation_layer())
        super().__init__(*layers)
        self.out_channels = out_channels
