"""Per-backend figures of one finished run for `cnnkit compare`: the run exported to a checked
.onnx (and, for int8, quantized with calibration images from its training split), each backend's
test top-1 and size on disk, and the latencies of all backends timed side by side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnkit.deploy.bench import onnx_runner
from cnnkit.deploy.export_run import export_checked
from cnnkit.deploy.from_run import SourceRun
from cnnkit.deploy.int8_budget import logits_of
from cnnkit.deploy.latency import Latency, eager_runner, side_by_side_latency
from cnnkit.deploy.quantize import Int8Quantizer
from cnnkit.deploy.run_images import ImageBatches, split_batches, test_split
from cnnkit.inference.onnx_backend import OnnxBackend


@dataclass(frozen=True)
class BackendFigures:
    """One backend of one run: test top-1, bytes on disk (weights or .onnx file) and speed."""

    test_top1: float
    size_bytes: int
    latency: Latency


def export_backends(source: SourceRun, backends: Sequence[str], workdir: Path, *, calibration_size: int,
                    seed: int, test: ImageBatches | None) -> dict[str, Path]:
    """The file each backend runs from: the run's weights (torch), `workdir`/model.onnx checked
    against PyTorch on random and test images (onnx), and model.int8.onnx, static QDQ int8 of all
    Conv/Gemm layers calibrated (minmax) on `calibration_size` training images (int8; no accuracy
    budget here: `cnnkit export --int8 --max-drop` keeps sensitive layers in float). The 7 test
    images are drawn from `test`, the decoded test split (needed, and given, for onnx and int8)."""
    files = {"torch": source.path / "best.safetensors"}
    if {"onnx", "int8"} & set(backends):
        workdir.mkdir(parents=True, exist_ok=True)
        real = test.drawn(7, seed)
        files["onnx"] = workdir / "model.onnx"
        export_checked(source.model, source.summary, files["onnx"], opset=None, dynamic_batch=True, real=real)
    if "int8" in backends:
        calibration = split_batches(source, "train", limit=calibration_size, seed=seed)
        quantizer = Int8Quantizer(files["onnx"], calibration.batches, method="minmax")
        try:
            files["int8"] = quantizer.quantize(workdir / "model.int8.onnx")
        finally:
            quantizer.close()
    return {backend: files[backend] for backend in backends}


def measure_backends(source: SourceRun, backends: Sequence[str], workdir: Path, *, torch_top1: float,
                     device: torch.device, calibration_size: int = 256, seed: int = 0, budget_s: float = 3.0,
                     test: ImageBatches | None = None) -> dict[str, BackendFigures]:
    """Figures per backend; torch runs on `device`, ONNX Runtime on the CPU with torch's thread
    count, one session per .onnx for its top-1 and its latencies. The ONNX backends' top-1 is
    measured on the same test images (`torch_top1` is torch's; `test`: that split decoded, read
    here when None)."""
    onnx_backends = [b for b in backends if b != "torch"]
    if onnx_backends and test is None:
        test = split_batches(source, test_split(source), seed=seed)
    files = export_backends(source, backends, workdir, calibration_size=calibration_size, seed=seed, test=test)
    threads = torch.get_num_threads()
    sessions = {backend: OnnxBackend(files[backend], threads=threads) for backend in onnx_backends}
    top1 = {"torch": torch_top1}
    if sessions:  # there is an ONNX backend, so `test` is decoded
        for backend, session in sessions.items():
            top1[backend] = float(np.mean(logits_of(session, test.batches).argmax(axis=1) == test.labels))
    model = source.model.eval().to(device=device, memory_format=torch.channels_last)

    def runs_for(batch: torch.Tensor) -> dict:
        return {b: eager_runner(model, batch, device) if b == "torch" else onnx_runner(sessions[b], batch, threads=None)
                for b in backends}

    latency = side_by_side_latency(runs_for, tuple(model.default_cfg.input_size), budget_s=budget_s, threads=threads)
    return {b: BackendFigures(top1[b], files[b].stat().st_size, latency[b]) for b in backends}
