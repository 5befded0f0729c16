"""The seeded models and inputs the explain fixtures were made with (tools/make_explain_fixtures.py):
cnnkit's resnet18 / compact_cnn in float64 with the name-keyed fill, so no weight file is committed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnkit.models.factory import create_model
from models.reference.name_keyed_fill import name_keyed_state_dict, reference_input

FIXTURE = Path(__file__).parent / "fixtures" / "reference_maps.npz"
SIZE = 64
TARGETS = [20, 500]
SCORECAM_TARGETS = [1, 5]
SMOOTHGRAD_SAMPLES, SMOOTHGRAD_NOISE, SMOOTHGRAD_SEED = 4, 0.3, 7
IG_STEPS = 8
IG_BASELINE, IG_BASELINE_STEPS = 0.5, 5
OCCLUSION_WINDOW, OCCLUSION_STRIDE = 16, 8
OCCLUSION_CLIPPED_WINDOW, OCCLUSION_CLIPPED_STRIDE = 20, 8  # (64 - 20) / 8 is not whole


def filled(name: str) -> nn.Module:
    model = create_model(name).double().eval()
    model.load_state_dict(name_keyed_state_dict(model), strict=True)
    return model


def resnet_input() -> torch.Tensor:
    return reference_input(SIZE)


def compact_input() -> torch.Tensor:
    return reference_input(32, channels=1)


def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


def max_difference(ours: torch.Tensor, theirs: np.ndarray) -> float:
    """Largest absolute difference between a cnnkit result and a reference array."""
    return float((ours - torch.from_numpy(theirs).double()).abs().max())
