"""`cnnkit serve` under load: dynamic batching vs batch size 1, and the server's overhead at batch 1.

A resnet18 at 224 px with random weights (seeded) is saved as a run (throughput does not depend
on the weights) and served by `cnnkit serve` in a subprocess on loopback, twice: batching on
(`--max-batch-size 16 --max-delay-ms 5`, the defaults) and `--max-batch-size 1`, both running
at once (the idle one waits). httpx async clients post real JPEGs (hymenoptera when present, else
synthetic photo-like JPEGs) at 1, 8 and 32 concurrent clients for `--seconds` per server and
level, in `--rounds` turns taken alternately; throughput, p50/p95/p99 latency and errors are
printed. Overhead at batch 1: the median paired difference between one request to the
`--max-batch-size 1` server and a bare `Predictor.predict(bytes)` of the same image run right
before it in this process (`paired_overhead`). The ceiling of batching's gain on the machine is
printed beside it: the model alone, per image, at batch 16 vs batch 1 (`forward_gain`, in a
worker thread as the server runs it). Stops by itself.
Last line `serve_load: <batching / batch-1 throughput at 32 clients>x`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

import cnnkit
from cnnkit.device_info import device_info
from cnnkit.errors import CnnkitError
from cnnkit.inference import Predictor
from cnnkit.train.distributed import checked_device
from cnnkit.train.run_summary import RunSummary, write_summary

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HYMENOPTERA = PROJECT_ROOT.parent / "shared" / "datasets" / "hymenoptera"
CONCURRENCY = (1, 8, 32)
BATCHING, SINGLE = "batching (16, 5 ms)", "batch size 1"


@dataclass(frozen=True)
class Load:
    clients: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    handler_ms: list[float]  # the server's own `latency_ms`: from its handler's start to the answer

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def save_random_run(run_dir: Path) -> None:
    torch.manual_seed(0)
    model = cnnkit.create_model("resnet18", num_classes=2)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(run_dir / "best.safetensors"))
    write_summary(run_dir, RunSummary(model_name="resnet18", class_names=("ants", "bees"),
                                      default_cfg=model.default_cfg))


def load_images(folder: Path, count: int) -> list[bytes]:
    files = sorted(folder.rglob("*.jpg"))[:count] if folder.is_dir() else []
    if files:
        return [f.read_bytes() for f in files]
    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        y, x = np.mgrid[0:375, 0:500]
        pixels = np.stack([x * 0.5, y * 0.6, 255 - x * 0.4], axis=2) + rng.normal(0, 20, (375, 500, 3))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(run_dir: Path, port: int, extra: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")}
    process = subprocess.Popen([sys.executable, "-m", "cnnkit", "serve", str(run_dir), "--port", str(port), *extra],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cnnkit serve exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("cnnkit serve did not become ready within 120 s")


async def drive(url: str, images: list[bytes], clients: int, seconds: float) -> Load:
    latencies: list[float] = []
    handler: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def worker(offset: int, end: float, record: bool) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < end:
                data = images[i % len(images)]
                i += clients
                started = time.perf_counter()
                try:
                    response = await client.post("/predict", files={"file": ("photo.jpg", data, "image/jpeg")})
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if record:
                    latencies.append(1000 * (time.perf_counter() - started))
                    errors += not ok
                    if ok:
                        handler.append(response.json()["latency_ms"])

        warm_end = time.perf_counter() + min(2.0, seconds / 4)
        await asyncio.gather(*(worker(c, warm_end, False) for c in range(clients)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(c, started + seconds, True) for c in range(clients)))
        elapsed = time.perf_counter() - started
    return Load(clients, len(latencies), errors, elapsed, latencies, handler)


def merge(loads: list[Load]) -> Load:
    return Load(loads[0].clients, sum(x.requests for x in loads), sum(x.errors for x in loads),
                sum(x.seconds for x in loads), [t for x in loads for t in x.latencies_ms],
                [t for x in loads for t in x.handler_ms])


def batch_totals(url: str) -> tuple[float, float]:
    """(samples, forward passes) so far, from the server's batch-size histogram."""
    values = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(("cnnkit_batch_size_sum ", "cnnkit_batch_size_count ")):
            name, value = line.split()
            values[name] = float(value)
    return values["cnnkit_batch_size_sum"], values["cnnkit_batch_size_count"]


def paired_overhead(url: str, run_dir: Path, images: list[bytes], repeats: int, device: str,
                    threads: int) -> tuple[float, float, float]:
    """(median bare ms, median server ms, median of the paired differences) at batch 1: each round
    runs a bare `Predictor.predict(bytes)` then the same image through the server, one after the
    other, so both see the same moment's load. Runs in a worker thread on `threads` torch threads,
    as the server runs its forward."""
    predictor = Predictor.from_run(run_dir, batch_size=1, device=device)

    def rounds() -> tuple[float, float, float]:
        bare, served = [], []
        with httpx.Client(base_url=url, timeout=60) as client:
            for i in range(repeats + 3):
                data = images[i % len(images)]
                started = time.perf_counter()
                predictor.predict(data, top_k=5)
                middle = time.perf_counter()
                response = client.post("/predict", files={"file": ("photo.jpg", data, "image/jpeg")})
                ended = time.perf_counter()
                response.raise_for_status()
                if i >= 3:  # the first rounds warm both sides up
                    bare.append(1000 * (middle - started))
                    served.append(1000 * (ended - middle))
        differences = [s - b for s, b in zip(served, bare)]
        return statistics.median(bare), statistics.median(served), statistics.median(differences)

    with ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        return pool.submit(rounds).result()


def forward_gain(run_dir: Path, images: list[bytes], batch: int, repeats: int, device: str,
                 threads: int) -> tuple[float, float]:
    """(median ms per image of the model alone at batch 1, at `batch`): uint8 samples decoded once,
    then normalise + forward only (logits copied to the CPU, which waits for an accelerator),
    alternating the two sizes, in a worker thread on `threads` torch threads."""
    predictor = Predictor.from_run(run_dir, batch_size=batch, device=device)
    samples = torch.stack([predictor.sample(data) for data in images[:batch]])

    def rounds() -> tuple[float, float]:
        single, batched = [], []
        for i in range(repeats + 1):
            started = time.perf_counter()
            predictor.backend.logits(predictor.normalise(samples[:1])).cpu()
            middle = time.perf_counter()
            predictor.backend.logits(predictor.normalise(samples)).cpu()
            ended = time.perf_counter()
            if i:  # the first round warms up
                single.append(1000 * (middle - started))
                batched.append(1000 * (ended - middle) / batch)
        return statistics.median(single), statistics.median(batched)

    with ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        return pool.submit(rounds).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=HYMENOPTERA)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per server and concurrency level")
    parser.add_argument("--rounds", type=int, default=2, help="turns each server takes per concurrency level")
    parser.add_argument("--bare-repeats", type=int, default=40)
    parser.add_argument("--forward-repeats", type=int, default=5, help="rounds of the model-alone batch 1 vs 16")
    parser.add_argument("--device", default="cpu", help="where the servers and the bare predictor run (cpu, cuda)")
    args = parser.parse_args()
    try:
        checked_device(args.device)  # before a model is saved or a server started
    except CnnkitError as error:
        parser.error(str(error))
    print(f"# {device_info().describe()}")
    threads = torch.get_num_threads()  # what each server's inference thread uses (its default)
    print(f"# load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"on {os.cpu_count()} CPUs")
    images = load_images(args.images, 64)
    source = "hymenoptera JPEGs" if args.images.is_dir() else "synthetic 500x375 JPEGs"
    print(f"# resnet18 at 224 px, random weights (seeded), {len(images)} {source}, torch {torch.__version__}, "
          f"device {args.device}, forward on {threads} torch threads")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        save_random_run(run_dir)
        configs = {BATCHING: ["--device", args.device], SINGLE: ["--max-batch-size", "1", "--device", args.device]}
        ports = {name: free_port() for name in configs}
        servers = {name: start_server(run_dir, ports[name], extra) for name, extra in configs.items()}
        results: dict[str, list[Load]] = {name: [] for name in configs}
        mean_batch: dict[int, float] = {}
        try:
            bare, served, overhead = paired_overhead(f"http://127.0.0.1:{ports[SINGLE]}", run_dir, images,
                                                     args.bare_repeats, args.device, threads)
            alone_1, alone_16 = forward_gain(run_dir, images, 16, args.forward_repeats, args.device, threads)
            for clients in CONCURRENCY:  # the two servers take turns (ABAB), so drifting load hits both
                parts: dict[str, list[Load]] = {name: [] for name in configs}
                batching_url = f"http://127.0.0.1:{ports[BATCHING]}"
                samples_before, passes_before = batch_totals(batching_url)
                for _ in range(args.rounds):
                    for name in configs:
                        url = f"http://127.0.0.1:{ports[name]}"
                        parts[name].append(asyncio.run(drive(url, images, clients, args.seconds / args.rounds)))
                for name in configs:
                    results[name].append(merge(parts[name]))
                samples, passes = batch_totals(batching_url)
                mean_batch[clients] = (samples - samples_before) / max(passes - passes_before, 1)
        finally:
            for server in servers.values():
                server.terminate()
                server.wait(30)
        for name, loads in results.items():
            print(f"\n{name}")
            print(f"{'clients':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7} "
                  f"{'requests':>9} {'handler p50':>12} {'mean batch':>11}")
            for load in loads:
                batch = f"{mean_batch[load.clients]:.1f}" if name == BATCHING else "1"
                print(f"{load.clients:>8} {load.throughput:>8.1f} {load.percentile(50):>8.1f} "
                      f"{load.percentile(95):>8.1f} {load.percentile(99):>8.1f} {load.errors:>7} {load.requests:>9} "
                      f"{statistics.median(load.handler_ms):>12.1f} {batch:>11}")
    batched, single = results[BATCHING], results[SINGLE]
    errors = sum(load.errors for loads in results.values() for load in loads)
    ratio = batched[-1].throughput / single[-1].throughput
    print(f"\nbatch 1, one request at a time, {args.bare_repeats} paired rounds: bare Predictor.predict(bytes) "
          f"p50 {bare:.1f} ms, through --max-batch-size 1 server p50 {served:.1f} ms")
    print(f"server overhead at batch 1 (median paired difference): {overhead:.1f} ms")
    print(f"model alone per image: batch 1 {alone_1:.1f} ms, batch 16 {alone_16:.1f} ms: "
          f"{alone_1 / alone_16:.2f}x, the most batching can gain here (32 clients: {ratio:.2f}x)")
    print(f"errors in all runs: {errors}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(f"serve_load: {ratio:.2f}x")


if __name__ == "__main__":
    main()
