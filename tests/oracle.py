"""One helper per oracle: compare cnnkit's results with PyTorch's."""

from __future__ import annotations

import numpy as np
import torch

# float64: 1e-10 relative; float32: 1e-4 relative (both relative to the reference's scale,
# so that entries near zero are judged against the size of the whole tensor).
RELATIVE_TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


def assert_matches_torch(ours: np.ndarray, reference: torch.Tensor, *, name: str = "result") -> None:
    """Assert `ours` equals torch's `reference` in shape and value, within the dtype's tolerance."""
    expected = reference.detach().cpu().numpy()
    assert ours.shape == expected.shape, f"{name}: shape {ours.shape} != torch's {expected.shape}"
    tolerance = RELATIVE_TOLERANCE[np.dtype(ours.dtype)]
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    error = float(np.abs(ours.astype(np.float64) - expected.astype(np.float64)).max(initial=0.0))
    assert error <= tolerance * scale, f"{name}: max abs error {error:.3e} > {tolerance:.0e} x scale {scale:.3e}"
