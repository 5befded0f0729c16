"""A deterministic fill of a state dict that depends only on each entry's (key, shape).

Two implementations with the same state-dict names and shapes get identical tensors, so equal
logits after the fill mean "a torchvision/timm weight file loads with strict=True and gives the
same logits". Pure torch: imported both by tools/make_reference_fixtures.py (in the scratch venv
with torchvision/timm) and by the tests (which never import them).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import torch
from torch import nn

INPUT_SEED = 0
INPUT_BATCH = 2


def name_keyed_tensor(key: str, shape: Sequence[int]) -> torch.Tensor:
    """float64 values for state-dict entry `key` of `shape`, seeded by crc32(key).

    Scaled so that deep networks stay finite in eval mode: weights with fan-in `prod(shape[1:])`
    are uniform with variance 1 / fan_in (LeCun et al. 1998), norm scales in [0.5, 1.5), BatchNorm
    running variances in [0.5, 1.5) (positive), running means and biases in [-0.1, 0.1).
    """
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    unit = torch.rand(tuple(shape), generator=generator, dtype=torch.float64)
    leaf = key.rsplit(".", 1)[-1]
    # In place: the same arithmetic as `0.5 + unit` etc., without copies of the largest tensors.
    if leaf in ("running_var", "weight") and len(shape) == 1:
        return unit.add_(0.5)
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        return unit.mul_(2.0).sub_(1.0).mul_(math.sqrt(3.0 / fan_in))
    return unit.mul_(0.2).sub_(0.1)


def name_keyed_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s state dict with every floating-point entry replaced by `name_keyed_tensor`.

    Integer entries (BatchNorm's `num_batches_tracked`) are zeros, as in a freshly built model.
    Works on a model on the meta device (only names, shapes and dtypes are read).
    """
    return {
        key: name_keyed_tensor(key, value.shape)
        if value.is_floating_point()
        else torch.zeros(value.shape, dtype=value.dtype)
        for key, value in model.state_dict().items()
    }


def reference_input(size: int, channels: int = 3) -> torch.Tensor:
    """The fixed float64 input (INPUT_BATCH, channels, size, size), standard normal from INPUT_SEED."""
    generator = torch.Generator().manual_seed(INPUT_SEED)
    return torch.randn(INPUT_BATCH, channels, size, size, generator=generator, dtype=torch.float64)


def fill_probe() -> list[float]:
    """A few filled and input values, recorded with the fixtures to detect a changed torch RNG stream."""
    return name_keyed_tensor("probe.weight", (2, 3)).flatten().tolist() + reference_input(2, 1).flatten().tolist()
