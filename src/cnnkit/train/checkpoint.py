"""Checkpoints that survive a kill: atomic writes, and every RNG state needed for an exact resume."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes

from cnnkit.errors import CnnkitError


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` so that a reader sees either the old complete file or the new complete one.

    The data goes to a temporary file in the same folder (same file system, so the rename is
    atomic), is flushed and fsynced, then renamed over `path`; the folder is fsynced so that
    the rename itself survives a power cut. A crash at any point leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def atomic_copy(source: str | Path, destination: str | Path) -> None:
    """Copy `source` over `destination` through `atomic_write`: a kill mid-copy leaves the old
    destination whole (a plain copy truncates it first) and at most a temporary file behind."""
    with open(source, "rb") as source_file:
        atomic_write(destination, lambda f: shutil.copyfileobj(source_file, f))


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files `atomic_write` left in `folder` when killed mid-write (a SIGKILL
    cannot clean up: each would keep a checkpoint's size of disk); returns them."""
    stale = sorted(Path(folder).glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Atomically save a training state (a dict of state dicts, tensors and plain values)."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint saved by `save_checkpoint`, without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CnnkitError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise CnnkitError(f"cannot load checkpoint {path}: {error}") from None


def check_same_run(saved: str | None, current: str | None, path: str | Path) -> None:
    """A checkpoint's run record (JSON of what the run is of: model, input size and normalisation,
    builder options, head) against the resuming run's: another is a CnnkitError naming the fields
    (an --img-size or --model-opt left out of a resume changed the run silently)."""
    if saved is None or current is None or saved == current:
        return
    before, now = json.loads(saved), json.loads(current)
    # A field an older checkpoint does not record (its augmentation) cannot be checked: not a change.
    changed = [f"{key} {before[key]!r} (now {now[key]!r})" for key in sorted(set(before) & set(now))
               if before[key] != now[key]]
    if changed:
        raise CnnkitError(f"cannot resume from {path}: it is a run of {', '.join(changed)}; pass the run's own "
                          f"options (--model, --img-size, --model-opt, --head, --augment...) to continue it")


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Atomically save the model's state dict as safetensors (the portable weight file)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda f: f.write(safetensors_bytes(tensors)))


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states: what a resume needs to continue exactly."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state_to_plain(np.random.get_state(legacy=False)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_python_state(state["python"]))
    np.random.set_state(_numpy_state_from_plain(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_python_state(value: Any) -> tuple:
    # torch.save turns the inner tuple of random.getstate() into a list; setstate wants tuples.
    version, internal, gauss = value
    return (version, tuple(internal), gauss)


# torch.load(weights_only=True) admits tensors and plain containers, not NumPy arrays.
def _numpy_state_to_plain(state: dict[str, Any]) -> dict[str, Any]:
    inner = state["state"]
    return {**state, "state": {"key": torch.from_numpy(inner["key"].astype(np.int64)), "pos": int(inner["pos"])}}


def _numpy_state_from_plain(state: dict[str, Any]) -> dict[str, Any]:
    inner = state["state"]
    return {**state, "state": {"key": inner["key"].numpy().astype(np.uint32), "pos": inner["pos"]}}
