"""Shared fixtures: the optional real datasets in ../shared, and one thread per test worker."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"


def pytest_configure(config: pytest.Config) -> None:
    # Two xdist workers on two cores: one BLAS and one torch intra-op thread each avoids
    # oversubscription (OpenBLAS threads spinning against each other made small GEMMs 10x slower).
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    import torch

    torch.set_num_threads(1)


def _shared_dataset(name: str) -> Path:
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name!r} not found at {path} (a user's checkout has no ../shared)")
    return path


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return _shared_dataset("mnist")


@pytest.fixture(scope="session")
def hymenoptera_dir() -> Path:
    return _shared_dataset("hymenoptera")
