"""End to end through the `cnnkit` command: train one epoch, eval, predict, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnkit.cli import main


def test_train_writes_a_complete_run(trained_run: Path, capsys: pytest.CaptureFixture) -> None:
    names = {p.name for p in trained_run.iterdir()}
    assert {"config.yaml", "split.json", "metrics.csv", "best.safetensors", "last.pt", "summary.json"} <= names
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["class_names"] == ["blue", "red"]
    assert summary["default_cfg"]["input_size"] == [3, 16, 16], "channels come from the data"
    split = json.loads((trained_run / "split.json").read_text())
    sizes = {name: len(indices) for name, indices in split["indices"].items()}
    assert sum(sizes.values()) == 48
    assert all(abs(sizes[name] - 48 * f) < 1 for name, f in (("train", 0.7), ("val", 0.15), ("test", 0.15)))


def test_eval_and_predict_use_the_run(trained_run: Path, tiny_folder: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert main(["eval", str(trained_run), str(tiny_folder), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "test" and result["test_top1"] >= 0.75
    summary = json.loads((trained_run / "summary.json").read_text())
    assert result["test_top1"] == pytest.approx(summary["test"]["test_top1"]), "eval reproduces the run's test split"
    images = [str(tiny_folder / "red" / "0.png"), str(tiny_folder / "blue" / "1.png")]
    assert main(["predict", str(trained_run), *images, "--json", "--top-k", "2"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert [p["path"] for p in predictions] == images
    assert sum(t["probability"] for t in predictions[0]["top"]) == pytest.approx(1.0, abs=1e-5)


def test_predict_names_a_bad_image_and_goes_on(trained_run: Path, tiny_folder: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    code = main(["predict", str(trained_run), str(broken), str(tiny_folder / "red" / "2.png")])
    captured = capsys.readouterr()
    assert code == 1 and "broken.png" in captured.err and "red/2.png" in captured.out


def test_yaml_config_sets_flags_and_refuses_unknown_keys(tiny_folder: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 1\nlearning_rate: 0.1\n")
    assert main(["train", str(tiny_folder), "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "unknown key(s) learning_rate" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text("epochs: 1\nbatch_size: 8\nimg_size: 16\nmodel: compact_cnn\nseed: 5\n")
    assert main(["train", str(tiny_folder), "--config", str(good), "--epochs", "1", "--out", str(tmp_path / "r"),
                 "--quiet"]) == 0
    config = (tmp_path / "r" / "config.yaml").read_text()
    assert "seed: 5" in config and "batch_size: 8" in config
    # the run options of a YAML file are type-checked as the training ones are (tracebacks, or a
    # truthy string taken as true)
    for line, message in [("img_size: big", "img_size must be int, got 'big'"), ("phases: 5", "phases must be str"),
                          ("drop_outliers: maybe", "drop_outliers must be bool"),
                          ("model_options: [a, b]", "model_options must be a mapping")]:
        bad.write_text(line + "\n")
        assert main(["finetune", str(tiny_folder), "--config", str(bad), "--out", str(tmp_path / "f")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "f").exists()
    assert main(["train", str(tiny_folder), "--img-size", "0", "--out", str(tmp_path / "f")]) == 2
    assert "img_size must be >= 1 pixel, got 0" in capsys.readouterr().err  # a ValueError after the data scan


def test_train_refuses_to_overwrite_a_run(trained_run: Path, tiny_folder: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", str(tiny_folder), "--out", str(trained_run), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    # --resume without the run's flags: it resumed with the defaults and overwrote config.yaml
    assert main(["train", str(tiny_folder), "--out", str(trained_run), "--resume", "--lr", "0.003", "--quiet"]) == 2
    assert "was trained with batch_size 8 (now 64);" in capsys.readouterr().err
    same = ["--epochs", "2", "--batch-size", "8", "--lr", "0.003", "--resume", "--quiet"]
    assert main(["train", str(tiny_folder), "--out", str(trained_run), *same, "--img-size", "24"]) == 2
    assert "it is a run of default_cfg" in capsys.readouterr().err  # resumed at 24 px a run trained at 16


def test_train_refuses_a_dataset_of_one_class(tiny_folder: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    import shutil

    single = tmp_path / "single"
    shutil.copytree(tiny_folder / "red", single / "red")
    assert main(["train", str(single), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "one class only (red): a classifier needs at least two" in capsys.readouterr().err
    assert not (tmp_path / "run" / "split.json").exists(), "refused before the run directory is written to"


def test_a_value_torch_would_refuse_is_named_before_the_run_is_written(tiny_folder: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sgd"
    assert main(["train", str(tiny_folder), "--optimizer", "sgd", "--momentum", "0", "--out", str(out)]) == 2
    assert "nesterov needs momentum > 0" in capsys.readouterr().err  # was torch's ValueError after the data scan
    assert not out.exists()


def test_a_setting_the_chosen_optimizer_or_schedule_ignores_is_refused(tiny_folder: Path, tmp_path: Path,
                                                                       trained_run: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    """--momentum with AdamW or onecycle (which cycles it), --step-gamma with cosine: taken and ignored."""
    base = ["train", str(tiny_folder), "--epochs", "1", "--batch-size", "8", "--img-size", "16", "--quiet"]
    assert main([*base, "--momentum", "0.5", "--out", str(tmp_path / "a")]) == 2
    assert "momentum (only for optimizer sgd) given but the run uses optimizer adamw" in capsys.readouterr().err
    assert main([*base, "--optimizer", "sgd", "--step-gamma", "0.5", "--out", str(tmp_path / "b")]) == 2
    assert "step_gamma (only for schedule step) given" in capsys.readouterr().err
    assert main([*base, "--optimizer", "sgd", "--schedule", "onecycle", "--momentum", "0.9", "--out",
                 str(tmp_path / "d")]) == 2
    assert "momentum (onecycle cycles it 0.95-0.85-0.95; only --momentum 0" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "d").exists()
    # a run's own config.yaml (every field, momentum included) still serves as --config of another
    assert main([*base, "--config", str(trained_run / "config.yaml"), "--epochs", "1", "--out",
                 str(tmp_path / "c")]) == 0


def test_an_out_that_is_a_file_and_a_config_that_is_a_folder_are_named(tiny_folder: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """Both were tracebacks (FileExistsError, IsADirectoryError)."""
    (tmp_path / "notes.txt").write_text("not a run")
    assert main(["train", str(tiny_folder), "--out", str(tmp_path / "notes.txt"), "--quiet"]) == 2
    assert "notes.txt is a file, not a run directory" in capsys.readouterr().err
    assert main(["train", str(tiny_folder), "--config", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert f"cannot read config file {tmp_path}" in capsys.readouterr().err
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00binary")
    assert main(["train", str(tiny_folder), "--config", str(tmp_path / "binary.yaml"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_a_device_this_machine_lacks_is_named_before_the_run_is_written(tiny_folder: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    import torch

    devices = ["gpu"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in devices:  # were a RuntimeError / AssertionError traceback, the second after the data scan
        out = tmp_path / device
        assert main(["train", str(tiny_folder), "--device", device, "--out", str(out), "--quiet"]) == 2
        assert f"--device {device!r} is not usable here" in capsys.readouterr().err
        assert not out.exists()


def test_finetune_from_pretrained_weights_in_phases(tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from safetensors.torch import save_file

    import cnnkit
    from cnnkit.train import commands

    parsed, parse = [], commands.parse_phases  # --phases is parsed once (before the data is read)
    monkeypatch.setattr(commands, "parse_phases", lambda *a, **k: parsed.append(a) or parse(*a, **k))
    source = cnnkit.create_model("resnet18", num_classes=7)  # "pretrained" on another task
    save_file(source.state_dict(), tmp_path / "weights.safetensors")
    out = tmp_path / "ft"
    code = main(["finetune", str(tiny_folder), "--model", "resnet18", "--pretrained",
                 str(tmp_path / "weights.safetensors"), "--phases", "head:1,all:1", "--img-size", "32",
                 "--batch-size", "8", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "classifier" in captured.err, "the re-initialised head is reported"
    assert (out / "phase1-head" / "last.pt").exists() and (out / "phase2-all" / "last.pt").exists()
    head_phase = torch.load(out / "phase1-head" / "last.pt", weights_only=True)
    assert head_phase["requires_grad"] == ["fc.weight", "fc.bias"]
    backbone_before = source.state_dict()["layer1.0.conv1.weight"]
    assert torch.equal(head_phase["model"]["layer1.0.conv1.weight"], backbone_before), "frozen in phase 1"
    summary = json.loads((out / "summary.json").read_text())
    assert [p["trainable"] for p in summary["phases"]] == ["head", "all"]
    assert parsed == [("head:1,all:1",)]


def test_lr_find_plots_and_suggests(tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plot = tmp_path / "lr.png"
    assert main(["lr-find", str(tiny_folder), "--img-size", "16", "--batch-size", "8", "--plot", str(plot)]) == 0
    assert "suggested learning rate:" in capsys.readouterr().out
    assert plot.stat().st_size > 1000
    # its own error named --start-lr, which did not exist; --resume and --out were taken and ignored
    sweep = ["lr-find", str(tiny_folder), "--img-size", "16", "--batch-size", "8", "--plot", str(plot)]
    assert main([*sweep, "--start-lr", "1e-3", "--end-lr", "1e-2", "--num-steps", "6"]) == 0
    suggested = float(capsys.readouterr().out.split("suggested learning rate: ")[1].split()[0])
    assert 1e-3 <= suggested <= 1e-2
    assert main([*sweep, "--out", str(tmp_path / "run")]) == 2
    assert "--resume and --out are for training runs" in capsys.readouterr().err
    # a --plot matplotlib cannot write was a traceback after the whole sweep; a new folder is made
    assert main([*sweep[:-1], str(tmp_path / "lr.xyz"), "--num-steps", "4"]) == 2
    assert "lr.xyz: the name must end in an image format matplotlib writes" in capsys.readouterr().err
    assert main([*sweep[:-1], str(tmp_path / "new" / "lr.svg"), "--num-steps", "4"]) == 0
    assert (tmp_path / "new" / "lr.svg").exists()


def test_same_seed_gives_bit_identical_runs(tiny_folder: Path, tmp_path: Path) -> None:
    """`--seed` fixes everything: the split, the initial weights, the data order, augmentation, dropout."""
    for name in ("a", "b"):
        assert main(["train", str(tiny_folder), "--epochs", "1", "--batch-size", "8", "--img-size", "16",
                     "--augment", "standard", "--seed", "3", "--out", str(tmp_path / name), "--quiet"]) == 0
    assert (tmp_path / "a" / "best.safetensors").read_bytes() == (tmp_path / "b" / "best.safetensors").read_bytes()


def test_cli_run_killed_mid_epoch_resumes_bit_identical(tmp_path: Path) -> None:
    """SIGKILL `cnnkit train` right after its first mid-epoch checkpoint, `--resume`, compare."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch

    def command(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "cnnkit", "train", "wafer", "--epochs", "2", "--batch-size", "16",
                "--checkpoint-every-steps", "5", "--seed", "1", "--quiet", "--out", str(out), *extra]

    assert subprocess.run(command(tmp_path / "whole"), capture_output=True, timeout=300).returncode == 0
    job = subprocess.Popen(command(tmp_path / "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / "killed" / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    saved = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)
    assert saved["trainer"]["epoch"] == 0 and 0 < saved["trainer"]["batch_in_epoch"], "killed mid-epoch"
    resumed = subprocess.run(command(tmp_path / "killed", "--resume"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    again = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(whole[k], again[k]) for k in whole)
    assert (tmp_path / "whole" / "best.safetensors").read_bytes() == (tmp_path / "killed" / "best.safetensors").read_bytes()


def test_eval_reuses_the_runs_split_and_refuses_a_changed_folder(trained_run: Path, tiny_folder: Path,
                                                                 tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    changed = tmp_path / "changed"
    shutil.copytree(tiny_folder, changed)
    (changed / "red" / "5.png").unlink()
    (changed / "blue" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")  # dropped by the scan as unreadable
    assert main(["eval", str(trained_run), str(changed)]) == 2
    error = capsys.readouterr().err
    assert "no longer matches the dataset's files: 2 file(s) gone or unreadable (blue/2.png, red/5.png)" in error


def test_model_options_are_checked_and_kept_in_the_run(tiny_folder: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    from cnnkit.inference import load_run

    out = tmp_path / "opt"
    base = ["train", str(tiny_folder), "--model", "compact_cnn", "--epochs", "1", "--batch-size", "8",
            "--img-size", "16", "--quiet"]
    assert main([*base, "--out", str(out), "--model-opt", "drop_rate=0.3"]) == 0
    model, summary = load_run(out)
    assert summary.model_options == {"drop_rate": 0.3}
    assert main([*base, "--out", str(tmp_path / "x"), "--model-opt", "dropout=0.3"]) == 2
    assert "has no option dropout; its options: drop_rate, norm_layer" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "y"), "--model-opt", "drop_rate=high"]) == 2
    assert "drop_rate=high: model 'compact_cnn' expects <class 'float'>" in capsys.readouterr().err


def test_a_metric_is_spelt_the_same_in_every_line_of_train_and_eval(tiny_folder: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """`val_top1 57.52%` in the epoch lines, `val_top1 0.5752` in the final, best and eval lines, `lr 0.0000`
    for a learning rate of 1.25e-05: now one spelling, `format_metric`'s, in all of them."""
    import re

    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", str(tiny_folder), "--model", "compact_cnn", "--epochs", "1", "--batch-size", "8",
                 "--img-size", "16", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert main(["eval", str(out), str(tiny_folder), "--split", "val"]) == 0
    printed += capsys.readouterr().out
    spelt = set(re.findall(r"\bval_top1 (\S+)", printed))
    assert len(spelt) == 1 and spelt.pop().endswith("%"), printed
    summary = json.loads((out / "summary.json").read_text())
    assert f"lr {summary['final']['lr']:.3g}" in printed and "lr 0.0000" not in printed
