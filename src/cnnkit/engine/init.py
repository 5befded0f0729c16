"""Weight initialisation as torch's defaults, drawn from an explicit np.random.Generator.

torch initialises Conv2d and Linear weights with kaiming_uniform_(a=sqrt(5)) (He et al. 2015,
"Delving Deep into Rectifiers", with the leaky-ReLU gain for slope a), which works out to
U(-1/sqrt(fan_in), 1/sqrt(fan_in)); biases use the same bound.
"""

from __future__ import annotations

import math

import numpy as np


def fan_in(shape: tuple[int, ...]) -> int:
    """Inputs feeding one output unit: in_features for (out, in), C_in/groups * kH * kW for conv."""
    if len(shape) < 2:
        raise ValueError(f"fan_in needs a weight of at least 2 dimensions, got shape {shape}")
    inputs = int(np.prod(shape[1:]))
    if inputs < 1:
        raise ValueError(f"weight of shape {shape} has no inputs per output unit (fan_in 0)")
    return inputs


def kaiming_uniform(
    shape: tuple[int, ...], *, a: float = 0.0, rng: np.random.Generator, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """U(-b, b) with b = gain * sqrt(3 / fan_in) and the leaky-ReLU gain sqrt(2 / (1 + a^2))."""
    gain = math.sqrt(2.0 / (1.0 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in(shape))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def default_weight(shape: tuple[int, ...], *, rng: np.random.Generator, dtype: np.dtype | type) -> np.ndarray:
    """torch's default Conv2d/Linear weight: kaiming_uniform with a = sqrt(5)."""
    return kaiming_uniform(shape, a=math.sqrt(5.0), rng=rng, dtype=dtype)


def default_bias(
    weight_shape: tuple[int, ...], *, rng: np.random.Generator, dtype: np.dtype | type
) -> np.ndarray:
    """torch's default Conv2d/Linear bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), one per output."""
    bound = 1.0 / math.sqrt(fan_in(weight_shape))
    return rng.uniform(-bound, bound, size=weight_shape[0]).astype(dtype)
