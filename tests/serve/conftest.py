"""Fixtures of the serve tests: the tiny random-weight classifier as a Predictor and as a run directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import save_file
from serve_helpers import CLASSES, tiny_model

from cnnkit.inference import Predictor
from cnnkit.train.run_summary import RunSummary, write_summary


@pytest.fixture(scope="package")
def predictor() -> Predictor:
    return Predictor.from_model(tiny_model(), CLASSES)


@pytest.fixture(scope="package")
def random_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory (summary.json + best.safetensors) of the tiny model, as `cnnkit train` leaves one."""
    run = tmp_path_factory.mktemp("run")
    model = tiny_model()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(run / "best.safetensors"))
    write_summary(run, RunSummary(model_name="compact_cnn", class_names=CLASSES, default_cfg=model.default_cfg,
                                  model_options={}))
    return run
