"""The typed run directory: old summaries still load, unknown keys are refused by file name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import cnnkit
from cnnkit.errors import CnnkitError
from cnnkit.inference import RunSummary, load_run, read_summary, update_summary

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_first_release_run_directory_still_loads(tmp_path: Path) -> None:
    """summary.json as the first release wrote it (no schema_version, `model_overrides`)."""
    shutil.copy(FIXTURES / "summary_v1.json", tmp_path / "summary.json")
    torch.manual_seed(0)
    weights = cnnkit.create_model("compact_cnn", num_classes=2, in_chans=3).state_dict()
    save_file(weights, tmp_path / "best.safetensors")
    model, summary = load_run(tmp_path)
    assert isinstance(summary, RunSummary) and summary.schema_version == 2
    assert summary.class_names == ("blue", "red") and summary.default_cfg.input_size == (3, 16, 16)
    assert summary.test == {"test_loss": 0.31, "test_top1": 1.0, "test_top5": 1.0}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    assert model.default_cfg == summary.default_cfg and not model.training


def test_unknown_or_newer_keys_are_errors_naming_the_file(tmp_path: Path) -> None:
    record = json.loads((FIXTURES / "summary_v1.json").read_text())
    (tmp_path / "summary.json").write_text(json.dumps({**record, "fancy_new_key": 1}))
    with pytest.raises(CnnkitError, match=r"summary.json: unknown key\(s\) fancy_new_key"):
        read_summary(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({**record, "schema_version": 99}))
    with pytest.raises(CnnkitError, match="schema_version 99 is newer"):
        read_summary(tmp_path)
    with pytest.raises(CnnkitError, match="not a finished run"):
        read_summary(tmp_path / "nothing")


def test_update_summary_round_trips(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "summary_v1.json", tmp_path / "summary.json")
    updated = update_summary(tmp_path, temperature=1.7, exports={"onnx": "model.onnx"})
    again = read_summary(tmp_path)
    assert again == updated and again.temperature == 1.7 and again.exports == {"onnx": "model.onnx"}
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["schema_version"] == 2 and "model_overrides" not in on_disk
    with pytest.raises(CnnkitError, match="no field colour"):
        update_summary(tmp_path, colour="red")
