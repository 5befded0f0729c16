"""The seeded ResNet-18 and the pytorch-grad-cam / captum reference values, shared by the map and
attribution tests."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from explain.reference_models import filled, reference


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return filled("resnet18")


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    return reference()
