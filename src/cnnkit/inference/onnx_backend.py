"""The ONNX Runtime backend: runs an exported .onnx behind the same interface as the torch model,
and reads the preprocessing the exporter stored in the file's metadata (onnxruntime loads lazily)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnkit.errors import CnnkitError
from cnnkit.models.base import DefaultCfg


def onnx_providers(device: str | torch.device | None) -> tuple[torch.device, list[Any]]:
    """The device ONNX Runtime runs on and its execution providers: "cpu" -> CPUExecutionProvider;
    "cuda[:N]" -> CUDAExecutionProvider (device N), the CPU provider after it for ops CUDA lacks
    (ONNX Runtime's own fallback), an error when this onnxruntime has no CUDA provider; None ->
    CUDA when this onnxruntime has it, else the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device is None:
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise CnnkitError(f"device {str(device)!r} is not a device name (cpu, cuda, cuda:1 ...)") from error
    if device.type == "cpu":
        return device, ["CPUExecutionProvider"]
    if device.type != "cuda":
        raise CnnkitError(f"device {str(device)!r}: ONNX Runtime runs on cpu or cuda here")
    if "CUDAExecutionProvider" not in available:
        raise CnnkitError(f"device {str(device)!r}: this onnxruntime {ort.__version__} has no CUDAExecutionProvider "
                          f"(it has {', '.join(available)}): use device cpu, or install onnxruntime-gpu")
    return device, [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]


def _session(path: Path, threads: int | None, providers: list[Any]) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No busy-waiting of idle worker threads after a run: on a shared CPU (a server, torch in the
    # same process, a benchmark timing both) spinning threads steal the cores others need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime raises its own untyped exceptions for a bad file
        raise CnnkitError(f"{path}: ONNX Runtime cannot load it: {str(error).splitlines()[0]}") from error
    wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    if wanted not in session.get_providers():  # ONNX Runtime falls back to the CPU with a mere warning
        raise CnnkitError(f"{path}: ONNX Runtime could not start {wanted} (it runs on {session.get_providers()}): "
                          "device cuda needs the CUDA/cuDNN libraries of onnxruntime-gpu; or use device cpu")
    return session


class OnnxBackend:
    """Logits of an .onnx model with ONNX Runtime: (N, C, H, W) float -> (N, num_classes) on CPU.

    `threads` sets ONNX Runtime's intra-op threads (None: its default, one per core); `device`
    ("cpu", "cuda", "cuda:1"; None: CUDA when onnxruntime has it) chooses the execution provider
    (`onnx_providers`). Batches are handed over, and logits returned, on the CPU (`device`).
    """

    name = "onnx"
    device = torch.device("cpu")

    def __init__(self, path: str | Path, *, threads: int | None = None,
                 device: str | torch.device | None = "cpu") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CnnkitError(f"{self.path}: no such ONNX file")
        self.execution_device, providers = onnx_providers(device)
        self.session = _session(self.path, threads, providers)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise CnnkitError(f"{self.path}: expected one image input, the graph has {len(inputs)}")
        self.input_name = inputs[0].name
        self.input_shape = tuple(inputs[0].shape)  # (batch or "batch", C, H, W)
        self.output_name = self.session.get_outputs()[0].name

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float32 -> (N, num_classes) float32 on CPU."""
        if batch.dim() != 4:
            raise CnnkitError(f"{self.path}: expects a (N, C, H, W) batch, got shape {tuple(batch.shape)}")
        fixed = self.input_shape[0] if isinstance(self.input_shape[0], int) else None
        if fixed is not None and batch.shape[0] != fixed:
            raise CnnkitError(f"{self.path}: exported for batch {fixed} only, got {batch.shape[0]} "
                              "(export with dynamic_batch=True)")
        array = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        (output,) = self.session.run([self.output_name], {self.input_name: array})
        return torch.from_numpy(output)

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        raise CnnkitError(f"{self.path}: features are not available for ONNX models (the graph ends at the "
                          "logits); use the run directory with the torch backend")


@dataclass(frozen=True)
class OnnxMetadata:
    """What `cnnkit export` stores in an .onnx: the classes, the preprocessing, the model's name and,
    for a calibrated run, its fitted temperature (None otherwise)."""

    class_names: tuple[str, ...]
    default_cfg: DefaultCfg
    model_name: str
    temperature: float | None = None


def onnx_metadata(path: str | Path) -> OnnxMetadata:
    """The `OnnxMetadata` stored by `cnnkit.deploy.export_onnx` in the file's metadata properties; a
    file without them is an error naming the missing keys."""
    import onnx

    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError / OSError variants for a bad file
        raise CnnkitError(f"{path}: not a readable ONNX file ({error})") from error
    values = {entry.key: entry.value for entry in proto.metadata_props}
    fields = [f.name for f in DefaultCfg.__dataclass_fields__.values()]
    missing = [key for key in ("class_names", "model_name", "input_size", "mean", "std") if key not in values]
    if missing:
        raise CnnkitError(f"{path}: no cnnkit metadata ({', '.join(missing)} missing): export it with "
                          "`cnnkit export` or cnnkit.deploy.export_onnx")
    decoded = {key: json.loads(values[key]) for key in fields if key in values}
    cfg = DefaultCfg(**{k: tuple(v) if isinstance(v, list) else v for k, v in decoded.items()})
    temperature = json.loads(values["temperature"]) if "temperature" in values else None
    return OnnxMetadata(tuple(json.loads(values["class_names"])), cfg, json.loads(values["model_name"]),
                        None if temperature is None else float(temperature))
