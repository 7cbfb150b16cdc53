"""DataLoader construction: seeded shuffling, worker processes, and per-rank shards under DDP.

Shuffling order is a function of (``seed``, epoch) alone, and each sample's augmentation a function of
(``seed``, epoch, index) (see ``CocoDetection.rng_for``), so a run is reproducible for any number of
workers and an interrupted run resumed at an epoch boundary sees exactly the batches it would have.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from detops.data.dataset import CocoDetection, collate


class SeededRandomSampler(Sampler[int]):
    """A permutation of ``range(n)`` drawn from ``(seed, epoch)``; call ``set_epoch`` every epoch."""

    def __init__(self, n: int, *, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())

    def __len__(self) -> int:
        return self.n


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` in order, without padding (evaluation under DDP must see
    each image exactly once)."""

    def __init__(self, n: int, *, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, n, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _seed_worker(worker_id: int) -> None:
    # Library RNGs inside workers are not used for augmentation (that has its own generator per
    # sample); seeding them anyway keeps any third-party randomness reproducible.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    dataset: CocoDetection,
    *,
    batch_size: int,
    shuffle: bool,
    workers: int,
    seed: int,
    drop_last: bool = False,
    distributed: bool = False,
) -> DataLoader:
    """A loader yielding ``(images [B, 3, H, W], targets list)`` batches (see ``dataset.collate``).

    ``batch_size`` is per process. With ``distributed`` each rank gets a disjoint shard (training:
    the ``DistributedSampler`` seeded with ``seed``; evaluation: every world-size-th image,
    unpadded). Workers are re-created every epoch so a change of the dataset's epoch or transform
    (the no-augmentation tail) reaches them.
    """
    sampler: Any
    if distributed and shuffle:
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=drop_last)
    elif distributed:
        import torch.distributed as dist

        sampler = ShardSampler(len(dataset), rank=dist.get_rank(), world_size=dist.get_world_size())
    elif shuffle:
        sampler = SeededRandomSampler(len(dataset), seed=seed)
    else:
        sampler = None
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        drop_last=drop_last,
        worker_init_fn=_seed_worker if workers > 0 else None,
        generator=gen,
        persistent_workers=False,
    )


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Point the loader's sampler and dataset at ``epoch`` (shuffle order and augmentation stream)."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
