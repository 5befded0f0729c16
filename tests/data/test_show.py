"""`cnnkit data show`: sample choice, cell layout by known answers, PNG output, the sub-command."""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cnnkit.data.show import (
    BACKGROUND,
    add_show_parser,
    choose_samples,
    fit_to_cell,
    render_png,
    sample_grid,
    stretch_levels,
)
from cnnkit.data.sources import open_source


class Squares(Dataset):
    """Item i: a (3, 10, 10) image filled with grey level 10 * i + 5; label i % 3."""

    classes = ["red", "green", "blue"]

    def __init__(self, n: int = 9) -> None:
        self.targets = [i % 3 for i in range(n)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.full((3, 10, 10), 10 * index + 5, dtype=torch.uint8), self.targets[index]


def test_choose_samples_takes_classes_in_turn():
    targets = [0, 0, 0, 0, 1, 2, 2]
    chosen = choose_samples(targets, 5, torch.Generator().manual_seed(0))
    assert [targets[i] for i in chosen] == [0, 1, 2, 0, 2]
    assert len(set(chosen)) == 5


def test_fit_to_cell_letterboxes_and_enlarges_crisply():
    wide = torch.zeros((1, 2, 4), dtype=torch.uint8)
    wide[0, :, 2:] = 200
    cell = fit_to_cell(wide, 8)
    assert cell.shape == (3, 8, 8)
    assert (cell[:, :2] == BACKGROUND).all() and (cell[:, 6:] == BACKGROUND).all()
    assert (cell[:, 2:6, :4] == 0).all() and (cell[:, 2:6, 4:] == 200).all()


def test_grid_cells_hold_the_samples_with_their_captions():
    grid = sample_grid(Squares(), n=6, columns=3, cell=16, pad=2, seed=1)
    assert grid.image.shape == (2 * 18 + 2, 3 * 18 + 2, 3)
    assert len(grid.captions) == 6 and grid.captions[:3] == ["red", "green", "blue"]
    for caption, (top, left) in zip(grid.captions, grid.origins):
        block = grid.image[top : top + 16, left : left + 16]
        level = int(block[0, 0, 0])
        assert (block == level).all()
        assert Squares.classes[((level - 5) // 10) % 3] == caption
    assert (grid.image[0] == BACKGROUND).all()


def test_stretch_makes_label_maps_visible():
    assert stretch_levels(torch.tensor([[[0, 1, 2]]], dtype=torch.uint8)).tolist() == [[[0, 128, 255]]]


def test_render_png_writes_the_grid_with_caption_strips(tmp_path):
    grid = sample_grid(Squares(), n=4, columns=2, cell=16, pad=2)
    path = render_png(grid, tmp_path / "grid.png")
    with Image.open(path) as written:
        assert written.size == (grid.image.shape[1], grid.image.shape[0] + 2 * 14)
        assert np.array_equal(np.asarray(written)[2:18, 2:18], grid.image[2:18, 2:18])


def _run_show(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_show_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_show_command_on_an_image_folder(tmp_path, capsys):
    for name, colour in [("cats", (250, 0, 0)), ("dogs", (0, 0, 250))]:
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (20, 12), colour).save(tmp_path / "data" / name / f"{i}.png")
    out = tmp_path / "grid.png"
    assert _run_show(["show", str(tmp_path / "data"), "--out", str(out), "--cell", "32"]) == 0
    assert "4 samples" in capsys.readouterr().out
    with Image.open(out) as written:
        pixels = np.asarray(written.convert("RGB"))
    assert (pixels[4 + 16, 4 + 16] == (250, 0, 0)).all()
    assert (pixels[4 + 16, 4 + 36 + 16] == (0, 0, 250)).all()


def test_show_command_on_hymenoptera(hymenoptera_dir, tmp_path):
    out = tmp_path / "hymenoptera.png"
    assert _run_show(["show", str(hymenoptera_dir), "--out", str(out), "--n", "4", "--augment"]) == 0
    with Image.open(out) as written:
        assert written.size == (2 * 132 + 4, 2 * 132 + 4 + 2 * 14)


def test_show_command_on_the_wafer_maps(tmp_path):
    out = tmp_path / "wafer.png"
    assert _run_show(["show", "wafer", "--out", str(out), "--n", "9", "--cell", "32"]) == 0
    with Image.open(out) as written:
        pixels = np.asarray(written.convert("RGB"))[4 : 4 + 32, 4 : 4 + 32]
    # The first cell is the first chosen map at its own size (32 px): shown pixel for pixel.
    dataset = open_source("wafer", seed=0).dataset(None)
    first = choose_samples(list(dataset.targets), 1, torch.Generator().manual_seed(0))[0]
    expected = dataset[first][0][0].numpy()
    assert len(np.unique(expected)) == 3
    for channel in range(3):
        assert np.array_equal(pixels[..., channel], expected)
