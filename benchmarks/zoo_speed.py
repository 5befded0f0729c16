"""CPU inference throughput of zoo models, NCHW vs channels_last (NHWC) memory format.

Each model runs in eval mode under `torch.inference_mode` on a random (batch, 3, 224, 224) input:
`--warmup` untimed batches, then `--reps` timed batches, taking turns between the two formats so
that load from other processes hits both alike; the median batch time gives images/s. Prints a
table with the channels_last / NCHW ratio per model; last line
`zoo_speed: <geometric-mean channels_last speed-up>x`.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn

import cnnkit
from cnnkit.device_info import device_info

DEFAULT_MODELS = ("resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "convnext_tiny")


@dataclass(frozen=True)
class SpeedRow:
    """Median throughput (images/s) of one model in both memory formats."""

    model: str
    nchw: float
    channels_last: float

    @property
    def speedup(self) -> float:
        return self.channels_last / self.nchw


def _time_batch(model: nn.Module, batch: torch.Tensor) -> float:
    start = time.perf_counter()
    model(batch)
    return time.perf_counter() - start


def measure(name: str, *, batch_size: int, size: int, warmup: int, reps: int, seed: int) -> SpeedRow:
    """Throughput of model `name` in NCHW and channels_last, measured in alternation."""
    generator = torch.Generator().manual_seed(seed)
    model = cnnkit.create_model(name).eval()
    images = torch.randn(batch_size, 3, size, size, generator=generator)
    # Two resident copies so the formats can take turns; `.to(memory_format=...)` works in place.
    pairs = {
        "nchw": (model, images),
        "channels_last": (
            copy.deepcopy(model).to(memory_format=torch.channels_last),
            images.to(memory_format=torch.channels_last),
        ),
    }
    times: dict[str, list[float]] = {key: [] for key in pairs}
    with torch.inference_mode():
        for rep in range(warmup + reps):
            for key, (net, batch) in pairs.items():
                elapsed = _time_batch(net, batch)
                if rep >= warmup:
                    times[key].append(elapsed)
    rates = {key: batch_size / statistics.median(values) for key, values in times.items()}
    return SpeedRow(name, rates["nchw"], rates["channels_last"])


def geometric_mean(values: list[float]) -> float:
    """exp(mean(log v)): the average of ratios."""
    return math.exp(sum(math.log(v) for v in values) / len(values))


def format_table(rows: list[SpeedRow]) -> str:
    """The results as an aligned text table."""
    lines = [f"{'model':18s} {'NCHW img/s':>11s} {'NHWC img/s':>11s} {'NHWC/NCHW':>10s}  faster?"]
    for row in rows:
        verdict = "yes" if row.speedup > 1.05 else ("no" if row.speedup < 0.95 else "same (within 5%)")
        lines.append(f"{row.model:18s} {row.nchw:11.1f} {row.channels_last:11.1f} {row.speedup:9.2f}x  {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(device_info().describe(), flush=True)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    available = set(cnnkit.list_models())
    missing = [name for name in args.models if name not in available]
    if missing:
        print(f"zoo_speed: skipping unregistered models {missing}", file=sys.stderr)
    names = [name for name in args.models if name in available]
    if not names:
        print("zoo_speed: no registered model to measure", file=sys.stderr)
        return 2
    print(f"batch {args.batch_size}, {args.size}x{args.size}, {torch.get_num_threads()} threads, "
          f"median of {args.reps} after {args.warmup} warm-up")
    rows = []
    for name in names:
        rows.append(measure(name, batch_size=args.batch_size, size=args.size, warmup=args.warmup, reps=args.reps,
                            seed=args.seed))
        print(format_table(rows[-1:]).splitlines()[1], flush=True)
    print()
    print(format_table(rows))
    print(f"zoo_speed: {geometric_mean([row.speedup for row in rows]):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
