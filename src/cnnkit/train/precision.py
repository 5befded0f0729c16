"""Which floating-point precision a run trains in: `auto` picks what is fast on this machine.

bf16 autocast is native on CPUs with AVX512-BF16 or AMX and on recent GPUs; elsewhere PyTorch
emulates it and it is slower than fp32 (mnist_cnn on an AVX2-only CPU: 56 images/s in bf16 against
619 in fp32, benchmarks/trainer_overhead.py), so asking for it there gets a warning.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch

from cnnkit.device_info import device_info

Resolved = Literal["fp32", "bf16", "fp16"]
log = logging.getLogger("cnnkit")


def resolve_precision(requested: str, device: torch.device) -> Resolved:
    """`requested` ("auto", "fp32", "bf16", "fp16") for `device`, warning where bf16 is emulated."""
    if device.type == "cuda":
        if requested == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return requested  # type: ignore[return-value]
    native = device_info().bf16_native
    if requested == "auto":
        return "bf16" if native else "fp32"
    if requested == "bf16" and not native:
        log.warning("bf16 is emulated on this CPU (no AVX512-BF16 or AMX): expect it to train several times "
                    "slower than fp32; --precision auto picks the fast one")
    return requested  # type: ignore[return-value]
