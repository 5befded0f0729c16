"""The wafer maps' class frequencies (balanced, WM-811K's) and the shifted-position control split."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.data.wafer import (MIN_PER_CLASS, PLACEABLE_CLASSES, WAFER_CLASSES, WM811K_COUNTS, WaferMaps, class_counts,
                               make_wafer_maps, wafer_splits)
from cnnkit.errors import CnnkitError

# Wu et al. 2015, Table 1: the labelled WM-811K maps per class (written out here, not read from the module).
PUBLISHED = {"none": 147431, "edge-ring": 9680, "edge-loc": 5189, "center": 4294, "loc": 3593,
             "scratch": 1193, "random": 866, "donut": 555, "near-full": 149}


def test_wm811k_counts_are_the_published_ones() -> None:
    assert WM811K_COUNTS == PUBLISHED and sum(PUBLISHED.values()) == 172_950


def test_balanced_counts_spread_the_remainder() -> None:
    assert class_counts(900) == (100,) * 9
    assert class_counts(902) == (101, 101) + (100,) * 7


@pytest.mark.parametrize("total", [200, 2700, 100_000])
def test_wm811k_counts_follow_the_labelled_frequencies(total: int) -> None:
    counts = dict(zip(WAFER_CLASSES, class_counts(total, "wm811k")))
    assert sum(counts.values()) == total and min(counts.values()) >= MIN_PER_CLASS
    share = {name: PUBLISHED[name] / sum(PUBLISHED.values()) for name in WAFER_CLASSES}
    for name in WAFER_CLASSES:
        if name != "none" and total * share[name] >= MIN_PER_CLASS:
            assert abs(counts[name] - total * share[name]) < 1, (name, counts[name], total * share[name])
    assert counts["none"] == max(counts.values()) and counts["none"] >= total * share["none"] - 9 * MIN_PER_CLASS
    if total == 100_000:  # large enough that the published order of the classes shows
        order = sorted(WAFER_CLASSES, key=counts.get, reverse=True)
        assert order == sorted(WAFER_CLASSES, key=PUBLISHED.get, reverse=True)


def test_wm811k_imbalance_in_the_maps_and_splits() -> None:
    splits = wafer_splits(20, 16, seed=1, imbalance="wm811k")
    counts = np.array(class_counts(180, "wm811k"))
    total = sum(np.bincount(s.labels, minlength=9) for s in splits.values())
    np.testing.assert_array_equal(total, counts)
    for split in splits.values():
        assert np.all(np.bincount(split.labels, minlength=9) >= 1)
    assert np.bincount(splits["train"].labels).argmax() == 0  # "none" dominates
    maps = make_wafer_maps(list(counts), 16, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(maps.labels, minlength=9), counts)


def test_bad_counts_are_refused() -> None:
    with pytest.raises(CnnkitError, match="imbalance must be one of"):
        class_counts(900, "zipf")  # type: ignore[arg-type]
    with pytest.raises(CnnkitError, match="total must be >= 100"):
        class_counts(50, "wm811k")
    with pytest.raises(CnnkitError, match="9 counts"):
        make_wafer_maps([1, 2], rng=np.random.default_rng(0))


def _columns(maps: WaferMaps, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per map of class `name`: the mask centroid's column and its extreme column (min, max)."""
    masks = maps.masks[maps.labels == WAFER_CLASSES.index(name)]
    centroids = np.array([np.nonzero(mask)[1].mean() for mask in masks])
    extremes = np.array([(np.nonzero(mask)[1].min(), np.nonzero(mask)[1].max()) for mask in masks])
    return centroids, extremes


def test_shift_control_moves_loc_and_scratch_to_the_unseen_half() -> None:
    splits = wafer_splits(30, 32, seed=2, shift_control=True)
    assert set(splits) == {"train", "val", "test", "shifted"}
    np.testing.assert_array_equal(np.bincount(splits["shifted"].labels, minlength=9),
                                  np.bincount(splits["test"].labels, minlength=9))
    middle = (32 - 1) / 2
    for name in PLACEABLE_CLASSES:
        for split in ("train", "val", "test"):
            centroids, extremes = _columns(splits[split], name)
            assert np.all(extremes[:, 1] < middle), f"{name} in {split} reaches the right half"
        centroids, extremes = _columns(splits["shifted"], name)
        assert np.all(extremes[:, 0] > middle), f"{name} in the shifted test reaches the left half"
        assert centroids.mean() > middle + 5
    # The other classes are not confined: their defects cover both halves over the training split.
    edge_loc, _ = _columns(splits["train"], "edge-loc")
    assert edge_loc.min() < middle - 5 and edge_loc.max() > middle + 5
    again = wafer_splits(30, 32, seed=2, shift_control=True)
    np.testing.assert_array_equal(again["shifted"].maps, splits["shifted"].maps)
    np.testing.assert_array_equal(again["shifted"].masks, splits["shifted"].masks)
