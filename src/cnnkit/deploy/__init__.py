"""Shipping a trained model: conv-BN folding, ONNX export checked against ONNX Runtime, INT8,
pruning, distillation, speed tables. Names load on first use (onnx/onnxruntime are heavy)."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "fold_batchnorm": "cnnkit.deploy.fold",
    "foldable_pairs": "cnnkit.deploy.fold",
    "export_onnx": "cnnkit.deploy.onnx_export",
    "verify_onnx": "cnnkit.deploy.onnx_check",
    "write_onnx": "cnnkit.deploy.onnx_export",
    "Int8Quantizer": "cnnkit.deploy.quantize",
    "quantize_within_budget": "cnnkit.deploy.int8_budget",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnkit.deploy' has no attribute {name!r}")
