"""A tiny deterministic training job, run in a subprocess by the kill-and-resume tests.

usage: python toy_job.py RUN_DIR [--resume] [--epochs N] [--pause SECONDS] [--stop-at-step S]
                          [--accumulate-steps N]
       torchrun --nproc_per_node 2 toy_job.py RUN_DIR --distributed [--skip-nan-of-rank-1-at-step S]
                          [--plain --batch-size B --accumulate-steps N --count-syncs FILE]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import TensorDataset

from cnnkit.train.callbacks import Callback
from cnnkit.train.config import TrainConfig
from cnnkit.train.distributed import DistributedContext, init_from_torchrun, shutdown
from cnnkit.train.trainer import Trainer


def toy_data(n: int = 96, seed: int = 0, *, class0_every: int = 2) -> TensorDataset:
    """Two classes of 8x8 single-channel images: a bright left half or a bright right half, plus noise.

    Every `class0_every`-th item is class 0, the rest class 1 (2: balanced; 10: a 10/90 split)."""
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % class0_every != 0).long()
    images = torch.randn(n, 1, 8, 8, generator=generator) * 0.5
    images[labels == 0, :, :, :4] += 1.0
    images[labels == 1, :, :, 4:] += 1.0
    return TensorDataset(images, labels)


def toy_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.2),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 2),
    )


def plain_model(seed: int = 0) -> nn.Module:
    """toy_model without BatchNorm and Dropout: a batch's gradient does not depend on how it is split."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 2))


def noisy_flip(image: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """A random augmentation, so that resuming must also restore augmentation randomness."""
    return image + 0.1 * torch.randn(image.shape, generator=generator)


class Pause(Callback):
    """Sleeps before each training forward pass: per micro-batch, so that a kill lands between the
    micro-batches of an accumulating step as often as between steps."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def before_fit(self, trainer: Trainer) -> None:
        trainer.model.register_forward_pre_hook(lambda module, inputs: time.sleep(self.seconds) if module.training
                                                else None)


class StopAfter(Callback):
    """Simulates a crash: raises after `steps` optimizer steps (the checkpoint of that step exists)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def after_batch(self, trainer: Trainer) -> None:
        if trainer.state.step == self.steps:
            trainer.save_state()
            raise KeyboardInterrupt


class StopAtStep(Callback):
    """Ends the run after optimizer step `step`, that step not checkpointed (as a kill right after it)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def after_batch(self, trainer: Trainer) -> None:
        trainer.should_stop = trainer.state.step >= self.step


class NanOnRank(Callback):
    """The loss of rank `rank` is NaN at optimizer step `step` (its forward output times NaN, once)."""

    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step = rank, step

    def before_batch(self, trainer: Trainer) -> None:
        if trainer.dist.rank == self.rank and trainer.state.step == self.step:
            trainer.forward_model = _NanOnce(trainer.forward_model)


class _NanOnce(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.done = inner, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if not self.done:
            self.done = True
            return out * float("nan")
        return out


def count_gradient_syncs(trainer: Trainer) -> list[int]:
    """A DDP communication hook that counts the gradient all-reduces (one per bucket and sync)."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    count = [0]

    def hook(state, bucket):
        count[0] += 1
        return allreduce_hook(state, bucket)

    trainer.forward_model.register_comm_hook(None, hook)
    return count


def make_trainer(run_dir: str, epochs: int, pause: float = 0.0, distributed: DistributedContext | None = None,
                 *, train_data: TensorDataset | None = None, batch_transform=None, model: nn.Module | None = None,
                 **config_changes) -> Trainer:
    """The toy run; `config_changes` replace TrainConfig fields (e.g. balanced_sampling=True)."""
    config = TrainConfig(epochs=epochs, batch_size=16, lr=0.05, optimizer="sgd", weight_decay=1e-4,
                         warmup_epochs=1, seed=3, checkpoint_every_steps=1, ema_decay=0.9).replace(**config_changes)
    callbacks = [Pause(pause)] if pause else []
    data = toy_data() if train_data is None else train_data
    return Trainer(toy_model() if model is None else model, data, config, num_classes=2, run_dir=run_dir, val_data=toy_data(32, seed=1),
                   sample_transform=noisy_flip, batch_transform=batch_transform, callbacks=callbacks,
                   distributed=distributed)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--distributed", action="store_true", help="join the torchrun process group")
    parser.add_argument("--stop-at-step", type=int, default=None)
    parser.add_argument("--skip-nan-of-rank-1-at-step", type=int, default=None,
                        help="nan_policy skip, and rank 1's loss NaN at this step")
    parser.add_argument("--plain", action="store_true", help="plain_model (no BatchNorm, no Dropout)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--accumulate-steps", type=int, default=1)
    parser.add_argument("--count-syncs", default=None, help="write this rank's gradient all-reduces to FILE.RANK")
    args = parser.parse_args()
    torch.set_num_threads(1)
    context = init_from_torchrun("cpu") if args.distributed else None
    nan_step = args.skip_nan_of_rank_1_at_step
    trainer = make_trainer(args.run_dir, args.epochs, args.pause, context, model=plain_model() if args.plain else None,
                           batch_size=args.batch_size, accumulate_steps=args.accumulate_steps,
                           **({} if nan_step is None else {"nan_policy": "skip"}))
    syncs = count_gradient_syncs(trainer) if args.count_syncs else None
    if args.stop_at_step is not None:
        trainer.callbacks.append(StopAtStep(args.stop_at_step))
    if nan_step is not None:
        trainer.callbacks.append(NanOnRank(1, nan_step))
    trainer.fit(resume_from=f"{args.run_dir}/last.pt" if args.resume else None)
    if syncs is not None:
        with open(f"{args.count_syncs}.{context.rank if context else 0}", "w") as handle:
            handle.write(str(syncs[0]))
    if context is not None:
        shutdown(context)
