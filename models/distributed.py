"""Loss normalisers shared by the ranks of a data-parallel run (``torch.distributed``).

Under DDP every rank normalises its own loss, then the gradients are averaged over the ranks.
Dividing each rank's loss sum by ``sum of the ranks' normalisers / world size`` (positive count,
box count, quality-weight sum) makes that average equal to the one-process loss over the whole
global batch: every rank's loss terms summed, divided by every rank's normaliser summed. Both
upstream families average their normalisers this way (DAMO-YOLO ``reduce_mean`` on the positive
count and quality-weight sum, RT-DETRv2 ``all_reduce(num_boxes) / world_size``).

One deliberate difference: upstream clamps the *mean* to >= 1, we clamp the global *sum* to >= 1
(the mean to >= 1 / world size). The two agree whenever the global normaliser is at least the world
size; below that (an untrained model's quality-weight sum is often < 1) upstream's clamp would make
W processes weight the loss differently from one process, which is what averaging is meant to avoid.
Without a process group (or with one rank) this is ``max(value, 1)``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Ranks in the default process group; 1 when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def shared_normaliser(value: Tensor | float, *, device: torch.device) -> float:
    """``max(sum of value over the ranks, 1) / world size`` for this rank's scalar ``value``.

    A collective under DDP: every rank must call it the same number of times in the same order, so
    callers reduce unconditionally, also on a rank whose batch has no positives or no boxes."""
    if isinstance(value, Tensor):
        tensor = value.detach().reshape(()).to(device=device, dtype=torch.float32).clone()
    else:
        tensor = torch.tensor(float(value), dtype=torch.float32, device=device)
    world = world_size()
    if world > 1:
        dist.all_reduce(tensor)
    return max(float(tensor), 1.0) / world
