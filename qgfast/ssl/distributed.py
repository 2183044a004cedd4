"""torch.distributed glue for multi-GPU and multi-node runs launched by ``torchrun``.

``torchrun`` sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; ``setup``
reads them and starts the process group (NCCL on GPUs, gloo on CPU). Without them the run
is a single process and every helper here is a no-op. No launcher of our own: torchrun
(or SLURM's srun with the same variables) starts the processes.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes checkpoints, logs and progress."""
    return rank() == 0


def setup(device: str | None = None, timeout_s: float = 1800) -> torch.device:
    """Start the process group when launched by torchrun (WORLD_SIZE > 1) and return this
    process's device: ``cuda:LOCAL_RANK`` on GPUs, else ``device`` or the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local if world > 1 else torch.cuda.current_device())
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not is_distributed():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return dev


def teardown() -> None:
    """Leave the process group: every rank waits for the others first, so no rank tears
    down the store (hosted by rank 0) while another still talks to it."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` on ``device``, inside DistributedDataParallel when distributed. Wrap before
    building the framework: its EMA teacher then averages weights DDP keeps equal on every
    rank, so teachers agree across ranks without communication. BatchNorm running statistics
    are the exception: DDP broadcasts rank 0's at the start of each training forward, but
    each rank's own forward then updates them locally, so ``for_inference`` re-broadcasts
    them before anything is scored.
    """
    model = model.to(device)
    if not is_distributed():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def sync_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, in place."""
    if not is_distributed():
        return
    for buf in model.buffers():
        if dist.get_backend() == "nccl" or buf.device.type == "cpu":
            dist.broadcast(buf.data, src=0)
        else:  # gloo with a tensor on an accelerator: go through the CPU
            host = buf.data.cpu()
            dist.broadcast(host, src=0)
            buf.data.copy_(host)


def for_inference(model: nn.Module) -> nn.Module:
    """The module to score with on this rank: buffers synced from rank 0, then the module
    under DDP, whose forward runs no collective. Through DDP itself, ranks scoring different
    numbers of cases would deadlock in its per-forward buffer broadcast. Every rank must
    call this (the sync is a collective)."""
    sync_buffers(model)
    while isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return model


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (a one-element list in a single process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (a stop signal one rank received)."""
    if not is_distributed():
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
