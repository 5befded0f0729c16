"""Known-answer tests: worked examples of the CNN literature, by hand arithmetic, cross-checked with torch.

Convolution here is cross-correlation (no kernel flip), as torch and every CNN framework compute it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cnnkit.engine.conv import conv2d
from cnnkit.engine.pool import avg_pool2d, max_pool2d


def _as_nchw(rows) -> np.ndarray:
    return np.array(rows, dtype=np.float64)[None, None]


def test_vertical_edge_kernel_on_the_textbook_4x4_input():
    """Each kernel row is [1, 0, -1]: output = (sum of the window's left column) - (its right column).

    The textbook's input [[1,2,3,0],[0,1,2,3],[3,0,1,2],[2,1,0,1]] (see
    ../shared/reference/worked-examples.md); Y[1, 1] is the one often printed wrong (as 0):
      window rows 1..3 x cols 1..3 = [[1, 2, 3], [0, 1, 2], [1, 0, 1]]
      left column 1 + 0 + 1 = 2, right column 3 + 2 + 1 = 6: 2 - 6 = -4.
    The others: Y[0,0] = (1+0+3) - (3+2+1) = -2, Y[0,1] = (2+1+0) - (0+3+2) = -2,
    Y[1,0] = (0+3+2) - (2+1+0) = 2.
    """
    x = _as_nchw([[1, 2, 3, 0], [0, 1, 2, 3], [3, 0, 1, 2], [2, 1, 0, 1]])
    kernel = _as_nchw([[1, 0, -1]] * 3)
    y = conv2d(x, kernel)
    np.testing.assert_array_equal(y[0, 0], [[-2, -2], [2, -4]])
    np.testing.assert_array_equal(y, F.conv2d(torch.tensor(x), torch.tensor(kernel)).numpy())


def test_sobel_x_fires_only_where_the_window_straddles_the_step_edge():
    """6x6 image, columns 0-2 are 0 and 3-5 are 10. Sobel-x = [[-1,0,1],[-2,0,2],[-1,0,1]].

    A window over columns (1, 2, 3) or (2, 3, 4) sees 0 on the left and 10 on the right:
    (1 + 2 + 1) * (10 - 0) = 40. Windows entirely on one side give 0.
    """
    image = _as_nchw([[0, 0, 0, 10, 10, 10]] * 6)
    sobel_x = _as_nchw([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    y = conv2d(image, sobel_x)
    np.testing.assert_array_equal(y[0, 0], [[0, 40, 40, 0]] * 4)
    np.testing.assert_array_equal(y, F.conv2d(torch.tensor(image), torch.tensor(sobel_x)).numpy())


def test_2x2_pooling_of_the_textbook_4x4_example():
    """Max of the top-left window [[1, 3], [2, 1]] is 3; its mean is (1 + 3 + 2 + 1) / 4 = 1.75."""
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
