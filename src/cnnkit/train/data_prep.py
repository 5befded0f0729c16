"""Which data a run trains on: open a path, take its given splits or cut (and save) a stratified
one, and read off the input channels and the class names."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.data.sources import DataSource, open_source
from cnnkit.data.splits import load_split, save_split, split_of
from cnnkit.errors import CnnkitError


@dataclass(frozen=True)
class PreparedData:
    source: DataSource
    splits: dict[str, Any]  # name -> dataset of uint8 (C, H, W) images
    in_chans: int
    class_names: list[str]
    image_size: tuple[int, int] | None = None  # (H, W) of the first training image


def prepare_data(path: str, *, seed: int, run_dir: Path | None = None, saved_split: Path | None = None,
                 **source_options: Any) -> PreparedData:
    """Open `path` (`source_options` go to `open_source`), take its given train/val/test splits or
    cut a stratified 70/15/15 one, saved to RUN/split.json. `saved_split` (a run's split.json, for
    resume and eval) is reused instead of cutting anew, and refused if the data changed since."""
    source = open_source(path, seed=seed, **source_options)
    if len(source.classes) < 2:
        raise CnnkitError(f"{path}: one class only ({', '.join(map(str, source.classes)) or 'none'}): a classifier "
                          "needs at least two (one folder per class)")
    if source.has_given_splits:
        splits = {name: source.dataset(name) for name in source.splits}
        if "train" not in splits:
            raise CnnkitError(f"{path}: has splits {sorted(splits)} but no 'train'")
        record: dict[str, Any] = {"given": {name: len(ds) for name, ds in splits.items()}}
        if run_dir is not None:
            (run_dir / "split.json").write_text(json.dumps(record, indent=2))
    else:
        whole = source.dataset()
        reuse = saved_split is not None and saved_split.is_file()
        split = load_split(saved_split) if reuse else split_of(whole, seed=seed)
        splits = split.subsets(whole)
        if run_dir is not None and not reuse:
            save_split(split, run_dir / "split.json")
    image, _ = splits["train"][0]
    return PreparedData(source, splits, int(image.shape[0]), list(source.classes),
                        (int(image.shape[1]), int(image.shape[2])))
