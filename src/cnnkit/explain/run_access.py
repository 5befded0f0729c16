"""A finished run with its data, for the commands that analyse it (interpret, calibrate, report).

The one place that loads a run, rebuilds its splits and stores results back into it, so the
inference core (`cnnkit.inference.load_run` / `update_summary`) can replace it in one edit.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnkit.data.pipeline import Pipeline, eval_pipeline
from cnnkit.errors import CnnkitError
from cnnkit.train import setup
from cnnkit.train.config import load_config
from cnnkit.train.evaluate import ordered_loader


@dataclass(frozen=True)
class RunWithData:
    """A trained `model` (eval mode), its summary.json as a dict, and the run's splits of `data`."""

    run_dir: Path
    model: nn.Module
    summary: dict[str, Any]
    data: setup.PreparedData
    seed: int
    evaluation: Pipeline

    @property
    def class_names(self) -> list[str]:
        return list(self.summary["class_names"])

    def split_name(self, requested: str | None, *, default: Sequence[str] = ("test",)) -> str:
        """`requested`, else the first of `default` the data has, else its first split."""
        splits = self.data.splits
        if requested is not None:
            if requested not in splits:
                raise CnnkitError(f"{self.data.source.location} has no split {requested!r} (it has {sorted(splits)})")
            return requested
        return next((name for name in default if name in splits), next(iter(splits)))

    def batches(self, split: str, *, batch_size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Model-ready (N, C, H, W) float batches and (N,) targets of `split`, in dataset order."""
        loader = ordered_loader(self.data.splits[split], self.evaluation.sample, batch_size=batch_size,
                                seed=self.seed, device=device,
                                batch_transform=setup.batch_stage(self.evaluation, None, len(self.class_names)))
        for images, targets in loader:
            yield images.to(device), targets.to(device)

    def items(self, split: str, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Items of `split` re-read by index: the uint8 (N, C, H, W) view the model sees (after
        resize/crop), the normalised model input, and the labels."""
        dataset = self.data.splits[split]
        samples = [dataset[int(i)] for i in indices]
        views = torch.stack([self.evaluation.sample(image) for image, _ in samples])
        return views, self.evaluation.batch(views), [int(label) for _, label in samples]


def open_run(run_dir: str | Path, data_path: str) -> RunWithData:
    """Load RUN (summary.json + best weights) and cut `data_path` into the run's own splits."""
    run_dir = Path(run_dir)
    model, summary = setup.load_run(run_dir)
    config_path = run_dir / "config.yaml"
    seed = load_config(config_path).seed if config_path.exists() else 0
    data = setup.prepare_data(data_path, seed=seed, saved_split=run_dir / "split.json")
    if list(data.class_names) != list(summary["class_names"]):
        raise CnnkitError(f"{data_path} has classes {data.class_names}, the run was trained on {summary['class_names']}")
    return RunWithData(run_dir, model, summary, data, seed, eval_pipeline(model.default_cfg))


def calibration_split(run: RunWithData) -> tuple[str, str | None]:
    """The split to fit a temperature on: val, else train (with a note saying so)."""
    if "val" in run.data.splits:
        return "val", None
    return "train", (f"{run.data.source.location} has no val split: the temperature is fitted on the train "
                     "split, which flatters the model: the temperature comes out too low for new data")


def store_temperature(run_dir: str | Path, temperature: float) -> None:
    """Add "temperature" to RUN/summary.json, atomically (a temporary file renamed over it)."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise CnnkitError(f"{run_dir} is not a finished run: {path.name} is missing")
    summary = json.loads(path.read_text())
    summary["temperature"] = float(temperature)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".summary-", suffix=".json")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(summary, file, indent=2)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
