"""P x K batches (P classes, K samples each): every anchor of a triplet loss has positives and
negatives in its batch (Hermans et al. 2017, "In defense of the triplet loss", sec. 2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cnnkit.errors import CnnkitError


def pk_batches(labels: Sequence[int], p: int, k: int, *, generator: torch.Generator,
               num_batches: int | None = None) -> list[list[int]]:
    """`num_batches` (default len(labels) // (p*k)) lists of p*k indices: p distinct classes drawn
    uniformly, k items of each (without replacement, or with it for a class of fewer than k)."""
    if p < 2 or k < 2:
        raise CnnkitError(f"P x K sampling needs P >= 2 classes and K >= 2 samples per class, got P={p}, K={k}")
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    classes = sorted(by_class)
    if len(classes) < p:
        raise CnnkitError(f"P x K sampling: P={p} classes per batch but the data has only {len(classes)}")
    count = len(labels) // (p * k) if num_batches is None else num_batches
    batches = []
    for _ in range(count):
        chosen = torch.randperm(len(classes), generator=generator)[:p].tolist()
        batch: list[int] = []
        for c in chosen:
            members = by_class[classes[c]]
            if len(members) >= k:
                picks = torch.randperm(len(members), generator=generator)[:k].tolist()
            else:
                picks = torch.randint(len(members), (k,), generator=generator).tolist()
            batch.extend(members[i] for i in picks)
        batches.append(batch)
    return batches


def pk_epoch_order(labels: Sequence[int], p: int, k: int, *, world_size: int = 1):
    """An `epoch_order(generator) -> indices` for `cnnkit.data.loader.make_loader`: P x K blocks,
    as many as fit in one epoch of the data, padded with a shuffled tail so the epoch keeps its
    length (with batch_size = p*k and drop_last, batches are exactly the blocks). Under DDP the
    loader deals the order round-robin (rank r takes positions r, r + world_size, ...), so each
    round of `world_size` blocks is interleaved: every rank's batch is still one whole block."""
    size = len(labels)
    if world_size < 1:
        raise CnnkitError(f"world_size must be >= 1, got {world_size}")

    def order(generator: torch.Generator) -> list[int]:
        blocks = pk_batches(labels, p, k, generator=generator)
        rounds = len(blocks) // world_size
        flat = [blocks[round_ * world_size + rank][j]
                for round_ in range(rounds) for j in range(p * k) for rank in range(world_size)]
        tail = torch.randperm(size, generator=generator)[: size - len(flat)].tolist()
        return flat + tail

    return order
