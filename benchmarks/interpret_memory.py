"""Memory of `cnnkit interpret`'s streaming pass: peak resident memory after 10k and after 100k images
(after a warm-up pass of 1k, which pays the one-time allocations: imports, allocator pools).

The error analysis keeps confusion counts and a heap of the top-k losses (dataset indices), so
100k images must cost no more memory than 10k. The images are 32x32 wafer maps served lazily
(a pool of 900 reused by index), through the run's own loader and a `compact_cnn`.
For contrast, the memory an in-memory approach (fastai's Interpretation keeps every decoded
input) would need for the same items is printed: N x C x H x W float32.
Last line: `interpret_memory: <growth from 10k to 100k images in MiB> MiB`.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from torch.utils.data import Dataset

from cnnkit.data.sources import open_source
from cnnkit.device_info import device_info
from cnnkit.explain.interpret import interpret_split
from cnnkit.explain.run_access import RunWithData
from cnnkit.inference import Predictor, RunSummary
from cnnkit.models.factory import create_model
from cnnkit.train.data_prep import PreparedData


class LazyWaferItems(Dataset):
    """`length` items cycling through the 900 built-in wafer maps (no per-item storage)."""

    def __init__(self, length: int) -> None:
        source = open_source("wafer", seed=0)
        self.pool, self.classes, self.length = source.dataset(), source.classes, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        return self.pool[index % len(self.pool)]

    def with_decode_hint(self, size_hint) -> LazyWaferItems:
        return self  # in-memory maps: nothing to decode


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    args = parser.parse_args()
    print(f"# {device_info().describe()}")
    torch.manual_seed(0)
    model = create_model("compact_cnn", num_classes=9, in_chans=1).eval()
    for size in (1000, args.small, args.large):
        dataset = LazyWaferItems(size)
        data = PreparedData(source=None, splits={"test": dataset}, in_chans=1, class_names=list(dataset.classes))
        summary = RunSummary("compact_cnn", tuple(dataset.classes), model.default_cfg)
        run = RunWithData(None, Predictor.from_model(model, dataset.classes), summary, data, 0)
        start = time.perf_counter()
        interpretation, _, _ = interpret_split(run, "test", top_k=16, batch_size=256)
        seconds = time.perf_counter() - start
        peak = peak_rss_mib()
        if size == 1000:
            continue  # warm-up
        if size == args.small:
            small_peak = peak
        in_memory = size * int(np.prod(model.default_cfg.input_size)) * 4 / 2**20
        print(f"{size:>7} images: {seconds:6.1f} s ({size / seconds:,.0f} img/s), peak RSS {peak:7.1f} MiB, "
              f"{int(interpretation.confusion.sum())} counted, {len(interpretation.top_losses)} top losses kept; "
              f"keeping every input would take {in_memory:,.0f} MiB")
    print(f"interpret_memory: {peak - small_peak:.1f} MiB")


if __name__ == "__main__":
    main()
