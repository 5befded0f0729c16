"""A finished run with its data, for the commands that analyse it (interpret, calibrate, report).

The run is opened once through the inference core (`Predictor.from_run`: weights, preprocessing,
temperature) and its data cut by `prepare_data` into the run's own splits; results go back into
the run with `update_summary`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnkit.data.pipeline import Pipeline
from cnnkit.data.splits import held_out_split
from cnnkit.errors import CnnkitError
from cnnkit.inference import Predictor, RunSummary, read_summary, update_summary
from cnnkit.train.config import load_config
from cnnkit.train.data_prep import PreparedData, prepare_data
from cnnkit.train.evaluate import ordered_loader
from cnnkit.train.preprocessing import batch_stage


@dataclass(frozen=True)
class RunWithData:
    """A run's `predictor` (its model in eval mode and preprocessing), its typed summary, and the
    run's splits of `data`."""

    run_dir: Path
    predictor: Predictor
    summary: RunSummary
    data: PreparedData
    seed: int

    @property
    def model(self) -> nn.Module:
        return self.predictor.model

    @property
    def evaluation(self) -> Pipeline:
        return self.predictor.pipeline

    @property
    def class_names(self) -> list[str]:
        return list(self.summary.class_names)

    def split_name(self, requested: str | None) -> str:
        """`requested`, else the held-out split (`held_out_split`: test, else val; never the training
        data while held-out data exists), else the data's first split; an empty requested split is
        refused."""
        splits = self.data.splits
        if requested is not None:
            if requested not in splits:
                raise CnnkitError(f"{self.data.source.location} has no split {requested!r} (it has {sorted(splits)})")
            if not self.has_items(requested):
                raise CnnkitError(f"split {requested!r} of {self.data.source.location} has no items")
            return requested
        return held_out_split(splits) or next(iter(splits))

    def has_items(self, split: str) -> bool:
        """Whether the data has `split` and it holds at least one item (a tiny dataset's cut can
        leave val or test empty)."""
        return split in self.data.splits and len(self.data.splits[split]) > 0

    def _dataset(self, split: str):
        return self.data.splits[split].with_decode_hint(self.evaluation.decode_hint)

    def batches(self, split: str, *, batch_size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Model-ready (N, C, H, W) float batches and (N,) targets of `split`, in dataset order."""
        loader = ordered_loader(self._dataset(split), self.evaluation.sample, batch_size=batch_size,
                                seed=self.seed, device=device,
                                batch_transform=batch_stage(self.evaluation, None, len(self.class_names)))
        for images, targets in loader:
            yield images.to(device), targets.to(device)

    def items(self, split: str, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Items of `split` re-read by index: the uint8 (N, C, H, W) view the model sees (after
        resize/crop), the normalised model input, and the labels."""
        dataset = self._dataset(split)
        samples = [dataset[int(i)] for i in indices]
        views = torch.stack([self.predictor.sample(image) for image, _ in samples])
        return views, self.predictor.normalise(views), [int(label) for _, label in samples]


def open_run(run_dir: str | Path, data_path: str, *, device: torch.device | None = None) -> RunWithData:
    """Load RUN (summary.json + best weights, on `device`) and cut `data_path` into the run's own splits."""
    run_dir = Path(run_dir)
    predictor = Predictor.from_run(run_dir, device=device)
    summary = read_summary(run_dir)
    config_path = run_dir / "config.yaml"
    seed = load_config(config_path).seed if config_path.exists() else 0
    data = prepare_data(data_path, seed=seed, saved_split=run_dir / "split.json")
    if tuple(data.class_names) != summary.class_names:
        raise CnnkitError(f"{data_path} has classes {data.class_names}, the run was trained on "
                          f"{list(summary.class_names)}")
    return RunWithData(run_dir, predictor, summary, data, seed)


def calibration_split(run: RunWithData) -> tuple[str, str | None]:
    """The split to fit a temperature on: val, else (no val, or an empty one) train, with a note saying so."""
    if run.has_items("val"):
        return "val", None
    return "train", (f"{run.data.source.location} has no val split with items: the temperature is fitted on the "
                     "train split, which flatters the model: the temperature comes out too low for new data")


def store_temperature(run_dir: str | Path, temperature: float) -> RunSummary:
    """Store the fitted temperature in RUN/summary.json (`Predictor.from_run` applies it)."""
    return update_summary(run_dir, temperature=float(temperature))
