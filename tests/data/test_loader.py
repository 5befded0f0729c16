"""make_loader: drop_last, small-set error, per-epoch seeded order, worker-count-independent batches, skip,
rank sharding, balanced sampling."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from cnnkit.data.loader import make_loader
from cnnkit.data.mix import MixUp
from cnnkit.data.pipeline import train_pipeline
from cnnkit.errors import CnnkitError
from cnnkit.models.base import DefaultCfg


class NumberedImages(Dataset):
    """Item i: a uint8 (3, 20, 24) image of noise seeded by i, labelled i (so order is visible)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        g = torch.Generator().manual_seed(index)
        return torch.randint(0, 256, (3, 20, 24), generator=g, dtype=torch.uint8), index


PIPELINE = train_pipeline(DefaultCfg(input_size=(3, 16, 16)))


def epoch(loader) -> tuple[list[torch.Tensor], list[list[int]]]:
    images, labels = [], []
    for x, y in loader:
        images.append(x)
        labels.append(y.tolist())
    return images, labels


def test_training_drops_the_last_partial_batch_and_eval_keeps_it():
    _, train_labels = epoch(make_loader(NumberedImages(10), batch_size=4, train=True, pipeline=PIPELINE))
    assert [len(b) for b in train_labels] == [4, 4]
    eval_images, eval_labels = epoch(make_loader(NumberedImages(10), batch_size=4, train=False, pipeline=PIPELINE))
    assert eval_labels == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert eval_images[0].shape == (4, 3, 16, 16) and eval_images[0].dtype == torch.float32


def test_a_training_set_smaller_than_a_batch_is_a_clear_error():
    with pytest.raises(CnnkitError, match="smaller than one batch of 8"):
        make_loader(NumberedImages(5), batch_size=8, train=True)
    with pytest.raises(CnnkitError, match=r"\(5 per process\) is smaller than one batch of 6"):
        make_loader(NumberedImages(10), batch_size=6, train=True, rank=1, world_size=2)


def labels_of_epochs(loader, epochs: int) -> list[list[int]]:
    """Each epoch's labels in order, after `set_epoch`."""
    result = []
    for e in range(epochs):
        loader.set_epoch(e)
        result.append(sum(epoch(loader)[1], []))
    return result


def test_order_is_a_seeded_shuffle_per_epoch():
    def orders(seed: int) -> list[list[int]]:
        return labels_of_epochs(make_loader(NumberedImages(12), batch_size=3, train=True, seed=seed), epochs=2)

    first, second = orders(1)
    assert sorted(first) == sorted(second) == list(range(12))
    assert first != second, "each epoch has its own order"
    assert orders(1) == [first, second]
    assert orders(2)[0] != first


def test_zero_one_and_two_workers_give_identical_batches():
    def two_epochs(workers: int):
        loader = make_loader(NumberedImages(16), batch_size=4, train=True, seed=3, num_workers=workers,
                             pipeline=PIPELINE, mix=MixUp(16, alpha=1.0))
        batches = []
        for e in range(2):
            loader.set_epoch(e)
            batches += [(images, labels, soft) for images, labels, soft in loader.labelled_batches()]
        return batches

    reference = two_epochs(0)
    assert len(reference) == 8
    for workers in (1, 2):
        for (images_a, labels_a, soft_a), (images_b, labels_b, soft_b) in zip(reference, two_epochs(workers),
                                                                              strict=True):
            assert torch.equal(labels_a, labels_b)
            assert torch.equal(images_a, images_b), f"{workers} worker(s) changed the images"
            assert torch.equal(soft_a, soft_b)
    # Epochs differ from each other (new order, new augmentation), and so does another seed.
    assert not torch.equal(reference[0][0], reference[4][0])
    other = make_loader(NumberedImages(16), batch_size=4, train=True, seed=4, pipeline=PIPELINE)
    assert not torch.equal(reference[0][0], next(iter(other))[0])


def test_skip_resumes_the_same_epoch_at_a_batch():
    loader = make_loader(NumberedImages(20), batch_size=4, train=True, seed=5, pipeline=PIPELINE,
                         mix=MixUp(20, alpha=1.0))
    loader.set_epoch(2)
    whole = list(loader)
    assert len(whole) == loader.batches_per_epoch == 5
    loader.set_epoch(2, skip=3)
    tail = list(loader)
    assert len(tail) == 2
    for (images_a, targets_a), (images_b, targets_b) in zip(whole[3:], tail, strict=True):
        assert torch.equal(images_a, images_b) and torch.equal(targets_a, targets_b)
    with pytest.raises(ValueError, match="skip must be in 0..5"):
        loader.set_epoch(2, skip=6)


def test_ranks_share_each_epoch_without_overlap():
    def labels(rank: int) -> list[int]:
        loader = make_loader(NumberedImages(12), batch_size=2, train=True, seed=7, rank=rank, world_size=2)
        loader.set_epoch(1)
        return sum(epoch(loader)[1], [])

    assert sorted(labels(0) + labels(1)) == list(range(12))
    evaluation = [sum(epoch(make_loader(NumberedImages(5), batch_size=2, train=False, rank=r, world_size=2))[1], [])
                  for r in (0, 1)]
    assert evaluation == [[0, 2, 4], [1, 3]], "evaluation unpadded: the ranks' metrics count each item once"
    tiny = [sum(epoch(make_loader(NumberedImages(2), batch_size=1, train=False, rank=r, world_size=5))[1], [])
            for r in range(5)]
    assert tiny == [[0], [1], [0], [1], [0]], "more ranks than items: every rank still gets its batch"


class ImbalancedLabels(Dataset):
    """900 items of class 0 then 100 of class 1; each item is a (1, 2, 2) uint8 image."""

    targets = [0] * 900 + [1] * 100

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.zeros(1, 2, 2, dtype=torch.uint8), self.targets[index]


def test_balanced_sampling_draws_each_class_about_half_the_time_reproducibly():
    def drawn(seed: int) -> list[list[int]]:
        loader = make_loader(ImbalancedLabels(), batch_size=100, train=True, seed=seed, balanced=True)
        return labels_of_epochs(loader, epochs=3)

    epochs = drawn(0)
    for labels in epochs:
        assert len(labels) == 1000
        # Binomial(1000, 0.5): standard deviation 0.016, so 0.44..0.56 is a 3.8-sigma band.
        assert 0.44 < sum(labels) / len(labels) < 0.56
    assert epochs[0] != epochs[1]
    assert drawn(0) == epochs
    assert drawn(1) != epochs
    with pytest.raises(ValueError, match="balanced sampling is for training"):
        make_loader(ImbalancedLabels(), batch_size=10, train=False, balanced=True)


class Blanks(Dataset):
    """Item i: a float zero image (1, 2, 2) labelled by class: one item of class 1, the rest class 0."""

    def __init__(self, n: int) -> None:
        self.targets = [1] + [0] * (n - 1)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.zeros(1, 2, 2), self.targets[index]


def test_an_item_drawn_twice_in_an_epoch_is_augmented_twice():
    # Balanced sampling draws the lone class-1 item about half the time: each copy must get its own
    # augmentation (here: one uniform number), not repeat the first copy's.
    def add_noise(image, *, generator):
        return image + torch.rand((), generator=generator)

    def epoch_values(workers: int) -> tuple[torch.Tensor, torch.Tensor]:
        loader = make_loader(Blanks(16), batch_size=16, train=True, balanced=True, seed=5, num_workers=workers,
                             sample_transform=add_noise)
        images, labels = next(iter(loader))
        return images[:, 0, 0, 0], labels

    values, labels = epoch_values(0)
    lone = values[labels == 1]
    assert len(lone) >= 4 and len(set(lone.tolist())) == len(lone)
    assert all(torch.equal(a, b) for a, b in zip(epoch_values(0), epoch_values(2)))


def test_mixing_on_the_batch_gives_soft_targets():
    loader = make_loader(
        NumberedImages(8), batch_size=4, train=True, pipeline=PIPELINE, mix=MixUp(8, alpha=1.0), seed=0
    )
    images, targets = next(iter(loader))
    assert images.dtype == torch.float32 and targets.shape == (4, 8)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(4))
