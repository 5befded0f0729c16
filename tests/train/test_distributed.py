"""A 2-process torchrun job on CPU (gloo) trains like the single-process one, and only rank 0 writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnkit.train.checkpoint import load_checkpoint

from train.toy_job import make_trainer, plain_model

TOY_JOB = Path(__file__).with_name("toy_job.py")


def _val_top1(run_dir: Path) -> float:
    return load_checkpoint(run_dir / "last.pt")["trainer"]["history"][-1]["val_top1"]


def _torchrun(run_dir: Path, *extra: str, epochs: int = 4) -> None:
    job = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(TOY_JOB), str(run_dir), "--epochs", str(epochs), "--distributed", *extra],
                         capture_output=True, text=True, timeout=300)
    assert job.returncode == 0, job.stderr[-3000:]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted 2-process run (4 epochs), shared by the tests below."""
    run_dir = tmp_path_factory.mktemp("ddp") / "ddp"
    _torchrun(run_dir)
    return run_dir


def test_two_process_torchrun_matches_single_process(tmp_path: Path, ddp_run: Path) -> None:
    single = subprocess.run([sys.executable, str(TOY_JOB), str(tmp_path / "single"), "--epochs", "4"],
                            capture_output=True, text=True, timeout=180)
    assert single.returncode == 0, single.stderr
    ddp = ddp_run
    history = load_checkpoint(ddp / "last.pt")["trainer"]["history"]
    assert len(history) == 4
    # Each rank sees half of each epoch; validation is reduced over both ranks' halves.
    assert abs(_val_top1(ddp) - _val_top1(tmp_path / "single")) <= 0.1
    assert _val_top1(ddp) >= 0.85
    written = sorted(p.name for p in ddp.iterdir())
    assert written == ["best.safetensors", "last.pt"], "only rank 0 writes, once"


def test_two_process_run_resumed_mid_epoch_matches_the_uninterrupted_one(tmp_path: Path, ddp_run: Path) -> None:
    """Weights and every epoch's metrics. The mid-epoch checkpoint held rank 0's training counts only,
    which each rank resumed from (the resumed epoch's train loss/top-1 counted rank 0's share twice);
    and rank 1 validated with its EMA of its own BN statistics, replaced by rank 0's on resume."""
    _torchrun(tmp_path / "cut", "--stop-at-step", "5")  # 3 steps per rank and epoch: mid second epoch
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["trainer"]["batch_in_epoch"] == 1
    _torchrun(tmp_path / "cut", "--resume")
    whole, cut = load_checkpoint(ddp_run / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert cut["trainer"]["history"] == whole["trainer"]["history"]
    assert all(torch.equal(whole["model"][k], cut["model"][k]) for k in whole["model"])


def test_a_nan_loss_on_one_rank_is_skipped_by_every_rank(tmp_path: Path) -> None:
    """nan_policy skip: rank 1 alone skipped its backward, and the job died (SIGABRT) with rank 0
    waiting in the gradient all-reduce."""
    _torchrun(tmp_path / "nan", "--skip-nan-of-rank-1-at-step", "2", epochs=1)
    saved = load_checkpoint(tmp_path / "nan" / "last.pt")
    assert saved["trainer"]["skipped_batches"] == 1 and saved["trainer"]["step"] == 3
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_evaluation_shards_count_every_item_once() -> None:
    """The ranks' validation/test shares are summed into the metrics: they were padded as training
    is (DistributedSampler's rule), so 33 images on 2 ranks counted one twice (a confusion of 34)."""
    from torch.utils.data import TensorDataset

    from cnnkit.data.loader import make_loader

    data = TensorDataset(torch.arange(33.0).reshape(33, 1), torch.zeros(33, dtype=torch.long))
    seen = []
    for rank in range(2):
        loader = make_loader(data, batch_size=4, train=False, rank=rank, world_size=2)
        seen += [int(v) for images, _ in loader for v in images.flatten()]
    assert sorted(seen) == list(range(33))
    shares = [len(make_loader(data, batch_size=4, train=True, rank=r, world_size=2).sampler) for r in range(2)]
    assert shares == [17, 17], "training shares stay padded: every rank takes the same number of steps"



def test_accumulating_ranks_sync_once_per_optimizer_step_and_match_one_process_on_the_whole_batch(
        tmp_path: Path) -> None:
    """2 ranks x micro-batches of 8 accumulated in pairs: one gradient all-reduce per optimizer step
    (no_sync on the first micro-batch; the toy model is one bucket), and the weights of one process
    stepping on batches of 32 (the ranks take alternate items of the same order; a BN-free model)."""
    _torchrun(tmp_path / "ddp", "--plain", "--batch-size", "8", "--accumulate-steps", "2",
              "--count-syncs", str(tmp_path / "syncs"), epochs=1)
    single = make_trainer(str(tmp_path / "single"), 1, model=plain_model(), batch_size=32)
    single.fit()
    accumulated = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert accumulated["trainer"]["step"] == single.state.step == 3  # 48 images per rank
    assert [int((tmp_path / f"syncs.{rank}").read_text()) for rank in range(2)] == [3, 3]
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(accumulated["model"][name], value, rtol=2e-5, atol=2e-6, msg=name)
