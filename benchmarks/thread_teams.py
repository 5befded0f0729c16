"""Batch-1 and batch-16 forward of resnet18 at 224 px driven from a worker thread (as `cnnkit serve`
runs it), with and without a second OpenMP team in the process.

Every thread that runs torch on several threads forms its own OpenMP (libgomp) team. Once the
teams' threads outnumber the cores, libgomp sleeps instead of spinning between parallel regions.
Three layouts, each in a fresh process (a team lives as long as its thread), taking turns:

- `main`: the forward in the main thread, the only team (a script's usual layout);
- `worker, main team`: the model loaded and run once in the main thread on all threads, then
  the forward in a worker thread (what `cnnkit serve` does: it loads the model in the main thread);
- `worker only`: the main thread kept on one thread, the forward in a worker thread.

Prints the median ms per image of each and the batch-16 vs batch-1 gain (how much batching can win).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = ("main", "worker, main team", "worker only")


def measure(layout: str, repeats: int) -> dict[str, float]:
    """(ms per image at batch 1, at batch 16) of one layout, in this process."""
    import cnnkit

    threads = torch.get_num_threads()
    if layout == "worker only":
        torch.set_num_threads(1)
    torch.manual_seed(0)
    model = cnnkit.create_model("resnet18", num_classes=2).eval().to(memory_format=torch.channels_last)
    one = torch.randn(1, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    sixteen = torch.randn(16, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    if layout == "worker, main team":
        with torch.inference_mode():
            model(one)  # the main thread forms its team, as loading and warming up a model does

    def rounds() -> dict[str, float]:
        single, batched = [], []
        with torch.inference_mode():
            for i in range(repeats + 2):
                started = time.perf_counter()
                model(one)
                middle = time.perf_counter()
                model(sixteen)
                ended = time.perf_counter()
                if i >= 2:  # two rounds warm up
                    single.append(1000 * (middle - started))
                    batched.append(1000 * (ended - middle) / 16)
        return {"batch1": statistics.median(single), "batch16": statistics.median(batched)}

    if layout == "main":
        return rounds()
    with ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        return pool.submit(rounds).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3, help="fresh processes per layout, taken in turns")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per process")
    parser.add_argument("--layout", choices=LAYOUTS, help=argparse.SUPPRESS)  # one measurement (a child)
    args = parser.parse_args()
    if args.layout is not None:
        print(json.dumps(measure(args.layout, args.repeats)))
        return
    from cnnkit.device_info import device_info

    print(f"# {device_info().describe()}")
    print(f"# load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")}
    found: dict[str, list[dict[str, float]]] = {layout: [] for layout in LAYOUTS}
    for _ in range(args.turns):
        for layout in LAYOUTS:
            out = subprocess.run([sys.executable, __file__, "--layout", layout, "--repeats", str(args.repeats)],
                                 env=env, check=True, capture_output=True, text=True).stdout
            found[layout].append(json.loads(out.strip().splitlines()[-1]))
    print(f"\n{'layout':<20} {'batch 1 ms':>11} {'batch 16 ms/img':>16} {'gain':>6}   (median of {args.turns} processes; "
          "each process: median of its rounds)")
    medians = {}
    for layout, runs in found.items():
        one = statistics.median(r["batch1"] for r in runs)
        sixteen = statistics.median(r["batch16"] for r in runs)
        medians[layout] = one
        spread = ", ".join(f"{r['batch1']:.1f}" for r in runs)
        print(f"{layout:<20} {one:>11.1f} {sixteen:>16.1f} {one / sixteen:>5.2f}x   (batch 1 per process: {spread})")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    slower = medians["worker, main team"] / medians["worker only"]
    print(f"thread_teams: batch-1 forward {slower:.2f}x slower in a worker thread beside the main thread's team")


if __name__ == "__main__":
    main()
