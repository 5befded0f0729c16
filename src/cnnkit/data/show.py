"""`cnnkit data show PATH --out grid.png`: a labelled grid of samples, to see the data before training.

`sample_grid` computes the grid (an (H, W, 3) uint8 array plus captions and cell boxes);
`render_png` draws the captions and writes the file. Samples are picked class by class so
every class appears; with augmentation (the default for photos) it shows what the training
pipeline makes of them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from cnnkit.data.pipeline import augments_by_default, train_pipeline
from cnnkit.data.transforms import MatchChannels, Transform
from cnnkit.data.transforms_geometric import resize
from cnnkit.errors import CnnkitError
from cnnkit.models.base import DefaultCfg

BACKGROUND = 40  # dark grey around letterboxed images and between cells
CAPTION_HEIGHT = 14
# Images whose largest value is below this are label maps (e.g. wafer maps 0/1/2), not photos.
LOW_RANGE_MAX = 16


@dataclass(frozen=True)
class SampleGrid:
    """The grid image (H, W, 3) uint8, each cell's caption, and its (top, left) in pixels."""

    image: np.ndarray
    captions: list[str]
    origins: list[tuple[int, int]]
    cell: int


def choose_samples(targets: list[int], n: int, generator: torch.Generator) -> list[int]:
    """Up to `n` indices, taking classes in turn (random order within each class) so all show."""
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(targets):
        by_class.setdefault(int(label), []).append(index)
    queues = []
    for label in sorted(by_class):
        members = by_class[label]
        order = torch.randperm(len(members), generator=generator).tolist()
        queues.append([members[i] for i in order])
    chosen: list[int] = []
    while len(chosen) < n and any(queues):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop(0))
    return chosen


def stretch_levels(img: torch.Tensor) -> torch.Tensor:
    """Map [0, max] to [0, 255] so label-like images (values 0, 1, 2) are visible."""
    top = int(img.max())
    if top == 0:
        return img
    return (img.float() * (255.0 / top)).round().to(torch.uint8)


def fit_to_cell(img: torch.Tensor, cell: int) -> torch.Tensor:
    """(C, H, W) uint8 -> (3, cell, cell): aspect kept, centred on the background.

    Small images (e.g. 32x32 maps) are enlarged with nearest neighbour so pixels stay crisp.
    """
    img = MatchChannels(3)(img)
    height, width = img.shape[-2:]
    scale = cell / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    fitted = resize(img, size, interpolation="nearest" if scale > 1 else "bilinear")
    canvas = torch.full((3, cell, cell), BACKGROUND, dtype=torch.uint8)
    top, left = (cell - size[0]) // 2, (cell - size[1]) // 2
    canvas[:, top : top + size[0], left : left + size[1]] = fitted
    return canvas


def sample_grid(
    dataset: Dataset,
    *,
    n: int = 16,
    columns: int | None = None,
    cell: int = 128,
    pad: int = 4,
    seed: int = 0,
    transform: Transform | None = None,
    stretch: bool = False,
) -> SampleGrid:
    """A grid of `n` samples of `dataset` (items (uint8 (C, H, W), label)), captioned by class.

    `transform` (random ones draw from a generator seeded by `seed`) is applied to each image
    first; `stretch` rescales each image's levels to 0-255 (see `stretch_levels`).
    """
    if n < 1 or cell < 8:
        raise ValueError(f"need n >= 1 and cell >= 8, got n={n}, cell={cell}")
    generator = torch.Generator().manual_seed(seed)
    targets = list(getattr(dataset, "targets", [])) or [dataset[i][1] for i in range(len(dataset))]
    indices = choose_samples(targets, n, generator)
    if not indices:
        raise CnnkitError("the dataset is empty: nothing to show")
    classes = list(getattr(dataset, "classes", []))
    columns = columns or int(np.ceil(np.sqrt(len(indices))))
    rows = int(np.ceil(len(indices) / columns))
    stride = cell + pad
    grid = np.full((rows * stride + pad, columns * stride + pad, 3), BACKGROUND, dtype=np.uint8)
    captions, origins = [], []
    for position, index in enumerate(indices):
        image, label = dataset[index]
        if transform is not None:
            image = transform(image, generator=generator)
        if stretch:
            image = stretch_levels(image)
        top = pad + (position // columns) * stride
        left = pad + (position % columns) * stride
        grid[top : top + cell, left : left + cell] = fit_to_cell(image, cell).permute(1, 2, 0).numpy()
        captions.append(classes[label] if label < len(classes) else str(label))
        origins.append((top, left))
    return SampleGrid(grid, captions, origins, cell)


def render_png(grid: SampleGrid, path: str | Path) -> Path:
    """Write the grid with each caption in a strip under its cell; returns the path written."""
    height, width, _ = grid.image.shape
    rows = sorted({top for top, _ in grid.origins})
    canvas = Image.new("RGB", (width, height + CAPTION_HEIGHT * len(rows)), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(canvas)
    for row_number, row_top in enumerate(rows):
        band = grid.image[row_top : row_top + grid.cell]
        canvas.paste(Image.fromarray(np.ascontiguousarray(band)), (0, row_top + row_number * CAPTION_HEIGHT))
    for caption, (top, left) in zip(grid.captions, grid.origins):
        text_top = top + rows.index(top) * CAPTION_HEIGHT + grid.cell + 1
        draw.text((left + 2, text_top), caption[: grid.cell // 6], fill=(235, 235, 235))
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise CnnkitError(f"cannot write {path}: folder {path.parent} does not exist")
    canvas.save(path)
    return path


def run_show(args: argparse.Namespace) -> int:
    """The `cnnkit data show` command: open the data, compute the grid, write the PNG."""
    from cnnkit.data.sources import open_source

    source = open_source(args.path, seed=args.seed)
    split = args.split if args.split is not None else ("train" if "train" in source.splits else None)
    dataset = source.nonempty(split)
    first = dataset[0][0]
    augment = args.augment if args.augment is not None else augments_by_default(*first.shape[1:])
    transform = train_pipeline(DefaultCfg(input_size=(3, args.cell, args.cell))).sample if augment else None
    stretch = args.stretch or int(first.max()) < LOW_RANGE_MAX
    grid = sample_grid(
        dataset, n=args.n, columns=args.columns, cell=args.cell, seed=args.seed, transform=transform, stretch=stretch
    )
    written = render_png(grid, args.out)
    note = " (levels stretched to 0-255)" if stretch else ""
    print(f"wrote {written}: {len(grid.captions)} samples from {source.location}{note}")
    return 0


def add_show_parser(data_subparsers: argparse._SubParsersAction) -> None:
    """Add `show` under `cnnkit data`."""
    from cnnkit.data.commands import positive_int  # commands imports this module: import when registering

    show = data_subparsers.add_parser("show", help="save a labelled grid of sample images as a PNG")
    show.add_argument("path", help="image folder, IDX or CIFAR folder, .npz file, or 'wafer'")
    show.add_argument("--out", required=True, help="PNG file to write")
    show.add_argument("--n", type=positive_int, default=16, help="number of samples (classes taken in turn)")
    show.add_argument("--columns", type=positive_int, default=None, help="grid columns (default: about square)")
    show.add_argument("--cell", type=positive_int, default=128, help="cell size in pixels")
    show.add_argument("--split", default=None, help="split to show (default: train when there is one)")
    show.add_argument("--seed", type=int, default=0, help="seed for the choice of samples and augmentation")
    show.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                      help="show the training augmentation of each sample (default: on for photos, off below 64 px)")
    show.add_argument(
        "--stretch", action="store_true", help="rescale levels to 0-255 (automatic for images with max < 16)"
    )
    show.set_defaults(func=run_show)
