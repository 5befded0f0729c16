"""What this machine is: CPU instruction sets, cores, BLAS kernel, torch build; read once.

Machines differ in what is fast on them (bf16 autocast is native only with AVX512-BF16 or AMX;
int8 convolutions need VNNI to beat fp32), so benchmarks print `describe()` in their header and
the trainer and the exporter consult `DeviceInfo` before choosing a precision.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# /proc/cpuinfo flag names worth reporting, in the order printed.
_REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
                   "amx_tile", "amx_bf16", "amx_int8", "neon", "asimd")


@dataclass(frozen=True)
class DeviceInfo:
    """The CPU's model, its reported ISA flags, logical cores, and the numeric libraries' builds."""

    cpu_model: str
    isa: tuple[str, ...]
    cores: int
    torch_version: str
    torch_threads: int
    blas: str

    @property
    def bf16_native(self) -> bool:
        """bf16 matmuls and convolutions run in hardware (AVX512-BF16 or AMX); elsewhere emulated."""
        return "avx512_bf16" in self.isa or "amx_bf16" in self.isa

    @property
    def vnni(self) -> bool:
        """int8 dot products in one instruction (AVX512-VNNI, AVX-VNNI or AMX-INT8)."""
        return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(self.isa))

    def describe(self) -> str:
        """One line for benchmark headers and RESULTS.md."""
        flags = " ".join(self.isa) or "none reported"
        return (f"cpu: {self.cpu_model} | {self.cores} cores | isa: {flags} | torch {self.torch_version} "
                f"({self.torch_threads} threads) | blas: {self.blas}")


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            text = cpuinfo.read()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features"):
            flags |= set(value.split())
    return model, flags


def _blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    found = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture', '?')})"
             for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(found) or "none loaded"


@functools.cache
def device_info() -> DeviceInfo:
    """This machine's `DeviceInfo` (cached: the hardware does not change while we run)."""
    import numpy  # noqa: F401  (loads the BLAS that threadpoolctl reports)
    import torch

    model, flags = _cpuinfo()
    return DeviceInfo(
        cpu_model=model,
        isa=tuple(f for f in _REPORTED_FLAGS if f in flags),
        cores=os.cpu_count() or 1,
        torch_version=torch.__version__,
        torch_threads=torch.get_num_threads(),
        blas=_blas(),
    )


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to `count` inside the block; the caller's count comes back
    after (a benchmark's timing, the demo's --threads, loading a served model on one thread)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
