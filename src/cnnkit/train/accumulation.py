"""Gradient accumulation: an epoch's loader batches grouped into optimizer steps of `accumulate_steps`
micro-batches each (timm's --grad-accum-steps, fastai's GradientAccumulation)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepGroups:
    """Which of an epoch's `batches` loader batches (0-based) start and end an optimizer step.

    A step takes `size` consecutive micro-batches, counted from the epoch's first. When `batches` is
    not a multiple of `size`, the epoch's last step takes the rest (timm's rule: every batch trains,
    none carries into the next epoch) and each of its micro-batch losses is divided by that smaller
    count: training batches are all full (the loader drops a partial one), so the accumulated
    gradient is the mean over the step's images, however many micro-batches it has. (A class-
    weighted loss is normalised by its weights per micro-batch, as DDP normalises it per rank;
    MixUp/CutMix pair images within a micro-batch.)
    """

    size: int
    batches: int

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.batches // self.size)

    def starts_step(self, batch: int) -> bool:
        return batch % self.size == 0

    def ends_step(self, batch: int) -> bool:
        return (batch + 1) % self.size == 0 or batch + 1 == self.batches

    def micro_batches(self, batch: int) -> int:
        """How many micro-batches the step of `batch` has: `size`, or fewer for the epoch's last."""
        return min(self.size, self.batches - batch // self.size * self.size)

    def steps_done(self, batches_done: int) -> int:
        """Optimizer steps begun once `batches_done` batches of the epoch are done (all finished at
        a step boundary, where checkpoints are written)."""
        return -(-batches_done // self.size)
