"""Continue from a finished run: its model, training config, data split and preprocessing, so that a
pruned or distilled run is trained and tested exactly like the run it came from."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from cnnkit.data.pipeline import augments_by_default
from cnnkit.errors import CnnkitError
from cnnkit.inference import RunSummary, load_run
from cnnkit.models.channel_plan import apply_channel_plan
from cnnkit.train.config import TrainConfig, load_config
from cnnkit.train.data_prep import PreparedData, prepare_data
from cnnkit.train.fit import DataBundle, RunInfo
from cnnkit.train.model_setup import build_model
from cnnkit.train.preprocessing import data_bundle


@dataclass(frozen=True)
class SourceRun:
    """A finished run, loaded: the trained model (eval mode), its summary, config and data."""

    path: Path
    model: nn.Module
    summary: RunSummary
    config: TrainConfig
    data: PreparedData

    def info(self, model: nn.Module | None = None, model_name: str | None = None) -> RunInfo:
        """RunInfo of a run derived from this one (same classes; `model`'s default_cfg if given). A
        run of this architecture (no `model_name`) keeps its model options and `--head`; another
        architecture (a distilled student) has its own."""
        cfg = model.default_cfg if model is not None else self.summary.default_cfg
        same = model_name is None
        return RunInfo(model_name=model_name or self.summary.model_name, class_names=list(self.summary.class_names),
                       default_cfg=cfg, model_options=dict(self.summary.model_options if same else {}),
                       head=self.summary.head if same else None)

    def fresh_model(self, seed: int) -> nn.Module:
        """This run's architecture, newly initialised from `seed` (the run's own seed gives back
        its initial weights: `build_model` draws them from it), with the run's default_cfg."""
        cfg = self.model.default_cfg
        model = build_model(self.summary.model_name, num_classes=self.summary.num_classes,
                            in_chans=cfg.input_size[0], seed=seed, overrides=self.summary.model_options or None,
                            head=self.summary.head)
        if self.summary.channel_plan:
            apply_channel_plan(model, self.summary.channel_plan)
        model.default_cfg = cfg
        return model

    def share_split(self, out: Path) -> None:
        """Copy this run's split.json into `out` (made if need be), so that a run derived from it is
        evaluated later on the very split it was trained on."""
        out.mkdir(parents=True, exist_ok=True)
        if (self.path / "split.json").is_file():
            shutil.copyfile(self.path / "split.json", out / "split.json")

    def bundle(self, config: TrainConfig, model: nn.Module | None = None) -> DataBundle:
        """Train/val/test datasets and transforms for `model` (default: this run's model)."""
        cfg = (model or self.model).default_cfg
        augment = "standard" if augments_by_default(*cfg.input_size[1:]) else "none"
        return data_bundle(self.data, cfg, config, augment)


def open_run(run_dir: str | Path, data_path: str, *, out: Path | None = None) -> SourceRun:
    """Load `run_dir` and its data split of `data_path` (copied to `out`/split.json when given);
    data of other classes than the run's is an error naming both."""
    run_dir = Path(run_dir)
    model, summary = load_run(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise CnnkitError(f"{run_dir} has no config.yaml: not a run directory written by cnnkit")
    config = load_config(config_path)
    data = prepare_data(data_path, seed=config.seed, saved_split=run_dir / "split.json")
    if tuple(data.class_names) != summary.class_names:
        raise CnnkitError(f"{data_path} has classes {data.class_names}, the run {run_dir} was trained on "
                          f"{list(summary.class_names)}")
    source = SourceRun(run_dir, model, summary, config, data)
    if out is not None:
        if (out / "last.pt").exists():
            raise CnnkitError(f"{out} already holds a run: choose another --out")
        source.share_split(out)
    return source
