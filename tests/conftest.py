"""Shared fixtures: the optional real datasets in ../shared, and one thread per test worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from colour_folders import make_tiny_folder

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


# A tiny trained run on a folder of PNGs, shared by the CLI, inference and later tests.


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of 16x16 PNGs: reddish and bluish squares with noise."""
    return make_tiny_folder(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def trained_run(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    from cnnkit.cli import main

    code = main(["train", str(tiny_folder), "--model", "compact_cnn", "--epochs", "2", "--batch-size", "8",
                 "--lr", "0.003", "--img-size", "16", "--out", str(out), "--quiet"])
    assert code == 0
    return out
