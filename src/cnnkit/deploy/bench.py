"""Speed tables: one model (a zoo name, a run or an .onnx file) on the torch, ONNX Runtime fp32 and
ONNX Runtime int8 backends, per batch size, with its parameters and MACs beside the latencies."""

from __future__ import annotations

import csv
import dataclasses
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnkit.analysis.summary import summary as analyse
from cnnkit.deploy.latency import eager_runner
from cnnkit.deploy.onnx_export import write_onnx
from cnnkit.deploy.quantize import Int8Quantizer, is_quantized
from cnnkit.deploy.timing import Timing, time_side_by_side
from cnnkit.device_info import torch_threads
from cnnkit.errors import CnnkitError
from cnnkit.inference import load_run
from cnnkit.inference.onnx_backend import OnnxBackend, onnx_metadata
from cnnkit.models.base import DefaultCfg
from cnnkit.models.factory import create_model, list_models

BACKENDS = ("torch", "onnx", "int8")


def parse_backends(text: str, *, option: str = "--backends") -> tuple[str, ...]:
    """"torch,onnx" -> ("torch", "onnx"); empty or unknown names are an error naming `option`."""
    chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown or not chosen:
        raise CnnkitError(f"{option}: {'unknown ' + ', '.join(unknown) if unknown else 'none given'} "
                          f"(choose from {', '.join(BACKENDS)})")
    return chosen


@dataclass(frozen=True)
class BenchRow:
    """One (target, backend, batch size) cell; params and MACs None when unknown (an .onnx whose graph
    is not its zoo architecture's, e.g. a channel-pruned run's)."""

    target: str
    backend: str
    threads: int
    params: int | None
    macs: int | None
    timing: Timing


def torch_runner(model: nn.Module, batch: torch.Tensor) -> Callable[[], object]:
    """Eager PyTorch on the CPU, eval mode, channels_last weights and input (the fast CPU layout;
    `model` is converted in place, as `nn.Module.to` does)."""
    return eager_runner(model.eval().to(memory_format=torch.channels_last), batch, "cpu")


def onnx_runner(path: Path | OnnxBackend, batch: torch.Tensor, *, threads: int | None) -> Callable[[], object]:
    """One ONNX Runtime (CPU) run of the .onnx at `path` on `batch` (N, C, H, W), session built once
    (or the open session `path`, `threads` then unused)."""
    backend = path if isinstance(path, OnnxBackend) else OnnxBackend(path, threads=threads)
    return lambda: backend.logits(batch)


@dataclass
class Target:
    """A model to bench: its name as given, a torch model (None for an .onnx), cfg, its .onnx and
    whether that file is already quantized (an `export --int8` file: benched as int8, as it is)."""

    label: str
    model: nn.Module | None
    cfg: DefaultCfg
    model_name: str
    onnx_path: Path | None = None
    quantized: bool = False

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends this target has: all for a model; onnx and int8 for an fp32 .onnx; int8 for an int8 one."""
        if self.model is not None:
            return BACKENDS
        return ("int8",) if self.quantized else ("onnx", "int8")

    def refuse(self, wanted: Sequence[str]) -> CnnkitError:
        """The error for backends this target lacks, naming the ones it has."""
        kind = "an int8 .onnx file" if self.quantized else "an .onnx file"
        missing = [backend for backend in wanted if backend not in self.backends]
        return CnnkitError(f"{self.label}: {kind} has no {' or '.join(missing)} backend; "
                           f"use --backends {','.join(self.backends)}")


def resolve_target(text: str, *, img_size: int | None) -> Target:
    """A zoo model name (random weights), a run directory, or an .onnx file exported by cnnkit."""
    path = Path(text)
    if path.suffix == ".onnx":
        meta = onnx_metadata(path)
        cfg, model_name = meta.default_cfg, meta.model_name
        if img_size is not None and img_size != cfg.input_size[1]:
            raise CnnkitError(f"{path}: exported at {cfg.input_size[1]} px; --img-size {img_size} needs a new export")
        return Target(text, None, cfg, model_name, path, quantized=is_quantized(path))
    if path.is_dir():
        model, summary = load_run(path)
        name = summary.model_name
    elif text in list_models():
        model, name = create_model(text).eval(), text
    else:
        raise CnnkitError(f"{text!r} is not a zoo model, a run directory or an .onnx file")
    cfg = model.default_cfg
    if img_size is not None:
        cfg = dataclasses.replace(cfg, input_size=(cfg.input_size[0], img_size, img_size))
    return Target(text, model, cfg, name)


WeightShapes = list[tuple[str, tuple[int, ...]]]


def onnx_weight_shapes(path: Path) -> WeightShapes:
    """("conv", shape) of every Conv weight and ("linear", sorted dims) of every Gemm/MatMul constant
    weight of an .onnx graph (through DequantizeLinear for int8), sorted: its architecture's fingerprint."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    source = {n.output[0]: n.input[0] for n in graph.node if n.op_type in ("DequantizeLinear", "Identity", "Transpose")}
    found = []
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            name = node.input[1]
            while name not in shapes and name in source:
                name = source[name]
            if node.op_type == "Conv":
                found.append(("conv", shapes.get(name, ())))
            elif name in shapes:
                found.append(("linear", tuple(sorted(shapes[name]))))
    return sorted(found)


def module_weight_shapes(model: nn.Module) -> WeightShapes:
    """The same fingerprint of a torch model (conv weights as they are, linear ones with sorted dims)."""
    convs = [("conv", tuple(m.weight.shape)) for m in model.modules()
             if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    linears = [("linear", tuple(sorted(m.weight.shape))) for m in model.modules() if isinstance(m, nn.Linear)]
    return sorted(convs + linears)


def _costs(target: Target) -> tuple[int | None, int | None]:
    """(parameters, MACs) from cnnkit.analysis; for an .onnx file, of the zoo architecture it names,
    and only when that architecture has the graph's weight shapes (else None: unknown, not wrong)."""
    model = target.model
    if model is None:
        if target.model_name not in list_models():
            return None, None
        model = create_model(target.model_name, num_classes=target.cfg.num_classes, in_chans=target.cfg.input_size[0])
        if target.onnx_path is None or onnx_weight_shapes(target.onnx_path) != module_weight_shapes(model):
            return None, None
    costs = analyse(model, tuple(target.cfg.input_size))
    return costs.total_params, costs.total_macs


def bench_target(target: Target, *, backends: Sequence[str], batch_sizes: Sequence[int], threads: int,
                 repeats: int = 20, max_seconds: float | None = 10.0, seed: int = 0) -> list[BenchRow]:
    """Rows per (backend, batch size); per batch size the backends are timed side by side (one
    call of each per round), each .onnx through one ONNX Runtime session for all batch sizes. int8
    is calibrated on random inputs: its speed is representative, its accuracy is not (use
    `cnnkit export --int8` for that)."""
    parse_backends(",".join(backends))
    if any(backend not in target.backends for backend in backends):
        raise target.refuse(backends)
    params, macs = _costs(target)
    generator = torch.Generator().manual_seed(seed)
    with torch_threads(threads), tempfile.TemporaryDirectory(prefix="cnnkit-bench-") as tmp:
        paths = _onnx_paths(target, backends, Path(tmp), generator)
        sessions = {backend: OnnxBackend(paths[backend], threads=threads) for backend in backends if backend in paths}
        timings: dict[tuple[str, int], Timing] = {}
        for size in batch_sizes:
            batch = torch.randn((size, *target.cfg.input_size), generator=generator)
            runs = {backend: torch_runner(target.model, batch) if backend == "torch"
                    else onnx_runner(sessions[backend], batch, threads=threads) for backend in backends}
            for backend, timing in time_side_by_side(runs, batch=size, repeats=repeats,
                                                     max_seconds=max_seconds).items():
                timings[(backend, size)] = timing
    return [BenchRow(target.label, backend, threads, params, macs, timings[(backend, size)])
            for backend in backends for size in batch_sizes]


def _onnx_paths(target: Target, backends: Sequence[str], tmp: Path, generator: torch.Generator) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    if target.quantized:
        return {"int8": target.onnx_path} if "int8" in backends and target.onnx_path is not None else {}
    if {"onnx", "int8"} & set(backends):
        paths["onnx"] = target.onnx_path or write_onnx(target.model, tmp / "fp32.onnx",
                                                       input_size=target.cfg.input_size, model_name=target.model_name)
    if "int8" in backends:
        calibration = [torch.randn((8, *target.cfg.input_size), generator=generator).numpy() for _ in range(4)]
        quantizer = Int8Quantizer(paths["onnx"], calibration, method="minmax", workdir=tmp)
        paths["int8"] = quantizer.quantize(tmp / "int8.onnx")
    return paths


CSV_COLUMNS = ("target", "backend", "batch", "threads", "p50_ms", "p90_ms", "p99_ms", "images_per_s",
               "repeats", "params", "macs")


def row_values(row: BenchRow) -> dict[str, object]:
    """A row as the CSV/JSON record of CSV_COLUMNS (milliseconds, images per second)."""
    t = row.timing
    return {"target": row.target, "backend": row.backend, "batch": t.batch, "threads": row.threads,
            "p50_ms": _significant(1e3 * t.p50), "p90_ms": _significant(1e3 * t.p90),
            "p99_ms": _significant(1e3 * t.p99), "images_per_s": _significant(t.images_per_s),
            "repeats": t.repeats, "params": row.params, "macs": row.macs}


def _significant(value: float, digits: int = 5) -> float:
    """`value` to `digits` significant digits: a 0.045 ms forward keeps its precision, which a fixed
    3 decimals cut to 1% (images_per_s then disagreed with batch / p50 by as much)."""
    return float(f"{value:.{digits}g}")


def write_csv(rows: Sequence[BenchRow], path: Path) -> None:
    """bench.csv: one line per (target, backend, batch size), unknown counts left blank; its folder
    is made if need be (the timings are not thrown away for want of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(row_values(r) for r in rows)


def format_table(rows: Sequence[BenchRow]) -> str:
    """The speed table `cnnkit bench` prints."""
    header = (f"{'target':<22} {'backend':<7} {'batch':>5} {'thr':>3} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} "
              f"{'img/s':>9} {'params M':>9} {'GMACs':>7}")
    lines = [header]
    for row in rows:
        v = row_values(row)
        lines.append(f"{row.target[-22:]:<22} {row.backend:<7} {v['batch']:>5} {row.threads:>3} {v['p50_ms']:>9.2f} "
                     f"{v['p90_ms']:>9.2f} {v['p99_ms']:>9.2f} {v['images_per_s']:>9.1f} "
                     + ("        -       -" if row.params is None or row.macs is None
                        else f"{row.params / 1e6:>9.2f} {row.macs / 1e9:>7.3f}"))
    return "\n".join(lines)


def rows_json(rows: Sequence[BenchRow]) -> str:
    """The rows as a JSON list (`cnnkit bench --json`)."""
    return json.dumps([row_values(r) for r in rows], indent=2)


def batch_speedup(rows: Sequence[BenchRow], faster: str, slower: str, batch: int) -> float | None:
    """p50(slower) / p50(faster) at `batch` for the first target with both backends, else None."""
    found = {(r.backend, r.timing.batch): r.timing.p50 for r in rows}
    if (faster, batch) in found and (slower, batch) in found:
        return found[(slower, batch)] / found[(faster, batch)]
    return None
