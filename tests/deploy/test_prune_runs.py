"""`cnnkit prune` end to end on a tiny run: zeros held through fine-tuning, the lottery ticket's invariants,
and a channel-pruned run that `cnnkit eval` loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from colour_folders import make_tiny_folder
from tiny_runs import train_tiny_run, train_val_run

from cnnkit.cli import main
from cnnkit.deploy.from_run import open_run
from cnnkit.deploy.lottery import LotterySettings, lottery_ticket
from cnnkit.deploy.masks import global_magnitude_masks, prunable_weights
from cnnkit.train.callbacks import Callback
from cnnkit.inference import load_run, read_summary


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("prune")
    data = make_tiny_folder(root / "data")
    return data, train_tiny_run(data, root / "run")


def _eval_top1(run: Path, data: Path, capsys: pytest.CaptureFixture) -> float:
    capsys.readouterr()
    assert main(["eval", str(run), str(data), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["test_top1"]


def test_magnitude_pruning_holds_the_zeros_through_fine_tuning(tiny, tmp_path: Path, capsys) -> None:
    data, run = tiny
    out = tmp_path / "pruned"
    code = main(["prune", str(run), str(data), "--sparsity", "0.8", "--epochs", "1", "--optimizer", "sgd",
                 "--momentum", "0.9", "--weight-decay", "0.01", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    source, pruned = load_file(run / "best.safetensors"), load_file(out / "best.safetensors")
    assert set(pruned) == set(source), "a plain state dict: no _orig/_mask keys"
    model, _ = load_run(run)
    expected = global_magnitude_masks(model, 0.2)
    for name, mask in expected.items():
        assert torch.equal(pruned[name] != 0, mask), f"{name}: zeros exactly where the smallest magnitudes were"
    survivors = torch.cat([pruned[n][m] - source[n][m] for n, m in expected.items()])
    assert float(survivors.abs().max()) > 0, "the survivors were fine-tuned"
    summary = read_summary(out)
    total = sum(w.numel() for w in prunable_weights(model).values())
    assert summary.global_sparsity == pytest.approx(0.8, abs=1 / total)
    assert summary.pruning["prunable_weights"] == total and summary.pruned_from == str(run)
    assert summary.pruning["target_sparsity"] == 0.8, "the --sparsity asked for, not the measured report"
    layers = summary.sparsity
    assert set(layers) == set(expected) and layers["features.0.0.weight"] < layers["features.7.0.weight"]
    assert _eval_top1(out, data, capsys) == pytest.approx(summary.test["test_top1"]), "a normal run directory"


class Snapshot(Callback):
    """The model's weights as training starts (after MaskHold applied the round's mask)."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def before_fit(self, trainer) -> None:
        self.states.append({k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()})


def test_lottery_ticket_invariants(tiny, tmp_path: Path) -> None:
    data, run = tiny
    source = open_run(run, str(data))
    config = source.config.replace(epochs=2)
    snapshot = Snapshot()
    rows = lottery_ticket(source, config, LotterySettings(rounds=2, rate=0.2, rewind_epoch=1), tmp_path / "lt",
                          callbacks=[snapshot])
    rewind = load_file(tmp_path / "lt" / "rewind.safetensors")
    initial = source.fresh_model(config.seed).state_dict()
    assert torch.equal(snapshot.states[0]["features.0.0.weight"], initial["features.0.0.weight"]), "round 0 = init"
    assert not torch.equal(rewind["features.0.0.weight"], initial["features.0.0.weight"]), "epoch-1 weights"
    total = sum(w.numel() for w in prunable_weights(source.model).values())
    previous = None
    for r in (1, 2):
        masks = load_file(tmp_path / "lt" / f"round{r}" / "mask.safetensors")
        kept = sum(int(m.sum()) for m in masks.values())
        assert kept == round(0.8**r * total), "density 0.8^n, global over prunable weights"
        if previous is not None:
            assert all(not bool((masks[k] & ~previous[k]).any()) for k in masks), "masks only grow"
        previous = masks
        started = snapshot.states[r]
        for key, value in rewind.items():
            expected = value * masks[key] if key in masks else value
            assert torch.equal(started[key], expected), f"round {r}: {key} rewound bit for bit"
        trained = load_file(tmp_path / "lt" / f"round{r}" / "best.safetensors")
        assert all(bool((trained[k][~m] == 0).all()) for k, m in masks.items()), "mask held in training"
        control = load_file(tmp_path / "lt" / f"control{r}" / "mask.safetensors")
        assert all(torch.equal(control[k], masks[k]) for k in masks), "the control uses the same masks"
    for name in ("round0", "round1", "round2", "control1", "control2"):
        assert (tmp_path / "lt" / name / "split.json").read_bytes() == (run / "split.json").read_bytes(), name
    assert [row.round for row in rows] == [0, 1, 2] and rows[2].density == pytest.approx(0.64, abs=1e-4)
    assert all(row.control_top1 is not None for row in rows[1:])
    assert (tmp_path / "lt" / "lottery.csv").read_text().startswith("round,density,split,top1,control_top1")
    assert {row.split for row in rows} == {"test"}


def test_rewind_epoch_k_is_the_training_weights_after_epoch_k_not_their_ema(tiny, tmp_path: Path) -> None:
    """With one epoch and --ema-decay, epoch:1 must rewind to the weights last.pt holds as the model (not its EMA)."""
    from cnnkit.train.checkpoint import load_checkpoint

    data, run = tiny
    source = open_run(run, str(data))
    config = source.config.replace(epochs=1, ema_decay=0.5)
    lottery_ticket(source, config, LotterySettings(rounds=1, rate=0.2, rewind_epoch=1, control=False), tmp_path / "lt")
    rewind = load_file(tmp_path / "lt" / "rewind.safetensors")
    trained = load_checkpoint(tmp_path / "lt" / "round0" / "last.pt")["model"]
    assert set(rewind) == set(trained)
    assert all(torch.equal(rewind[k], trained[k].cpu()) for k in trained), "the SGD iterate after epoch 1, bit for bit"


def test_channel_pruned_run_is_smaller_and_loads(tiny, tmp_path: Path, capsys) -> None:
    data, run = tiny
    out = tmp_path / "slim"
    assert main(["prune", str(run), str(data), "--structured", "channels", "--sparsity", "0.5", "--epochs", "1",
                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "params" in printed and "macs" in printed and "latency_p50_ms_batch1" in printed
    summary = read_summary(out)
    before, after = summary.structured["before"], summary.structured["after"]
    assert after["params"] < 0.35 * before["params"] and after["macs"] < 0.35 * before["macs"]
    assert f"params: {before['params']:>14,} -> {after['params']:>14,}  (" in printed, "counts without decimals"
    model, _ = load_run(out)
    assert sum(p.numel() for p in model.parameters()) == after["params"]
    assert model.features[0][0].out_channels == 16
    assert summary.channel_plan and summary.channel_plan[0].kept == 16
    assert _eval_top1(out, data, capsys) == pytest.approx(summary.test["test_top1"])


def test_pruning_a_channel_pruned_run_keeps_its_narrow_shapes(tiny, tmp_path: Path, capsys) -> None:
    """Magnitude pruning and the lottery ticket of a channel-pruned run write runs that load (the plan travels)."""
    data, run = tiny
    slim, sparse, lottery = tmp_path / "slim", tmp_path / "sparse", tmp_path / "lt"
    common = ["--epochs", "1", "--quiet"]
    assert main(["prune", str(run), str(data), "--structured", "channels", "--sparsity", "0.5", "--out", str(slim),
                 *common]) == 0
    plan = read_summary(slim).channel_plan
    assert main(["prune", str(slim), str(data), "--sparsity", "0.5", "--out", str(sparse), *common]) == 0
    assert main(["prune", str(slim), str(data), "--iterative", "--rounds", "1", "--no-control", "--out", str(lottery),
                 *common]) == 0
    printed = capsys.readouterr().out
    assert "sparsity" in printed and "random reinit test top-1" in printed, "the sparsity-accuracy table"
    for out in (sparse, lottery / "round0", lottery / "round1"):
        assert read_summary(out).channel_plan == plan
        model, _ = load_run(out)
        assert model.features[0][0].out_channels == 16, f"{out.name}: the slim architecture"


def test_runs_pruned_from_a_head_run_keep_its_head_and_load(tiny, tmp_path: Path, capsys) -> None:
    """A `--head mlp:8` run pruned (magnitude, lottery ticket with its reinit control, channels) gives runs
    whose summary keeps the head, so `load_run` rebuilds them (the head was dropped: missing classifier keys)."""
    data, _ = tiny
    run = tmp_path / "head_run"
    assert main(["train", str(data), "--model", "compact_cnn", "--epochs", "1", "--batch-size", "8", "--img-size", "16",
                 "--head", "mlp:8", "--out", str(run), "--quiet"]) == 0
    head = read_summary(run).head
    assert head is not None and head.hidden == (8,)
    sparse, lottery, slim = tmp_path / "sparse", tmp_path / "lt", tmp_path / "slim"
    common = ["--epochs", "1", "--quiet"]
    assert main(["prune", str(run), str(data), "--sparsity", "0.5", "--out", str(sparse), *common]) == 0
    assert main(["prune", str(run), str(data), "--iterative", "--rounds", "1", "--out", str(lottery), *common]) == 0
    assert main(["prune", str(run), str(data), "--structured", "channels", "--sparsity", "0.25", "--out", str(slim),
                 *common]) == 0
    for out in (sparse, lottery / "round1", slim):
        assert read_summary(out).head == head, out.name
        model, _ = load_run(out)
        head_module = model.get_submodule(model.default_cfg.classifier)
        assert head_module.in_features == 8, f"{out.name}: the final Linear of the MLP head"
    capsys.readouterr()


def test_bad_prune_arguments_are_named(tiny, tmp_path: Path, capsys) -> None:
    data, run = tiny
    assert main(["prune", str(run), str(data), "--iterative", "--rewind", "epoch:x", "--out", str(tmp_path / "a")]) == 2
    assert "--rewind" in capsys.readouterr().err
    assert main(["prune", str(run), str(data), "--sparsity", "1.5", "--out", str(tmp_path / "b")]) == 2
    assert "--sparsity must be in [0, 1), got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "b").exists(), "refused before OUT is written to"
    assert main(["prune", str(run), str(data), "--iterative", "--sparsity", "0.9", "--out", str(tmp_path / "c")]) == 2
    assert "--sparsity 0.9 has no effect with --iterative" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_pruning_names_the_split_it_measures_before_and_after(tmp_path: Path, capsys) -> None:
    """Data given as train/val has no test split: the before/after figures are the val split's, said so
    (was 'test top-1 ... before pruning', measured on val), and 'after' is the pruned run's own."""
    data, run = train_val_run(tmp_path)
    out = tmp_path / "pruned"
    capsys.readouterr()
    assert main(["prune", str(run), str(data), "--sparsity", "0.5", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert "test top-1" not in line and " val top-1 " in line, line
    after = float(line.split("before pruning, ")[1].split("%")[0])
    assert main(["eval", str(out), str(data), "--json"]) == 0
    assert after == pytest.approx(100 * json.loads(capsys.readouterr().out)["val_top1"], abs=0.01)


def test_the_lottery_table_names_its_split_and_scores_each_rounds_best_weights(tmp_path: Path, capsys) -> None:
    """Without a test split the table is the val split's (was a `test_top1` column holding val figures),
    and each round's figure is what `cnnkit eval` measures on that round's best weights."""
    data, run = train_val_run(tmp_path)
    rows = lottery_ticket(open_run(run, str(data)), open_run(run, str(data)).config.replace(epochs=2),
                          LotterySettings(rounds=1, rate=0.5, rewind_epoch=0, control=False), tmp_path / "lt")
    assert [row.split for row in rows] == ["val", "val"]
    assert (tmp_path / "lt" / "lottery.csv").read_text().startswith("round,density,split,top1,")
    for row in rows:
        capsys.readouterr()
        assert main(["eval", row.run_dir, str(data), "--json"]) == 0
        assert row.top1 == pytest.approx(json.loads(capsys.readouterr().out)["val_top1"]), row.run_dir


def test_a_finetune_run_can_be_pruned_and_distilled(tmp_path: Path, capsys) -> None:
    """`cnnkit finetune` writes the top-level files of a run, config.yaml included: prune and distill take it
    (both said 'has no config.yaml: not a run directory written by cnnkit'), and its resume still passes."""
    data = make_tiny_folder(tmp_path / "data")
    ft = tmp_path / "ft"
    finetune = ["finetune", str(data), "--model", "compact_cnn", "--phases", "head:1,all:1", "--img-size", "16",
                "--batch-size", "8", "--out", str(ft), "--quiet"]
    assert main(finetune) == 0
    assert main([*finetune, "--resume"]) == 0, capsys.readouterr().err
    common = ["--epochs", "1", "--batch-size", "8", "--quiet"]
    assert main(["prune", str(ft), str(data), "--sparsity", "0.5", "--out", str(tmp_path / "sparse"), *common]) == 0
    assert main(["distill", str(ft), str(data), "--student", "mnist_cnn", "--out", str(tmp_path / "student"),
                 *common]) == 0, capsys.readouterr().err
    assert read_summary(tmp_path / "sparse").pruned_from == str(ft)
