"""A 2-process torchrun job on CPU (gloo) trains like the single-process one, and only rank 0 writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cnnkit.train.checkpoint import load_checkpoint

TOY_JOB = Path(__file__).with_name("toy_job.py")


def _val_top1(run_dir: Path) -> float:
    return load_checkpoint(run_dir / "last.pt")["trainer"]["history"][-1]["val_top1"]


def test_two_process_torchrun_matches_single_process(tmp_path: Path) -> None:
    single = subprocess.run([sys.executable, str(TOY_JOB), str(tmp_path / "single"), "--epochs", "4"],
                            capture_output=True, text=True, timeout=180)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(TOY_JOB), str(tmp_path / "ddp"), "--epochs", "4", "--distributed"],
        capture_output=True, text=True, timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    history = load_checkpoint(tmp_path / "ddp" / "last.pt")["trainer"]["history"]
    assert len(history) == 4
    # Each rank sees half of each epoch; validation is reduced over both ranks' halves.
    assert abs(_val_top1(tmp_path / "ddp") - _val_top1(tmp_path / "single")) <= 0.1
    assert _val_top1(tmp_path / "ddp") >= 0.85
    written = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert written == ["best.safetensors", "last.pt"], "only rank 0 writes, once"
