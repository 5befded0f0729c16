"""The built-in wafer maps: determinism, balance, WM-811K encoding, die grids, exact masks, geometry of each class."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnkit.data.wafer import MIN_DIES, WAFER_CLASSES, WaferMaps, class_counts, make_wafer_maps, wafer_splits
from cnnkit.errors import CnnkitError


@pytest.fixture(scope="module")
def maps() -> WaferMaps:
    return make_wafer_maps(40, rng=np.random.default_rng(0))


def _radius(size: int) -> np.ndarray:
    """Each pixel's distance from the wafer centre, in wafer radii (independent of the generator)."""
    y, x = np.mgrid[0:size, 0:size]
    center = (size - 1) / 2
    return np.hypot(x - center, y - center) / (size / 2 - 0.5)


def _class(maps: WaferMaps, name: str) -> WaferMaps:
    return maps.subset(np.flatnonzero(maps.labels == WAFER_CLASSES.index(name)))


def test_class_names_in_wm811k_order() -> None:
    assert WAFER_CLASSES == ("none", "center", "donut", "edge-loc", "edge-ring", "loc", "near-full", "random", "scratch")


def test_same_seed_same_maps_different_seed_different_maps(maps: WaferMaps) -> None:
    again = make_wafer_maps(40, rng=np.random.default_rng(0))
    other = make_wafer_maps(40, rng=np.random.default_rng(1))
    for field in ("maps", "labels", "masks", "die_grids"):
        np.testing.assert_array_equal(getattr(maps, field), getattr(again, field))
    assert not np.array_equal(maps.maps, other.maps)
    assert not np.array_equal(maps.labels, other.labels)


def test_balanced_shuffled_and_typed(maps: WaferMaps) -> None:
    assert len(maps) == 40 * 9
    np.testing.assert_array_equal(np.bincount(maps.labels, minlength=9), np.full(9, 40))
    assert np.any(np.diff(maps.labels) < 0), "samples are not shuffled"
    assert maps.maps.dtype == np.uint8 and maps.labels.dtype == np.int64 and maps.masks.dtype == bool
    assert maps.maps.shape == maps.masks.shape == (360, 32, 32)
    assert maps.class_names == WAFER_CLASSES


def test_wm811k_encoding_and_a_round_wafer(maps: WaferMaps) -> None:
    assert set(np.unique(maps.maps)) == {0, 1, 2}
    inside = _radius(32) <= 1.0
    # Each die grid's wafer, resized to 32x32, is the inscribed circle up to the dies at its rim.
    agreement = ((maps.maps != 0) == inside).mean(axis=(1, 2))
    assert agreement.min() > 0.9 and np.all(maps.maps[:, 16, 16] != 0) and np.all(maps.maps[:, 0, 0] == 0)
    images = maps.images()
    assert images.shape == (360, 1, 32, 32) and images.dtype == np.float32
    np.testing.assert_array_equal(images[:, 0] * 2, maps.maps)
    assert maps.images(np.float64).dtype == np.float64
    np.testing.assert_array_equal(maps.grey_levels()[:, 0], np.array([0, 128, 255], np.uint8)[maps.maps])


def test_die_grids_vary_in_size_and_aspect(maps: WaferMaps) -> None:
    rows, cols = maps.die_grids.T
    assert rows.min() >= MIN_DIES and cols.min() >= MIN_DIES and max(rows.max(), cols.max()) <= 64
    assert len(np.unique(rows)) > 20 and np.mean(rows != cols) > 0.5
    assert np.ptp(cols / rows) > 0.3
    big = make_wafer_maps(1, 32, rng=np.random.default_rng(5), die_range=(150, 220))
    assert big.die_grids.min() >= 150 and big.die_grids.max() <= 220


def _block_constant(images: np.ndarray, dies: int, size: int) -> bool:
    """Whether every image is a nearest-neighbour upsampling of a dies x dies grid to size x size."""
    source = np.minimum(((np.arange(size) + 0.5) * dies / size).astype(int), dies - 1)
    for die in range(dies):
        block = images[:, source == die]
        for other in range(dies):
            cells = block[:, :, source == other].reshape(len(images), -1)
            if not np.all(cells == cells[:, :1]):
                return False
    return True


def test_a_pixel_is_one_die_and_the_mask_is_exactly_the_pattern_dies() -> None:
    """On 15x15 die grids each die covers a 2-3 pixel block: maps and masks are constant on each
    block (nearest-neighbour resizing keeps die states), and every mask die fails."""
    small = make_wafer_maps(6, 32, rng=np.random.default_rng(7), die_range=(15, 15))
    np.testing.assert_array_equal(small.die_grids, 15)
    assert _block_constant(small.maps, 15, 32) and _block_constant(small.masks, 15, 32)
    assert not _block_constant(small.maps, 16, 32)


def test_masks_are_failing_dies_inside_the_wafer(maps: WaferMaps) -> None:
    assert np.all(maps.maps[maps.masks] == 2), "a defect-mask die is not failing"
    counts = maps.masks.sum(axis=(1, 2))
    is_none = maps.labels == 0
    assert np.all(counts[is_none] == 0)
    assert np.all(counts[~is_none] >= 0.015 * (_radius(32) <= 1).sum() - 1)
    # Background noise exists outside the masks, at a rate that varies per wafer but stays sparse.
    noise = (maps.maps == 2) & ~maps.masks
    rates = noise.sum(axis=(1, 2)) / (maps.maps != 0).sum(axis=(1, 2))
    assert rates.max() < 0.08 and rates.min() < 0.005 and np.percentile(rates, 90) > 0.02


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("center", 0.0, 0.3), ("loc", 0.25, 0.75), ("donut", 0.3, 0.7), ("edge-loc", 0.7, 1.0), ("edge-ring", 0.8, 1.0)],
)
def test_defects_sit_at_their_radial_position(maps: WaferMaps, name: str, low: float, high: float) -> None:
    radius = _radius(32)
    members = _class(maps, name)
    mean_radius = np.array([radius[mask].mean() for mask in members.masks])
    assert np.all((mean_radius >= low) & (mean_radius <= high)), f"{name}: mean radii {np.round(mean_radius, 2)}"
    # And they vary: position and size differ between samples.
    assert mean_radius.std() > 0.01
    assert len({int(mask.sum()) for mask in members.masks}) > 5


def test_defects_have_soft_edges_and_varying_density(maps: WaferMaps) -> None:
    """A blob's failing share falls from its core to its rim (soft edge), and differs between wafers."""
    cores, rims = [], []
    for mask in _class(maps, "center").masks:
        distance = np.hypot(*(np.argwhere(np.ones_like(mask)) - np.argwhere(mask).mean(axis=0)).T).reshape(mask.shape)
        extent = distance[mask].max()
        cores.append(mask[distance < 0.4 * extent].mean())
        rims.append(mask[(distance >= 0.7 * extent) & (distance <= extent)].mean())
    assert np.mean(cores) > np.mean(rims) + 0.2
    assert np.ptp(cores) > 0.2


def test_blob_classes_have_their_centroid_off_centre_except_center(maps: WaferMaps) -> None:
    radius = _radius(32)
    center_hit = [mask[radius < 0.15].any() for mask in _class(maps, "center").masks]
    loc_hit = [mask[radius < 0.1].any() for mask in _class(maps, "loc").masks]
    assert all(center_hit) and not any(loc_hit)


def test_density_classes(maps: WaferMaps) -> None:
    dies = (_radius(32) <= 1).sum()
    failing = {name: (_class(maps, name).maps == 2).sum(axis=(1, 2)) / dies for name in ("none", "random", "near-full")}
    assert failing["none"].max() < 0.06
    assert 0.1 < failing["random"].min() and failing["random"].max() < 0.47
    assert failing["near-full"].min() > 0.7


def test_scratch_is_a_thin_line(maps: WaferMaps) -> None:
    for mask in _class(maps, "scratch").masks:
        rows, cols = np.nonzero(mask)
        extent = max(np.ptp(rows), np.ptp(cols)) + 1
        # A line one or two pixels wide: a few dies per unit of extent (a blob would have ~extent^2).
        assert extent >= 5 and mask.sum() <= 3.5 * extent


@pytest.mark.parametrize("size", [16, 17, 48])
def test_any_size_from_16(size: int) -> None:
    small = make_wafer_maps(3, size, rng=np.random.default_rng(2))
    assert small.maps.shape == (27, size, size)
    assert (((small.maps != 0) == (_radius(size) <= 1.0)).mean(axis=(1, 2))).min() > 0.85
    assert np.all(small.masks[small.labels != 0].sum(axis=(1, 2)) > 0)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(CnnkitError, match="size must be >= 16"):
        make_wafer_maps(2, 15, rng=np.random.default_rng(0))
    with pytest.raises(CnnkitError, match="per_class must be >= 1"):
        make_wafer_maps(0, rng=np.random.default_rng(0))
    with pytest.raises(CnnkitError, match="placement must be"):
        make_wafer_maps(1, rng=np.random.default_rng(0), placement="top")  # type: ignore[arg-type]
    with pytest.raises(CnnkitError, match="die_range"):
        make_wafer_maps(1, rng=np.random.default_rng(0), die_range=(10, 20))
    with pytest.raises(CnnkitError, match="too small"):
        wafer_splits(3, seed=0)


@pytest.mark.parametrize("call, named", [
    (lambda rng: make_wafer_maps(10.0, 16, rng=rng), "per_class must be an int, got 10.0 (float)"),
    (lambda rng: make_wafer_maps(2.5, 16, rng=rng), "per_class must be an int, got 2.5"),
    (lambda rng: make_wafer_maps(True, 16, rng=rng), "per_class must be an int, got True (bool)"),
    (lambda rng: make_wafer_maps([1] * 8 + [1.5], 16, rng=rng), "per_class[8] must be an int, got 1.5"),
    (lambda rng: make_wafer_maps(1, 16.0, rng=rng), "size must be an int, got 16.0"),
    (lambda rng: make_wafer_maps(1, 16, rng=None), "rng must be a numpy.random.Generator"),
    (lambda rng: wafer_splits(10.0, 16, seed=0), "n_per_class must be an int, got 10.0"),
    (lambda rng: wafer_splits(10, 16, seed=1.5), "seed must be an int, got 1.5"),
    (lambda rng: class_counts(90.0), "total must be an int, got 90.0"),
])
def test_a_count_that_is_not_an_int_is_an_error_naming_the_argument(call, named: str) -> None:
    """Was a bare TypeError from NumPy (10.0), or silently truncated counts (1.5) and float counts."""
    with pytest.raises(CnnkitError, match=re.escape(named)):
        call(np.random.default_rng(0))
    assert len(make_wafer_maps(np.int64(1), 16, rng=np.random.default_rng(0))) == 9, "NumPy integers are ints"


def test_splits_are_stratified_disjoint_and_deterministic() -> None:
    splits = wafer_splits(20, 16, seed=3)
    assert set(splits) == {"train", "val", "test"}
    expected = {"train": 14, "val": 3, "test": 3}
    for name, split in splits.items():
        np.testing.assert_array_equal(np.bincount(split.labels, minlength=9), np.full(9, expected[name]))
    # Maps with a few failing dies are unique draws (an all-pass "none" wafer may legitimately repeat).
    seen = [map_.tobytes() for split in splits.values() for map_ in split.maps if (map_ == 2).sum() >= 3]
    assert len(seen) > 150 and len(set(seen)) == len(seen), "a map appears in two splits"
    again = wafer_splits(20, 16, seed=3)
    np.testing.assert_array_equal(again["test"].maps, splits["test"].maps)
    assert not np.array_equal(wafer_splits(20, 16, seed=4)["test"].maps, splits["test"].maps)


def test_no_single_pixel_tells_the_class(maps: WaferMaps) -> None:
    """Issue 2: defects vary in position, size, orientation and density, so the class is not readable
    from one pixel. The best classifier that sees one fixed pixel's die state (majority class per state)
    stays far below what a CNN reaches (chance is 1/9; measured 0.23 here)."""
    states = maps.maps.reshape(len(maps), -1)
    # correct[p] = sum over states v of the largest class count among maps whose pixel p is in state v.
    correct = np.zeros(states.shape[1], np.int64)
    for state in (0, 1, 2):
        counts = np.stack([((states == state) & (maps.labels == k)[:, None]).sum(axis=0) for k in range(9)])
        correct += counts.max(axis=0)
    assert correct.max() / len(maps) < 0.35


def test_per_class_counts_may_be_a_numpy_array() -> None:
    """An array of 9 counts is per-class counts, as a list is (it was refused as 'must be an int'),
    and a float array is named element by element."""
    counts = np.array([1, 2, 0, 1, 1, 0, 1, 1, 3])
    maps = make_wafer_maps(counts, 16, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(maps.labels, minlength=9), counts)
    with pytest.raises(CnnkitError, match=r"per_class\[0\] must be an int, got .*1\.5"):
        make_wafer_maps(np.full(9, 1.5), 16, rng=np.random.default_rng(0))
