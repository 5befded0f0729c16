"""Stratified seeded splits (saved and loaded), streaming channel statistics, class weights and sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.data.dataset import ArrayImageDataset
from cnnkit.data.sampling import balanced_sampler, class_weights
from cnnkit.data.sources import open_source
from cnnkit.data.splits import held_out_split, load_split, make_split, save_split, split_of
from cnnkit.data.stats import MNIST, RunningChannelStats, channel_stats
from cnnkit.errors import CnnkitError


def _targets() -> list[int]:
    return [0] * 100 + [1] * 40 + [2] * 7


def test_split_is_stratified_disjoint_and_complete():
    targets = np.array(_targets())
    split = make_split(targets, seed=3)
    everything = sorted(i for found in split.indices.values() for i in found)
    assert everything == list(range(len(targets)))
    for name, fraction in zip(("train", "val", "test"), (0.7, 0.15, 0.15)):
        counts = np.bincount(targets[split.indices[name]], minlength=3)
        assert np.all(np.abs(counts - fraction * np.array([100, 40, 7])) < 1), (name, counts)


def test_split_is_reproducible_per_seed():
    assert make_split(_targets(), seed=1) == make_split(_targets(), seed=1)
    assert make_split(_targets(), seed=1).indices != make_split(_targets(), seed=2).indices
    two_way = make_split(_targets(), seed=0, fractions=(0.8, 0.2), names=("train", "val"))
    assert len(two_way.indices["val"]) == 20 + 8 + 1
    with pytest.raises(ValueError, match="sum to 1"):
        make_split(_targets(), seed=0, fractions=(0.5, 0.2, 0.2))


def test_split_saved_and_loaded_with_files(tmp_path):
    for label, name in enumerate(["a", "b"]):
        for i in range(10):
            (tmp_path / "data" / name).mkdir(parents=True, exist_ok=True)
            Image.new("L", (4, 4), 20 * i + label).save(tmp_path / "data" / name / f"{i}.png")
    source = open_source(tmp_path / "data")
    split = split_of(source.dataset(), seed=5)
    save_split(split, tmp_path / "split.json")
    loaded = load_split(tmp_path / "split.json")
    assert loaded == split and loaded.files["test"][0].split("/")[0] in ("a", "b")
    subsets = loaded.subsets(source.dataset())
    assert [len(subsets[n]) for n in ("train", "val", "test")] == [14, 3, 3]
    derived = source.dataset("val", seed=5)
    assert derived.indices == split.indices["val"]
    (tmp_path / "data" / "a" / "0.png").unlink()
    with pytest.raises(CnnkitError, match=r"no longer matches the dataset's files: 1 file\(s\) gone or unreadable "
                                          r"\(a/0.png\); the run's split.json"):
        loaded.subsets(open_source(tmp_path / "data").dataset())
    Image.new("L", (4, 4), 7).save(tmp_path / "data" / "a" / "0.png")
    Image.new("L", (4, 4), 9).save(tmp_path / "data" / "a" / "00.png")  # sorts between a/0 and a/1: indices move
    with pytest.raises(CnnkitError, match=r"files: 1 new file\(s\) \(a/00.png\);"):
        loaded.subsets(open_source(tmp_path / "data").dataset())


def test_the_held_out_split_is_test_else_val_with_items_never_train():
    assert held_out_split({"train": [0], "val": [1], "test": [2]}) == "test"
    assert held_out_split({"train": [0], "val": [1]}) == "val"  # train/val data (hymenoptera's layout)
    assert held_out_split({"train": [0], "val": [1], "test": []}) == "val"  # a tiny dataset's cut left test empty
    assert held_out_split({"train": [0], "val": []}) is None
    assert held_out_split({"train": [0]}) is None


def test_stats_of_a_known_tensor_match_numpy():
    images = np.random.default_rng(0).integers(0, 256, (5000, 3, 2, 3), dtype=np.uint8)
    dataset = ArrayImageDataset(images, [0] * 5000, ["x"])
    stats = channel_stats(dataset)  # 5000 items: more than one chunk of 4096
    scaled = images.astype(np.float64) / 255.0
    assert np.allclose(stats.mean, scaled.mean(axis=(0, 2, 3)), rtol=0, atol=1e-12)
    assert np.allclose(stats.std, scaled.std(axis=(0, 2, 3)), rtol=0, atol=1e-12)
    assert stats.count == 5000 * 6
    subset_stats = channel_stats(dataset.subset(range(10, 20)))
    assert np.allclose(subset_stats.mean, scaled[10:20].mean(axis=(0, 2, 3)), atol=1e-12)


def test_streaming_merge_of_unequal_images_matches_numpy():
    rng = np.random.default_rng(1)
    pieces = [rng.random((2, h, w)) for h, w in ((3, 5), (7, 2), (1, 1), (4, 4))]
    running = RunningChannelStats()
    for piece in pieces:
        running.update(piece)
    pixels = np.concatenate([p.reshape(2, -1) for p in pieces], axis=1)
    result = running.result()
    assert np.allclose(result.mean, pixels.mean(axis=1), atol=1e-12)
    assert np.allclose(result.std, pixels.std(axis=1), atol=1e-12)


def test_mnist_stats_equal_the_published_values(mnist_dir):
    stats = channel_stats(open_source(mnist_dir).dataset("train"))
    assert stats.mean[0] == pytest.approx(MNIST.mean[0], abs=5e-5)  # 0.1307
    assert stats.std[0] == pytest.approx(MNIST.std[0], abs=5e-5)  # 0.3081


def test_class_weights_are_balanced_inverse_frequency():
    weights = class_weights([0, 0, 0, 1], 3)
    # N / (K_present * n_k): 4 / (2 * 3) and 4 / (2 * 1); an absent class gets 0.
    assert torch.allclose(weights, torch.tensor([4 / 6, 2.0, 0.0]))


def test_balanced_sampler_draws_classes_equally_and_reproducibly():
    targets = [0] * 900 + [1] * 100

    def draw(seed: int) -> list[int]:
        return list(balanced_sampler(targets, 2, generator=torch.Generator().manual_seed(seed)))

    first = draw(7)
    assert first == draw(7) and first != draw(8)
    minority = np.mean(np.asarray(targets)[first] == 1)
    assert abs(minority - 0.5) < 0.05  # 1000 draws: std of the fraction is about 0.016
