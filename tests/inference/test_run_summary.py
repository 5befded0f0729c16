"""The typed run directory: old summaries still load, unknown keys are refused by file name."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import cnnkit
from cnnkit.errors import CnnkitError
from cnnkit.inference import RunSummary, load_run, read_summary, update_summary, write_summary

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


@pytest.mark.parametrize("change, message", [
    ({"class_names": "ab"}, "class_names must be a non-empty list of strings, got 'ab'"),
    ({"class_names": []}, "class_names must be a non-empty list of strings"),
    ({"model_name": 3}, "model_name must be a model name, got 3"),
    ({"default_cfg": 3}, "default_cfg must be an object, got 3"),
    ({"temperature": "hot"}, "temperature must be a number > 0 \\(or null\\), got 'hot'"),
    ({"temperature": 0}, "temperature must be a number > 0"),
    ({"task": "segmentation"}, "task must be classification or embedding"),
])
def test_fields_of_the_wrong_type_are_named(tmp_path: Path, change: dict, message: str) -> None:
    record = json.loads((FIXTURES / "summary_v1.json").read_text())
    (tmp_path / "summary.json").write_text(json.dumps({**record, **change}))
    with pytest.raises(CnnkitError, match=r"summary.json: " + message):
        read_summary(tmp_path)
    sized = {**record, "default_cfg": {**record["default_cfg"], "input_size": [3, 16]}}
    (tmp_path / "summary.json").write_text(json.dumps(sized))
    with pytest.raises(CnnkitError, match=r"default_cfg.input_size must be \[C, H, W\] of positive integers, "
                                          r"got \[3, 16\]"):
        read_summary(tmp_path)


def test_update_summary_round_trips(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "summary_v1.json", tmp_path / "summary.json")
    updated = update_summary(tmp_path, temperature=1.7, exports={"onnx": "model.onnx"})
    again = read_summary(tmp_path)
    assert again == updated and again.temperature == 1.7 and again.exports == {"onnx": "model.onnx"}
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["schema_version"] == 2 and "model_overrides" not in on_disk
    with pytest.raises(CnnkitError, match="no field colour"):
        update_summary(tmp_path, colour="red")


def test_every_field_round_trips_through_summary_json(tmp_path: Path) -> None:
    """Each field set away from its default is read back equal (types included)."""
    from cnnkit.models.base import DefaultCfg
    from cnnkit.models.channel_plan import ChannelConsumer, ChannelGroup, NarrowedGroup
    from cnnkit.models.heads import HeadSpec

    values = dict(
        model_name="resnet18", class_names=("cat", "dog"), model_options={"drop_rate": 0.1},
        default_cfg=DefaultCfg(input_size=(1, 28, 28), mean=(0.5,), std=(0.25,), first_conv="stem.0",
                               classifier="head.fc", num_classes=2, crop_pct=1.0, interpolation="bicubic",
                               feature_layer="layer4"),
        schema_version=2, task="embedding", epochs_run=3, best_epoch=2, best_metric=0.9, monitor="val_top1",
        final={"val_top1": 0.9}, train_seconds=12.5, effective_batch_size=256, test={"test_top1": 0.8},
        test_per_class=[0.7, 0.9],
        test_confusion=[[7, 3], [1, 9]], phases=[{"name": "head", "epochs": 1}], temperature=1.5,
        exports={"onnx": "m.onnx"}, embedding_dim=64, verification_threshold=0.4, retrieval={"recall_at_1": 0.6},
        verification={"auc": 0.9}, sparsity={"fc.weight": 0.5}, teacher="runs/big", embedding_loss="arcface",
        holdout_classes=["dog"], evaluated_on="test", verification_pairs={"pairs": 10},
        head=HeadSpec(hidden=(32, 16), dropout=0.25, activation="gelu"),
        export_checks={"onnx": 1e-6}, int8={"top1_int8": 0.79}, global_sparsity=0.5, pruned_from="runs/a",
        pruning={"method": "global"}, structured={"before": {"params": 10.0}, "after": {"params": 5.0}},
        channel_plan=(NarrowedGroup(ChannelGroup("conv1", "bn1", (ChannelConsumer("layer1.0.conv1", 1),)), 8),),
        distillation={"alpha": 0.5},
    )
    assert set(values) == {f.name for f in dataclasses.fields(RunSummary)}, "a new field needs a value here"
    summary = RunSummary(**values)
    defaults = RunSummary(model_name="x", class_names=("a",), default_cfg=DefaultCfg())
    assert [f.name for f in dataclasses.fields(RunSummary)
            if f.name != "schema_version" and getattr(summary, f.name) == getattr(defaults, f.name)] == []
    write_summary(tmp_path, summary)
    again = read_summary(tmp_path)
    assert again == summary
    assert all(type(getattr(again, f.name)) is type(getattr(summary, f.name)) for f in dataclasses.fields(RunSummary))


def test_a_head_reads_back_typed_from_the_json_earlier_runs_wrote(tmp_path: Path) -> None:
    """`head` is a HeadSpec in memory and the same JSON object on disk as before it was typed."""
    from cnnkit.models.heads import HeadSpec

    record = json.loads((FIXTURES / "summary_v1.json").read_text())
    written_before = {"hidden": [256], "dropout": 0.4, "activation": "relu"}  # as fit wrote it untyped
    (tmp_path / "summary.json").write_text(json.dumps({**record, "head": written_before}))
    summary = read_summary(tmp_path)
    assert summary.head == HeadSpec(hidden=(256,), dropout=0.4, activation="relu")
    write_summary(tmp_path, summary)
    assert json.loads((tmp_path / "summary.json").read_text())["head"] == written_before
    assert read_summary(tmp_path) == summary
    for bad, message in (([256], "head must be an object"), ({"hidden": [256], "dropout": "high"},
                                                              "head: dropout must be in \\[0, 1\\), got 'high'"),
                         ({"width": 3}, "head: unknown fields \\['width'\\]")):
        (tmp_path / "summary.json").write_text(json.dumps({**record, "head": bad}))
        with pytest.raises(CnnkitError, match=r"summary.json: " + message):
            read_summary(tmp_path)


def test_broken_run_directories_are_errors_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(CnnkitError, match="absent is not a finished run"):
        load_run(tmp_path / "absent")
    (tmp_path / "summary.json").write_text('{"model_name": "compact_cnn", ')
    with pytest.raises(CnnkitError, match=r"summary.json: not readable JSON"):
        load_run(tmp_path)
    shutil.copy(FIXTURES / "summary_v1.json", tmp_path / "summary.json")
    with pytest.raises(CnnkitError, match="has no best.safetensors"):
        load_run(tmp_path)
    five_classes = cnnkit.create_model("compact_cnn", num_classes=5, in_chans=3).state_dict()
    save_file(five_classes, tmp_path / "best.safetensors")
    wrong_shape = r"(?s)best.safetensors does not fit model 'compact_cnn'.*size mismatch for classifier"
    with pytest.raises(CnnkitError, match=wrong_shape):
        load_run(tmp_path)
