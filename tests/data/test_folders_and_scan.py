"""Image folders (classes, hidden files, given splits, empty classes) and the bad-file scan."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.data.folders import FolderDataset, list_image_folder
from cnnkit.data.scan import find_format_outliers, scan_images
from cnnkit.data.decode import ImageHeader
from cnnkit.data.sources import open_source
from cnnkit.errors import CnnkitError


def _image(path, size=(8, 6), colour=(10, 20, 30), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


def _bad_files(folder):
    """One of each kind of bad file, and the words its reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is a text file named like an image")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "whole.jpg")
    data = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "whole.jpg").unlink()
    _image(folder / "huge.png", size=(400, 300))
    return {"zero.jpg": "empty file", "notes.jpg": "not a readable image", "truncated.jpg": "truncated",
            "huge.png": "over the pixel limit"}


def test_classes_sorted_hidden_ignored_nested_found(tmp_path):
    _image(tmp_path / "zebra" / "a.png")
    _image(tmp_path / "Apple" / "deep" / "nested" / "b.PNG")
    _image(tmp_path / "apple" / "c.jpg")
    _image(tmp_path / "apple" / ".hidden.png")
    _image(tmp_path / "apple" / ".ipynb_checkpoints" / "d.png")
    _image(tmp_path / ".ipynb_checkpoints" / "e.png")
    (tmp_path / "apple" / ".DS_Store").write_bytes(b"\0\0")
    (tmp_path / "apple" / "README.txt").write_text("about apples")
    listing = list_image_folder(tmp_path)
    assert listing.classes == ["Apple", "apple", "zebra"]
    files = [(p.split("/")[-1], label) for p, label in listing.splits["all"]]
    assert files == [("b.PNG", 0), ("c.jpg", 1), ("a.png", 2)]
    assert [p.split("/")[-1] for p in listing.ignored] == ["README.txt"]


def test_given_splits_share_class_numbers(tmp_path):
    _image(tmp_path / "train" / "cat" / "1.png")
    _image(tmp_path / "train" / "dog" / "2.png")
    _image(tmp_path / "val" / "dog" / "3.png")
    _image(tmp_path / "test" / "cat" / "4.png")
    source = open_source(tmp_path)
    assert source.has_given_splits and sorted(source.splits) == ["test", "train", "val"]
    assert source.classes == ["cat", "dog"]
    assert source.splits["val"].targets == [1] and source.splits["test"].targets == [0]
    image, label = source.dataset("train")[1]
    assert image.dtype == torch.uint8 and image.shape == (3, 6, 8) and label == 1


def test_valid_and_validation_folders_are_the_val_split(tmp_path):
    # Kaggle-style trees name the validation folder "valid" or "Validation"; the trainer reads "val".
    _image(tmp_path / "Train" / "cat" / "1.png")
    _image(tmp_path / "valid" / "cat" / "2.png")
    source = open_source(tmp_path)
    assert sorted(source.splits) == ["train", "val"]
    assert [p.split("/")[-2:] for p in source.splits["val"].files] == [["cat", "2.png"]]
    _image(tmp_path / "validation" / "cat" / "3.png")
    with pytest.raises(CnnkitError, match=r"valid and .*validation are both the 'val' split"):
        open_source(tmp_path)


def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    _image(tmp_path / "full" / "a.png")
    (tmp_path / "empty" / ".ipynb_checkpoints").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(CnnkitError, match=r"empty class folder: .*empty"):
        list_image_folder(tmp_path)
    listing = list_image_folder(tmp_path, allow_empty=True)
    assert listing.classes == ["empty", "full"] and [label for _, label in listing.splits["all"]] == [1]


def test_scan_skips_and_lists_each_kind_of_bad_file(tmp_path):
    expected = _bad_files(tmp_path / "things")
    _image(tmp_path / "things" / "good.png")
    _image(tmp_path / "others" / "fine.jpg")
    source = open_source(tmp_path, max_pixels=50_000, workers=2)
    reasons = {bad.path.split("/")[-1]: bad.reason for bad in source.bad_files}
    assert sorted(reasons) == sorted(expected)
    for name, words in expected.items():
        assert words in reasons[name], (name, reasons[name])
    dataset = source.dataset()
    assert sorted(f.split("/")[-1] for f in dataset.files) == ["fine.jpg", "good.png"]
    assert all(dataset[i][0].shape == (3, 6, 8) for i in range(len(dataset)))


def test_unscanned_bad_file_is_skipped_at_first_load(tmp_path):
    expected = _bad_files(tmp_path / "things")
    _image(tmp_path / "things" / "good.png", colour=(1, 2, 3))
    source = open_source(tmp_path, scan=False, max_pixels=50_000)
    dataset = source.dataset()
    assert len(dataset) == 5
    images = [dataset[i][0] for i in range(len(dataset))]
    assert all(tuple(image[:, 0, 0].tolist()) == (1, 2, 3) for image in images)
    assert sorted(bad.path.split("/")[-1] for bad in dataset.bad_files) == sorted(expected)


def test_scan_cache_reuses_unchanged_files(tmp_path):
    good = _image(tmp_path / "a" / "good.png")
    bad = tmp_path / "a" / "bad.png"
    bad.write_text("garbage")
    cache = tmp_path / "scan.json"
    first = scan_images([good, bad], cache_path=cache)
    assert [b.path for b in first.bad] == [str(bad)]
    entries = json.loads(cache.read_text())["entries"]
    assert set(entries) == {str(good), str(bad)}
    # A cached entry is trusted while size and mtime match: mark it to see it reused.
    entries[str(good)]["header"]["width"] = 999
    cache.write_text(json.dumps({"version": 1, "max_pixels": 89_478_485, "entries": entries}))
    assert scan_images([good, bad], cache_path=cache).headers[str(good)].width == 999
    _image(good, size=(5, 5))  # changed file: rescanned
    assert scan_images([good, bad], cache_path=cache).headers[str(good)].width == 5
    assert scan_images([good, bad], cache_path=cache, max_pixels=10).bad[0].reason.startswith("over")


def test_format_outliers_need_a_dominant_format():
    jpegs = {f"p{i}.jpg": ImageHeader(10, 10, "RGB", "JPEG") for i in range(199)}
    one_gif = {**jpegs, "x.gif": ImageHeader(10, 10, "P", "GIF")}
    assert [b.path for b in find_format_outliers(one_gif)] == ["x.gif"]
    mixed = {**one_gif, **{f"q{i}.png": ImageHeader(10, 10, "RGB", "PNG") for i in range(20)}}
    assert find_format_outliers(mixed) == []
    small = {f"p{i}.jpg": ImageHeader(10, 10, "RGB", "JPEG") for i in range(50)} | {"x.gif": one_gif["x.gif"]}
    assert find_format_outliers(small) == []


def test_hymenoptera_scan_finds_the_placeholder_gif(hymenoptera_dir):
    kept = open_source(hymenoptera_dir)
    assert [s.path.split("/")[-1] for s in kept.suspects] == ["imageNotFound.gif"] and not kept.bad_files
    assert [len(kept.splits[s]) for s in ("train", "val")] == [245, 153], "a readable GIF is kept by default"
    source = open_source(hymenoptera_dir, drop_format_outliers=True)
    assert [bad.path.split("/")[-1] for bad in source.bad_files] == ["imageNotFound.gif"]
    assert [len(source.splits[s]) for s in ("train", "val")] == [244, 153]
    counts = {s: np.bincount(source.splits[s].targets).tolist() for s in ("train", "val")}
    assert counts == {"train": [123, 121], "val": [70, 83]}  # the README's photo counts


def test_folder_dataset_decodes_lazily_with_size_hint(tmp_path):
    big = _image(tmp_path / "c" / "big.jpg", size=(800, 600))
    dataset = FolderDataset([str(big)], [0], ["c"], size_hint=100, mode="L")
    image, label = dataset[0]
    assert image.shape == (1, 150, 200) and label == 0


def test_a_readable_format_outlier_is_kept_and_listed_as_a_suspect(tmp_path, capsys):
    """One valid palette GIF among 120 JPEGs: a suspect, kept unless --drop-outliers."""
    from cnnkit.cli import main

    for i in range(120):
        _image(tmp_path / ("a" if i % 2 else "b") / f"{i}.jpg")
    Image.new("P", (8, 6), 3).save(tmp_path / "a" / "odd.gif")
    source = open_source(tmp_path)
    assert [s.path.split("/")[-1] for s in source.suspects] == ["odd.gif"] and not source.bad_files
    assert len(source.dataset()) == 121
    assert len(open_source(tmp_path, drop_format_outliers=True).dataset()) == 120
    assert main(["data", "inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "bad files: 0" in out and "format outliers (readable, kept" in out and "odd.gif" in out


def test_links_bad_crc_folders_named_like_images_and_a_one_pixel_image_never_stop_a_loader(tmp_path):
    """The rarer kinds: a symlink loop, a dangling link, a PNG whose IHDR CRC is wrong, a folder
    named x.png; listed by the scan, or at first load inside two DataLoader workers."""
    from cnnkit.data.loader import make_loader
    from cnnkit.data.pipeline import train_pipeline
    from cnnkit.models.base import DefaultCfg

    things = tmp_path / "things"
    _image(things / "tiny.png", size=(1, 1), colour=(9, 9, 9))
    for i in range(3):
        _image(things / f"ok{i}.png")
    (things / "loop1.jpg").symlink_to(things / "loop2.jpg")
    (things / "loop2.jpg").symlink_to(things / "loop1.jpg")
    (things / "dangling.jpg").symlink_to(things / "gone.jpg")
    png = bytearray((things / "ok0.png").read_bytes())
    png[29] ^= 0xFF  # the last byte of IHDR's CRC
    (things / "badcrc.png").write_bytes(bytes(png))
    _image(things / "x.png" / "inside.png")  # a folder named like an image: walked into, not opened
    expected = {"loop1.jpg": "cannot read", "loop2.jpg": "cannot read", "dangling.jpg": "cannot read",
                "badcrc.png": "not a readable image"}
    scanned = open_source(tmp_path)
    reasons = {bad.path.split("/")[-1]: bad.reason for bad in scanned.bad_files}
    assert sorted(reasons) == sorted(expected) and all(expected[n] in reasons[n] for n in expected)
    assert len(scanned.dataset()) == 5
    unscanned = open_source(tmp_path, scan=False).dataset()
    loader = make_loader(unscanned, batch_size=3, train=True, num_workers=2,
                         pipeline=train_pipeline(DefaultCfg(input_size=(3, 8, 8))))
    batches = list(loader)
    assert [tuple(images.shape) for images, _ in batches] == [(3, 3, 8, 8)] * 3
