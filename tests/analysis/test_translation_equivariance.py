"""Translation equivariance, shown: shift the input and the feature map shifts with it.

A convolution applies the same weights at every position (weight sharing), so shifting its input
by a multiple of its stride shifts its output by shift / stride, exactly, wherever neither window
reads the padding. A CNN's feature extractor inherits this for shifts by a multiple of its total
stride; global average pooling then forgets where the feature was, which makes the prediction
(nearly) invariant, while a head that flattens the map does not (Goodfellow et al. 2016, 9.4).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cnnkit
from cnnkit.engine.conv import conv2d


@pytest.mark.parametrize(
    "stride, dilation, shift",
    [(1, 1, (2, 3)), (2, 1, (4, 2)), (1, 2, (1, 5))],
    ids=["stride 1", "stride 2", "dilation 2"],
)
def test_engine_conv_shifts_its_output_exactly_away_from_the_border(
    stride: int, dilation: int, shift: tuple[int, int]
) -> None:
    rng = np.random.default_rng(0)
    # Small integers in float64: every sum is exact, so equality is bit for bit.
    big = rng.integers(-4, 5, size=(2, 3, 20 + shift[0], 22 + shift[1])).astype(np.float64)
    w = rng.integers(-3, 4, size=(4, 3, 3, 3)).astype(np.float64)
    image = big[:, :, shift[0] :, shift[1] :]
    shifted = big[:, :, : big.shape[2] - shift[0], : big.shape[3] - shift[1]]  # image moved by +shift
    y = conv2d(image, w, padding=dilation, stride=stride, dilation=dilation)
    y_shifted = conv2d(shifted, w, padding=dilation, stride=stride, dilation=dilation)
    out_shift = (shift[0] // stride, shift[1] // stride)
    h, w_out = y.shape[2:]
    # Away from the border: skip the outputs whose windows read the padding (`margin` on each
    # side) and those that leave the map.
    margin = -(-dilation // stride)
    expected = y[:, :, margin : h - out_shift[0] - margin, margin : w_out - out_shift[1] - margin]
    actual = y_shifted[:, :, margin + out_shift[0] : h - margin, margin + out_shift[1] : w_out - margin]
    np.testing.assert_array_equal(actual, expected)
    unshifted = y[:, :, margin + out_shift[0] : h - margin, margin + out_shift[1] : w_out - margin]
    assert not np.array_equal(actual, unshifted)  # the map did move


OBJECT = 20  # side of the random "object" placed on a blank 96x96 canvas
CANVAS = 96


def _placed(patch: torch.Tensor, row: int, col: int) -> torch.Tensor:
    image = torch.zeros(1, 1, CANVAS, CANVAS)
    image[..., row : row + OBJECT, col : col + OBJECT] = patch
    return image


@pytest.fixture(scope="module")
def compact() -> nn.Module:
    """The zoo's compact_cnn (five 3x3 conv-BN-ReLU, three 2x2 max-pools: total stride 8, then GAP)."""
    torch.manual_seed(0)
    return cnnkit.create_model("compact_cnn", num_classes=9).eval()


@pytest.fixture(scope="module")
def patch() -> torch.Tensor:
    return torch.rand(OBJECT, OBJECT, generator=torch.Generator().manual_seed(1))


def test_zoo_features_shift_with_the_input(compact: nn.Module, patch: torch.Tensor) -> None:
    # The object moves by 8 pixels = the total stride: the 12x12 map moves by one cell, and the
    # blank surroundings (border effects included) are the same in both images.
    with torch.no_grad():
        features = compact.forward_features(_placed(patch, 32, 32))
        moved = compact.forward_features(_placed(patch, 40, 40))
    assert features.shape[-2:] == (12, 12)
    torch.testing.assert_close(moved, torch.roll(features, (1, 1), (2, 3)), rtol=0, atol=1e-6)
    assert (moved - features).abs().max() > 0.01  # the map did change: it moved


def _relative_change(model: nn.Module, a: torch.Tensor, b: torch.Tensor) -> float:
    with torch.no_grad():
        logits_a, logits_b = model(a), model(b)
    return float((logits_a - logits_b).abs().max() / logits_a.abs().max())


@pytest.mark.parametrize("moved_to", [(40, 40), (35, 33)], ids=["by the stride", "by 3 and 1 pixels"])
def test_global_average_pooling_makes_the_prediction_nearly_invariant(
    compact: nn.Module, patch: torch.Tensor, moved_to: tuple[int, int]
) -> None:
    # The same features with a head that flattens the 12x12 map keeps the position.
    torch.manual_seed(2)
    flatten_head = nn.Sequential(compact.features, nn.Flatten(), nn.Linear(256 * 12 * 12, 9)).eval()
    image, moved = _placed(patch, 32, 32), _placed(patch, *moved_to)
    gap_change = _relative_change(compact, image, moved)
    flatten_change = _relative_change(flatten_head, image, moved)
    assert gap_change < 0.02
    assert flatten_change > 0.05
    assert flatten_change > 10 * gap_change
