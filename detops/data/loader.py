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
from torch.utils.data import DataLoader, Sampler

from detops.data.dataset import CocoDetection, collate


class SeededRandomSampler(Sampler[int]):
    """A permutation of ``range(n)`` drawn from ``(seed, epoch)``; call ``set_epoch`` every epoch.

    With ``world_size`` > 1, rank ``rank`` takes every world-size-th entry of that same permutation
    (cut to a multiple of the world size with ``drop_last``, else padded from its start), so the
    ranks' k-th per-rank batches together hold exactly the k-th global batch of one process."""

    def __init__(
        self, n: int, *, seed: int, rank: int = 0, world_size: int = 1, drop_last: bool = False
    ) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self.rank, self.world_size = rank, world_size
        if world_size == 1:
            self.total = n
        elif drop_last:
            self.total = n - n % world_size
        else:
            self.total = -(-n // world_size) * world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=gen).tolist()
        if self.total > self.n:
            order += (order * (self.total // max(self.n, 1) + 1))[: self.total - self.n]
        return iter(order[: self.total][self.rank :: self.world_size])

    def __len__(self) -> int:
        return self.total // self.world_size


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
    every world-size-th index of the one-process permutation, so W ranks train on the same global
    batches as one process; evaluation: every world-size-th image, unpadded). Workers are
    re-created every epoch so a change of the dataset's epoch or transform (the no-augmentation
    tail) reaches them.
    """
    sampler: Any
    if distributed:
        import torch.distributed as dist

        rank, world = dist.get_rank(), dist.get_world_size()
    if distributed and shuffle:
        sampler = SeededRandomSampler(
            len(dataset), seed=seed, rank=rank, world_size=world, drop_last=drop_last
        )
    elif distributed:
        sampler = ShardSampler(len(dataset), rank=rank, world_size=world)
    elif shuffle:
        sampler = SeededRandomSampler(len(dataset), seed=seed)
    else:
        sampler = None
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(
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
    setattr(loader, "detops_seed", seed)  # noqa: B010  (read back by set_loader_epoch)
    return loader


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Point the loader's sampler and dataset at ``epoch`` (shuffle order and augmentation stream)
    and re-seed its generator from (seed, epoch): each pass draws its workers' base seed from that
    generator, so worker RNGs then depend on the epoch alone, not on how many passes came before
    (a resumed run's first pass is the uninterrupted run's k-th)."""
    seed = getattr(loader, "detops_seed", None)
    if seed is not None and loader.generator is not None:
        loader.generator.manual_seed(int(seed) * 100_003 + epoch + 1)
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
