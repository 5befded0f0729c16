"""`load_run`: a finished run directory back to its model (best weights, eval mode) and summary."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models.channel_plan import apply_channel_plan
from cnnkit.models.factory import create_model
from cnnkit.train.run_summary import RunSummary, read_summary

WEIGHTS_FILE = "best.safetensors"


def load_run(run_dir: str | Path, *, device: str | torch.device | None = None) -> tuple[nn.Module, RunSummary]:
    """(model, RunSummary) of RUN: the model rebuilt from the summary with RUN/best.safetensors
    loaded, in eval mode and channels_last, its `default_cfg` the run's (and its head, if `--head`
    replaced the model's own)."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if summary.task == "embedding":
        raise CnnkitError(f"{run_dir} is an embedding run (it gives vectors, not class scores): use "
                          "`cnnkit verify`, `cnnkit index` and `cnnkit search` (cnnkit.embeddings.runs)")
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise CnnkitError(f"{run_dir} has no {WEIGHTS_FILE}: the run finished no epoch")
    model = create_model(summary.model_name, num_classes=summary.num_classes,
                         in_chans=summary.default_cfg.input_size[0], head=summary.head, **summary.model_options)
    if summary.channel_plan:  # a channel-pruned run (cnnkit prune --structured channels)
        apply_channel_plan(model, summary.channel_plan)
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as error:
        raise CnnkitError(f"cannot read {weights} as a safetensors file: {error}") from error
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CnnkitError(f"{weights} does not fit model {summary.model_name!r}: {str(error)[:300]}") from error
    model.default_cfg = summary.default_cfg
    model = model.eval().to(memory_format=torch.channels_last)
    return (model.to(device) if device is not None else model), summary
