"""Every zoo model: summary totals equal FlopCounterMode and the published params/MACs in zoo.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnkit
from cnnkit.analysis.commands import build_for_analysis
from cnnkit.analysis.summary import summary

# ../shared/reference/zoo.json's figures, committed beside the zoo's fixtures (tools/make_reference_fixtures.py).
ZOO_JSON = Path(__file__).resolve().parents[1] / "models" / "reference" / "published.json"
ZOO = {name: row for name, row in json.loads(ZOO_JSON.read_text()).items() if name != "_about"}

# zoo.json's "_about": every figure is for the 1000-class RGB head, except lenet5
# (10 classes, 1-channel 32x32).
HEADS = {"lenet5": (10, 1)}


def meta_model(name: str) -> tuple[nn.Module, tuple[int, int, int]]:
    if not ZOO:
        pytest.skip(f"published figures not found at {ZOO_JSON} (a user's checkout has no ../shared)")
    if name not in cnnkit.list_models():
        pytest.skip(f"{name} is not registered in the zoo yet")
    num_classes, in_chans = HEADS.get(name, (1000, 3))
    model = build_for_analysis(name, num_classes, in_chans).to("meta")
    size = ZOO[name]["input"]
    return model, (in_chans, size, size)


@pytest.mark.parametrize("name", sorted(ZOO) or ["zoo.json"])
def test_summary_totals_match_flop_counter_and_zoo_json(name: str) -> None:
    model, input_size = meta_model(name)
    result = summary(model, input_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.empty((1, *input_size), device="meta"))
    assert result.total_macs == counter.get_total_flops() // 2
    assert result.total_params == ZOO[name]["params"]
    if "macs" in ZOO[name]:
        assert result.total_macs == ZOO[name]["macs"]
    assert result.uncosted == ()
    assert result.trainable_params == result.total_params
    assert sum(row.params for row in result.rows) == result.total_params, "parameters outside every row"
