"""Multi-process training through ``torchrun`` (DDP): NCCL on CUDA, gloo on CPU.

``torchrun --standalone --nproc_per_node N -m detops.cli train ...`` sets ``RANK`` / ``WORLD_SIZE`` /
``LOCAL_RANK``; ``init_from_env`` reads them. A plain ``detops train`` is world size 1 and never
touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size and local rank of this process; ``enabled`` when world size > 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when this machine has a CUDA device and ``cpu`` otherwise; any other
    name is returned as is."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def init_from_env(device: str) -> DistInfo:
    """Join the process group described by torchrun's environment (no-op for a single process).

    On CUDA each process takes device ``cuda:LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def device_for(device: str, info: DistInfo) -> torch.device:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under DDP; anything else is returned as is."""
    if device == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return torch.device(device)


def wrap(model: nn.Module, info: DistInfo, device: torch.device, *, find_unused: bool = False) -> nn.Module:
    """DDP-wrap ``model`` when distributed. ``find_unused`` for models whose batches can leave
    branches idle (RT-DETRv2's denoising queries on a batch without objects); it costs a graph walk."""
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` (in rank order) on every rank; ``[obj]`` when not distributed."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Each entry averaged over the ranks (one all-reduce); ``values`` itself when not distributed.

    Every rank must pass the same keys. The engine logs these means, which equal one process's
    losses over the global batch because the criteria share their normalisers across ranks."""
    if not info.enabled:
        return values
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return {k: float(v) / info.world_size for k, v in zip(keys, tensor.tolist(), strict=True)}


@torch.no_grad()
def sync_buffers(model: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) into every rank's ``model``.

    Without SyncBatchNorm each rank updates its running statistics from its own shard; DDP only
    broadcasts rank 0's buffers at the start of the next forward. Syncing right after the step makes
    every rank's model, and hence its EMA and its evaluation shard, identical."""
    if not info.enabled:
        return
    for buf in model.buffers():
        dist.broadcast(buf, src=0)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for one process)."""
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Leave the process group joined by ``init_from_env``."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
