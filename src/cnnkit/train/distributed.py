"""Multi-process training through PyTorch DDP, as started by `torchrun` (gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from cnnkit.errors import CnnkitError


@dataclass
class DistributedContext:
    """This process's place in the job; the default is a single process (rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes checkpoints and logs."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        if not self.enabled:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def gradient_sync(self, wrapped: nn.Module, *, sync: bool) -> contextlib.AbstractContextManager:
        """Around a micro-batch's forward and backward through `wrapped` (what `wrap` returned, maybe
        torch.compile'd): without `sync`, DDP's `no_sync()`, so the gradients add up locally and are
        all-reduced once, by the step's last micro-batch (its backward averages the sum over ranks)."""
        if sync or not self.enabled:
            return contextlib.nullcontext()
        return getattr(wrapped, "_orig_mod", wrapped).no_sync()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        # gloo reduces CPU tensors; nccl needs them on the GPU.
        work = tensor.to(self.device)
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        return work.cpu()

    def value_and_any_non_finite(self, value: torch.Tensor) -> tuple[float, bool]:
        """A one-element tensor's value, and whether it is non-finite on any rank (every rank gets
        the same answer); one host sync either way: under DDP the flag is all-reduced on the
        tensor's device and read together with the value."""
        value = value.detach().float().reshape(1)
        if not self.enabled:
            number = float(value)
            return number, not math.isfinite(number)
        flag = (~value.isfinite()).float()
        dist.all_reduce(flag, op=dist.ReduceOp.SUM)
        number, ranks = torch.cat([value, flag]).tolist()
        return number, ranks > 0

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) on every rank: each rank's forward updates them
        from its own batch, so without this the ranks evaluate different models."""
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def checked_device(requested: str) -> torch.device:
    """`requested` ("cpu", "cuda", "cuda:1", ...) as a device this machine has; otherwise a
    CnnkitError naming it (torch's own errors come at the first tensor moved there)."""
    try:
        device = torch.device(requested)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ValueError) as error:
        available = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        raise CnnkitError(f"--device {requested!r} is not usable here ({error}); this machine has: "
                          f"{', '.join(available)}") from None
    return device


def init_from_torchrun(device: str | None = None) -> DistributedContext:
    """Join the process group that `torchrun` describes in RANK/WORLD_SIZE/LOCAL_RANK (the launcher's
    contract, not a cnnkit switch); a plain `python` start gives the single-process context."""
    if device:
        checked_device(device)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistributedContext(device=torch.device(device) if device else _default_device(0))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    chosen = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(chosen)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen)


def _default_device(local_rank: int) -> torch.device:
    return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")


def shutdown(context: DistributedContext) -> None:
    """Leave the process group together: a rank tearing down its gloo pairs while another is
    still in a collective makes that rank abort."""
    if context.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
