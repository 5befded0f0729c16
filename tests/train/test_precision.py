"""--precision auto picks bf16 only where the CPU runs it natively; asking for emulated bf16 warns."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from cnnkit.device_info import DeviceInfo, device_info
from cnnkit.train import precision

CPU = torch.device("cpu")


def _machine(*isa: str) -> DeviceInfo:
    return dataclasses.replace(device_info(), isa=isa)


@pytest.mark.parametrize(("isa", "auto", "native"), [
    (("avx2", "fma"), "fp32", False),
    (("avx2", "avx512f", "avx512_vnni", "avx512_bf16"), "bf16", True),
    (("avx2", "amx_tile", "amx_bf16", "amx_int8"), "bf16", True),
])
def test_auto_follows_the_instruction_set(monkeypatch, caplog, isa, auto, native) -> None:
    machine = _machine(*isa)
    monkeypatch.setattr(precision, "device_info", lambda: machine)
    assert machine.bf16_native is native
    assert precision.resolve_precision("auto", CPU) == auto
    with caplog.at_level(logging.WARNING, logger="cnnkit"):
        assert precision.resolve_precision("bf16", CPU) == "bf16"
    assert ("emulated on this CPU" in caplog.text) is not native
    assert precision.resolve_precision("fp32", CPU) == "fp32"


def test_this_machine_is_described() -> None:
    info = device_info()
    line = info.describe()
    assert f"{info.cores} cores" in line and info.torch_version in line and "isa:" in line
    flags = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else ""
    assert ("avx2" in info.isa) == (" avx2" in flags)
