"""make_loader: drop_last, clear small-dataset error, seeded order, reproducible worker batches."""

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
    with pytest.raises(CnnkitError, match="fewer than one batch of 8"):
        make_loader(NumberedImages(5), batch_size=8, train=True)


def test_order_is_a_seeded_shuffle():
    def order(seed: int) -> list[int]:
        return sum(epoch(make_loader(NumberedImages(12), batch_size=3, train=True, seed=seed))[1], [])

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert sorted(order(1)) == list(range(12))
    expected = torch.randperm(12, generator=torch.Generator().manual_seed(1)).tolist()
    assert order(1) == expected


def test_two_workers_give_the_same_batches_as_a_second_run():
    def two_epochs(seed: int):
        loader = make_loader(NumberedImages(16), batch_size=4, train=True, seed=seed, num_workers=2, pipeline=PIPELINE)
        return epoch(loader), epoch(loader)

    first, second = two_epochs(3), two_epochs(3)
    for (images_a, labels_a), (images_b, labels_b) in zip(first, second):
        assert labels_a == labels_b
        assert all(torch.equal(a, b) for a, b in zip(images_a, images_b))
    # Epochs differ from each other (new order, new augmentation), and so does another seed.
    assert first[0][1] != first[1][1]
    assert not all(torch.equal(a, b) for a, b in zip(first[0][0], two_epochs(4)[0][0]))


def test_mixing_on_the_batch_gives_soft_targets():
    loader = make_loader(
        NumberedImages(8), batch_size=4, train=True, pipeline=PIPELINE, mix=MixUp(8, alpha=1.0), seed=0
    )
    images, targets = next(iter(loader))
    assert images.dtype == torch.float32 and targets.shape == (4, 8)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(4))
