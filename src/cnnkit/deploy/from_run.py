"""Continue from a finished run: its model, training config, data split and preprocessing, so that a
pruned or distilled run is trained and tested exactly like the run it came from."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from cnnkit.data.pipeline import augments_by_default
from cnnkit.errors import CnnkitError
from cnnkit.models.channel_plan import apply_channel_plan
from cnnkit.train import setup
from cnnkit.train.checkpoint import atomic_write
from cnnkit.train.config import TrainConfig, load_config
from cnnkit.train.fit import DataBundle, RunInfo


@dataclass(frozen=True)
class SourceRun:
    """A finished run, loaded: the trained model (eval mode), its summary.json, config and data."""

    path: Path
    model: nn.Module
    summary: dict[str, Any]
    config: TrainConfig
    data: setup.PreparedData

    def info(self, model: nn.Module | None = None, model_name: str | None = None) -> RunInfo:
        """RunInfo of a run derived from this one (same classes; `model`'s default_cfg if given)."""
        cfg = (model.default_cfg.to_dict() if model is not None else self.summary["default_cfg"])
        name = model_name or self.summary["model_name"]
        overrides = self.summary.get("model_overrides", {}) if model_name is None else {}
        return RunInfo(model_name=name, class_names=self.summary["class_names"], default_cfg=cfg,
                       model_overrides=overrides)

    def fresh_model(self, seed: int) -> nn.Module:
        """This run's architecture, newly initialised from `seed` (the run's own seed gives back
        its initial weights: `setup.build_model` draws them from it), with the run's default_cfg."""
        cfg = self.model.default_cfg
        model = setup.build_model(self.summary["model_name"], num_classes=len(self.summary["class_names"]),
                                  in_chans=cfg.input_size[0], seed=seed,
                                  overrides=self.summary.get("model_overrides") or None)
        if self.summary.get("channel_plan"):
            apply_channel_plan(model, self.summary["channel_plan"])
        model.default_cfg = cfg
        return model

    def bundle(self, config: TrainConfig, model: nn.Module | None = None) -> DataBundle:
        """Train/val/test datasets and transforms for `model` (default: this run's model)."""
        cfg = (model or self.model).default_cfg
        augment = "standard" if augments_by_default(*cfg.input_size[1:]) else "none"
        return setup.data_bundle(self.data, cfg, config, augment)


def open_run(run_dir: str | Path, data_path: str, *, out: Path | None = None) -> SourceRun:
    """Load `run_dir` and its data split of `data_path` (copied to `out`/split.json when given);
    data of other classes than the run's is an error naming both."""
    run_dir = Path(run_dir)
    model, summary = setup.load_run(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise CnnkitError(f"{run_dir} has no config.yaml: not a run directory written by cnnkit")
    config = load_config(config_path)
    data = setup.prepare_data(data_path, seed=config.seed, saved_split=run_dir / "split.json")
    if data.class_names != summary["class_names"]:
        raise CnnkitError(f"{data_path} has classes {data.class_names}, the run {run_dir} was trained on "
                          f"{summary['class_names']}")
    if out is not None:
        if (out / "last.pt").exists():
            raise CnnkitError(f"{out} already holds a run: choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        if (run_dir / "split.json").is_file():
            shutil.copyfile(run_dir / "split.json", out / "split.json")
    return SourceRun(run_dir, model, summary, config, data)


def add_to_summary(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into RUN/summary.json (atomically) and return the whole summary."""
    path = Path(run_dir) / "summary.json"
    summary = json.loads(path.read_text())
    summary.update(fields)
    text = json.dumps(summary, indent=2, default=float)
    atomic_write(path, lambda f: f.write(text.encode()))
    return summary
