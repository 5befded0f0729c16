"""Known-answer tests: the "convolution and pooling by hand" rows of the worked-examples table
(../shared/reference/worked-examples.md), through the engine, each cross-checked with torch.

Convolution here is cross-correlation (no kernel flip), as torch and every CNN framework compute it.
Where the commonly printed figure is wrong, the comment beside the row says what was printed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from worked_examples import assert_answers_in_reference

from cnnkit.engine.conv import conv2d
from cnnkit.engine.pool import avg_pool2d, max_pool2d


def _as_nchw(rows) -> np.ndarray:
    return np.array(rows, dtype=np.float64)[None, None]


VERTICAL_EDGE = [[1, 0, -1]] * 3
SOBEL_X = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]


@dataclass(frozen=True)
class HandConv:
    """An image, a kernel and the map correct arithmetic gives (stride 1, no padding)."""

    name: str
    image: list[list[float]]
    kernel: list[list[float]]
    answer: list[list[float]]


HAND_CONVS = (
    # Printed elsewhere: [[-2,-2],[2,0]] and [[-2,0],[2,0]]. Each kernel row is [1, 0, -1]: output =
    # (the window's left column) - (its right column). Y[1,1]'s window [[1,2,3],[0,1,2],[1,0,1]]
    # has left column 1+0+1 = 2 and right column 3+2+1 = 6: 2 - 6 = -4. The others: Y[0,0] =
    # (1+0+3) - (3+2+1) = -2, Y[0,1] = (2+1+0) - (0+3+2) = -2, Y[1,0] = (0+3+2) - (2+1+0) = 2.
    HandConv("4x4 by vertical-edge kernel", [[1, 2, 3, 0], [0, 1, 2, 3], [3, 0, 1, 2], [2, 1, 0, 1]],
             VERTICAL_EDGE, [[-2, -2], [2, -4]]),
    # Each window's right column exceeds its left by 2 in every row: (1 + 2 + 1) * 2 = 8.
    HandConv("5x5 ramp 1..25 by Sobel-x", np.arange(1, 26).reshape(5, 5).tolist(), SOBEL_X, [[8] * 3] * 3),
    # Printed elsewhere: "only column 1". Windows over columns 1-3 and 2-4 both see 0 on the left and
    # 1 on the right: (1 + 2 + 1) * (1 - 0) = 4; windows entirely on one side give 0.
    HandConv("6x6 step edge by Sobel-x", [[0, 0, 0, 1, 1, 1]] * 6, SOBEL_X, [[0, 4, 4, 0]] * 4),
    HandConv("4x4 checkerboard by identity diagonal",
             [[1 - (i + j) % 2 for j in range(4)] for i in range(4)], [[1, 0], [0, 1]],
             [[2, 0, 2], [0, 2, 0], [2, 0, 2]]),
)  # fmt: skip


@pytest.mark.parametrize("case", HAND_CONVS, ids=lambda case: case.name)
def test_hand_convolution(case: HandConv) -> None:
    x, kernel = _as_nchw(case.image), _as_nchw(case.kernel)
    y = conv2d(x, kernel)
    np.testing.assert_array_equal(y[0, 0], case.answer)
    np.testing.assert_array_equal(y, F.conv2d(torch.tensor(x), torch.tensor(kernel)).numpy())


def test_2x2_pooling_of_the_textbook_4x4_example():
    """Printed elsewhere: average [[2.0, 2.5], [2.5, 2.0]]. The max of the top-left window
    [[1, 3], [2, 1]] is 3; its mean is (1 + 3 + 2 + 1) / 4 = 1.75."""
    x = _as_nchw([[1, 3, 2, 4], [2, 1, 1, 2], [4, 2, 3, 1], [1, 3, 2, 1]])
    np.testing.assert_array_equal(max_pool2d(x, 2)[0, 0], [[3, 4], [4, 3]])
    np.testing.assert_array_equal(avg_pool2d(x, 2)[0, 0], [[1.75, 2.25], [2.5, 1.75]])
    np.testing.assert_array_equal(max_pool2d(x, 2), F.max_pool2d(torch.tensor(x), 2).numpy())
    np.testing.assert_array_equal(avg_pool2d(x, 2), F.avg_pool2d(torch.tensor(x), 2).numpy())


def test_resnet_stem_conv_maps_224_to_112():
    """7x7 stride-2 pad-3 conv (He et al. 2016): (224 - 7 + 2*3) // 2 + 1 = 112."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    w = rng.standard_normal((4, 3, 7, 7)).astype(np.float32)
    y = conv2d(x, w, stride=2, padding=3)
    assert y.shape == (1, 4, (224 - 7 + 6) // 2 + 1, (224 - 7 + 6) // 2 + 1) == (1, 4, 112, 112)


def test_copied_answers_match_the_reference() -> None:
    assert_answers_in_reference(
        ["[[-2,-2],[2,-4]]", "[[1.75,2.25],[2.5,1.75]]", "a 3x3 map of 8 everywhere", "[0,4,4,0]",
         "[[2,0,2],[0,2,0],[2,0,2]]", "max [[3,4],[4,3]]"]
    )  # fmt: skip
