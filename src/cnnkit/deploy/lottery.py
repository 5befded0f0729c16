"""Iterative magnitude pruning with rewinding: the lottery ticket experiment (Frankle & Carbin 2019).

Round 0 trains the dense network from its initial weights (the source run's own init, rebuilt
from its seed). Each later round prunes `rate` of the weights still alive (global magnitude over
conv and linear weights), rewinds the survivors to their initial values (or those after epoch K,
Frankle et al. 2020 "Linear mode connectivity"), and retrains with the mask held. The control
trains the same masks from a fresh random initialisation: a winning ticket beats it.

    OUT/rewind.safetensors     the weights every round rewinds to
    OUT/round<r>/              a normal run directory per round (mask.safetensors = its mask)
    OUT/control<r>/            the random-reinitialisation control at round r's mask
    OUT/lottery.csv            round, density, split, top-1 of the ticket and of the control on it
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cnnkit.deploy.from_run import SourceRun
from cnnkit.deploy.masks import (Masks, MaskHold, apply_masks, full_masks, global_magnitude_masks, rounds_density,
                                 sparsity_report)
from cnnkit.errors import CnnkitError
from cnnkit.inference import RunSummary, update_summary
from cnnkit.train.callbacks import Callback
from cnnkit.train.config import TrainConfig
from cnnkit.train.fit import fit

CONTROL_SEED_OFFSET = 1000  # control r is initialised from seed + 1000 + r: never the ticket's init


@dataclass(frozen=True)
class LotterySettings:
    """rounds of pruning after the dense round, `rate` pruned per round, rewind point (0 = init)."""

    rounds: int = 5
    rate: float = 0.2
    rewind_epoch: int = 0
    control: bool = True

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise CnnkitError(f"--rounds must be >= 1, got {self.rounds}")
        if not 0.0 < self.rate < 1.0:
            raise CnnkitError(f"--rate must be in (0, 1), got {self.rate}")
        if self.rewind_epoch < 0:
            raise CnnkitError(f"--rewind epoch:K needs K >= 0, got {self.rewind_epoch}")


@dataclass(frozen=True)
class LotteryRound:
    """One row of the table: round (0 = dense), measured density, and the top-1 of ticket and control
    on `split` (test, or val when the data has no test split)."""

    round: int
    density: float
    split: str
    top1: float
    control_top1: float | None
    run_dir: str


def parse_rewind(text: str) -> int:
    """`init` -> 0, `epoch:K` -> K."""
    if text == "init":
        return 0
    head, _, value = text.partition(":")
    if head != "epoch" or not value.isdigit():
        raise CnnkitError(f"--rewind must be `init` or `epoch:K` (K a whole number), got {text!r}")
    return int(value)


class CaptureAfterEpoch(Callback):
    """Keeps a copy of the trained model's state dict after `epoch` epochs (the rewind point): the
    training weights themselves, never their EMA (Frankle et al. 2020 rewind the SGD iterate)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.state: dict[str, torch.Tensor] | None = None

    def after_epoch(self, trainer) -> None:
        if trainer.state.epoch + 1 == self.epoch:
            self.state = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}


def rewound_model(source: SourceRun, rewind_state: dict[str, torch.Tensor], masks: Masks) -> nn.Module:
    """The architecture with the rewind weights loaded and the pruned entries zeroed."""
    model = source.fresh_model(source.config.seed)
    model.load_state_dict(rewind_state)
    apply_masks(model, masks)
    return model


def _held_out_top1(summary: RunSummary) -> tuple[str, float]:
    """(split, top-1) of a round's best weights: its test figures, else the val top-1 of its best epoch."""
    if summary.test and "test_top1" in summary.test:
        return "test", float(summary.test["test_top1"])
    if summary.monitor == "val_top1" and summary.best_metric is not None:
        return "val", float(summary.best_metric)
    return "val", float((summary.final or {}).get("val_top1", float("nan")))


def _train(model: nn.Module, source: SourceRun, config: TrainConfig, masks: Masks | None, run_dir: Path,
           callbacks: Sequence[Callback], quiet: bool) -> RunSummary:
    hold = [MaskHold(masks)] if masks is not None else []
    source.share_split(run_dir)
    fit(model, source.bundle(config, model), config, source.info(), run_dir=run_dir,
        callbacks=[*hold, *callbacks], quiet=quiet)
    # A channel-pruned source's narrow shapes: without them the round's weights would not load.
    changes: dict[str, object] = {"channel_plan": source.summary.channel_plan}
    if masks is not None:
        save_file({k: v.cpu().contiguous() for k, v in masks.items()}, run_dir / "mask.safetensors")
        weights = load_file(run_dir / "best.safetensors")
        report = sparsity_report(weights, list(masks))
        changes.update(sparsity=report.layers, global_sparsity=report.global_sparsity)
    return update_summary(run_dir, **changes)


def lottery_ticket(source: SourceRun, config: TrainConfig, settings: LotterySettings, out: Path, *,
                   callbacks: Sequence[Callback] = (), quiet: bool = True) -> list[LotteryRound]:
    """Run the experiment into `out`; returns one row per round (round 0 = dense)."""
    if settings.rewind_epoch > config.epochs:
        raise CnnkitError(f"--rewind epoch:{settings.rewind_epoch} is past the {config.epochs} training epochs")
    out.mkdir(parents=True, exist_ok=True)
    dense = source.fresh_model(config.seed)
    capture = CaptureAfterEpoch(settings.rewind_epoch)
    initial = {k: v.detach().clone() for k, v in dense.state_dict().items()}
    summary = _train(dense, source, config, None, out / "round0", [capture, *callbacks], quiet)
    rewind_state = capture.state if settings.rewind_epoch > 0 else initial
    save_file({k: v.contiguous() for k, v in rewind_state.items()}, out / "rewind.safetensors")
    masks = full_masks(dense)
    rows = [LotteryRound(0, 1.0, *_held_out_top1(summary), None, str(out / "round0"))]
    trained = out / "round0" / "best.safetensors"
    for r in range(1, settings.rounds + 1):
        scored = source.fresh_model(config.seed)
        scored.load_state_dict(load_file(trained))
        masks = global_magnitude_masks(scored, rounds_density(settings.rate, r), previous=masks)
        ticket = rewound_model(source, rewind_state, masks)
        summary = _train(ticket, source, config, masks, out / f"round{r}", callbacks, quiet)
        control_top1 = None
        if settings.control:
            control = source.fresh_model(config.seed + CONTROL_SEED_OFFSET + r)
            apply_masks(control, masks)
            control_top1 = _held_out_top1(_train(control, source, config, masks, out / f"control{r}", (), quiet))[1]
        rows.append(LotteryRound(r, 1.0 - summary.global_sparsity,
                                 *_held_out_top1(summary), control_top1, str(out / f"round{r}")))
        trained = out / f"round{r}" / "best.safetensors"
    write_lottery_csv(rows, out / "lottery.csv")
    return rows


def write_lottery_csv(rows: Sequence[LotteryRound], path: Path) -> None:
    """OUT/lottery.csv: one line per round."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)


def format_lottery(rows: Sequence[LotteryRound]) -> str:
    """The sparsity-vs-accuracy table: ticket (rewound) against the random-reinit control."""
    split = rows[0].split
    ticket, control = f"ticket {split} top-1", f"random reinit {split} top-1"
    lines = [f"{'round':>5}  {'sparsity':>8}  {ticket:>16}  {control:>23}"]
    for row in rows:
        control = "-" if row.control_top1 is None else f"{100 * row.control_top1:.2f}%"
        lines.append(f"{row.round:>5}  {100 * (1 - row.density):7.2f}%  {100 * row.top1:15.2f}%  {control:>23}")
    return "\n".join(lines)

