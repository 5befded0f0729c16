"""ONNX export that carries its preprocessing and is checked against ONNX Runtime before it is done.

The .onnx file alone is enough to predict: class names, the model's `DefaultCfg` (input size,
mean/std, interpolation, crop) and the model name travel as ONNX metadata properties
(read back by `cnnkit.inference.onnx_backend.onnx_metadata`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

import cnnkit
from cnnkit.deploy.onnx_check import OnnxCheck, verify_onnx
from cnnkit.errors import CnnkitError
from cnnkit.models.base import DefaultCfg, require_classifier

log = logging.getLogger("cnnkit")

INPUT_NAME, OUTPUT_NAME = "input", "logits"
# Opset 17 (ONNX 1.12, 2022): every op the zoo needs, run by any ONNX Runtime of the last years.
DEFAULT_OPSET = 17
# The pinned TorchScript exporter's range in torch 2.13 (its ONNX_MIN_OPSET .. TORCHSCRIPT_EXPORTER_MAX_OPSET).
OPSETS = range(7, 21)


def _torchscript_export(model: nn.Module, example: torch.Tensor, path: Path, *, dynamic_batch: bool,
                        opset: int) -> None:
    # The exporter is pinned, not left to torch's default (which became the dynamo exporter in
    # torch 2.9): the TorchScript exporter (dynamo=False) is 10-20x faster than the dynamo exporter
    # of torch 2.13 + onnxscript 0.7.2 (densenet121: 6 s against 90 s and more, torch.export tracing
    # and the op-by-op translation dominating) and exports every zoo model at its default size with
    # outputs within 2e-6 of torch's, except adaptive pools of non-dividing sizes (mnist_cnn; VGG
    # and AlexNet below 224 px), which `write_onnx` sends to the dynamo exporter. Its deprecation
    # notice is silenced here on purpose; when torch drops it, the dynamo path is already tested.
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=opset,
                          do_constant_folding=True)


def _dynamo_export(model: nn.Module, example: torch.Tensor, path: Path, *, dynamic_batch: bool,
                   opset: int) -> None:
    shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    # Its registry warns once per torchvision op it cannot find (cnnkit needs none of them).
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), dynamo=True, verbose=False, input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], dynamic_shapes=shapes,
                                        opset_version=max(opset, 18))
    finally:
        registry_log.setLevel(level)
    program.save(str(path), external_data=False)


def _torchscript_can_export(model: nn.Module, example: torch.Tensor) -> bool:
    """False when an adaptive pool's output size does not divide its input size (e.g. VGG's
    7x7 pool below 224 px, mnist_cnn's 2x2 pool of a 3x3 map): the TorchScript exporter has no
    ONNX form for it. Found with one forward pass, so the failing export is never attempted."""
    pools = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    fits: list[bool] = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        fits.append(all(i % o == 0 for i, o in zip(inputs[0].shape[2:], output.shape[2:])))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, pools)]
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for handle in handles:
            handle.remove()
    return all(fits)


def write_onnx(model: nn.Module, path: str | Path, *, input_size: Sequence[int] | None = None,
               dynamic_batch: bool = True, opset: int | None = None, class_names: Sequence[str] | None = None,
               model_name: str | None = None, temperature: float | None = None) -> Path:
    """Export `model` (in eval mode; its mode is restored) to `path` with its metadata (and a
    calibrated run's `temperature`), unchecked.

    Uses the TorchScript exporter, and the dynamo exporter for the graphs the former cannot
    express (adaptive pools of non-dividing sizes, or any op it refuses), with a note.
    """
    path = Path(path)
    require_classifier(model, "an ONNX export (its file carries class names)")
    cfg = _cfg_of(model, input_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model = model.eval()
    # Batch 2 as the example: a batch of 1 can be specialised into the graph as a constant.
    example = torch.zeros((2 if dynamic_batch else 1, *cfg.input_size),
                          device=next(model.parameters()).device)
    opset = DEFAULT_OPSET if opset is None else opset
    if opset not in OPSETS:
        raise CnnkitError(f"opset {opset} is not supported: choose {OPSETS.start} to {OPSETS.stop - 1} "
                          f"(the exporter's range; default {DEFAULT_OPSET})")
    try:
        if _torchscript_can_export(model, example):
            try:
                _torchscript_export(model, example, path, dynamic_batch=dynamic_batch, opset=opset)
            except torch.onnx.errors.OnnxExporterError as error:
                log.info("onnx: the TorchScript exporter failed (%s); using the dynamo exporter",
                         str(error).splitlines()[0][:160])
                _dynamo_export(model, example, path, dynamic_batch=dynamic_batch, opset=opset)
        else:
            log.info("onnx: an adaptive pool of non-dividing sizes: using the dynamo exporter")
            _dynamo_export(model, example, path, dynamic_batch=dynamic_batch, opset=opset)
    finally:
        model.train(was_training)
    names = list(class_names) if class_names is not None else [str(i) for i in range(cfg.num_classes)]
    _write_metadata(path, cfg, names, model_name or type(model).__name__, temperature)
    return path


def write_checked_onnx(model: nn.Module, path: str | Path, *, input_size: Sequence[int] | None = None,
                       dynamic_batch: bool = True, opset: int | None = None,
                       class_names: Sequence[str] | None = None, model_name: str | None = None,
                       real_inputs: torch.Tensor | None = None, temperature: float | None = None) -> OnnxCheck:
    """`write_onnx` to NAME.unchecked.onnx beside `path`, `verify_onnx` it (random inputs at batch 1
    and 7, plus `real_inputs` (N, C, H, W)), and only then move it to `path`: a file at `path` is
    always a checked one (a previous export there survives a failed check, which names the
    unchecked file it leaves for inspection)."""
    path = Path(path)
    unchecked = path.with_name(f"{path.stem}.unchecked{path.suffix}")
    write_onnx(model, unchecked, input_size=input_size, dynamic_batch=dynamic_batch, opset=opset,
               class_names=class_names, model_name=model_name, temperature=temperature)
    check = verify_onnx(unchecked, model, real_inputs=real_inputs, batch_sizes=(1, 7) if dynamic_batch else (1,))
    unchecked.replace(path)
    return check


def export_onnx(model: nn.Module, path: str | Path, *, input_size: Sequence[int] | None = None,
                dynamic_batch: bool = True, opset: int | None = None, class_names: Sequence[str] | None = None,
                model_name: str | None = None, real_inputs: torch.Tensor | None = None) -> Path:
    """Export `model` to `path` and check it with ONNX Runtime against PyTorch (random inputs at
    batch 1 and 7, plus `real_inputs` (N, C, H, W) when given); the largest difference goes to the
    'cnnkit' logger, a mismatch beyond rtol 1e-3 / atol 1e-4 is a CnnkitError naming it (and
    `path` is left as it was: see `write_checked_onnx`)."""
    check = write_checked_onnx(model, path, input_size=input_size, dynamic_batch=dynamic_batch, opset=opset,
                               class_names=class_names, model_name=model_name, real_inputs=real_inputs)
    log.info("onnx: %s checked against ONNX Runtime: %s", Path(path).name, check.describe())
    return Path(path)


def _cfg_of(model: nn.Module, input_size: Sequence[int] | None) -> DefaultCfg:
    cfg = getattr(model, "default_cfg", None)
    if not isinstance(cfg, DefaultCfg):
        if input_size is None:
            raise CnnkitError("export_onnx: the model has no default_cfg; pass input_size=(C, H, W)")
        cfg = DefaultCfg()
    if input_size is not None:
        if len(input_size) != 3 or any(int(s) < 1 for s in input_size):
            raise CnnkitError(f"export_onnx: input_size must be (C, H, W) of positive ints, got {tuple(input_size)}")
        cfg = dataclasses.replace(cfg, input_size=tuple(int(s) for s in input_size))
    return cfg


def _write_metadata(path: Path, cfg: DefaultCfg, class_names: list[str], model_name: str,
                    temperature: float | None) -> None:
    """Every DefaultCfg field plus class names, model name, cnnkit version and (when given) the
    temperature, each a JSON value."""
    import onnx

    proto = onnx.load(str(path))
    values = {**cfg.to_dict(), "class_names": class_names, "model_name": model_name,
              "cnnkit_version": cnnkit.__version__}
    if temperature is not None:
        values["temperature"] = temperature
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    proto.producer_name = f"cnnkit {cnnkit.__version__} / torch {torch.__version__}"
    onnx.save(proto, str(path))


__all__ = ["OnnxCheck", "export_onnx", "verify_onnx", "write_checked_onnx", "write_onnx", "INPUT_NAME",
           "OUTPUT_NAME"]
