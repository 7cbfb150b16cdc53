"""DDP really runs: ``torchrun --nproc_per_node 2`` on CPU (gloo) takes the same first step as one
process over the same global batch.

DDP averages the ranks' gradients, each rank normalising its loss over its own half batch and
using its own BatchNorm batch statistics. The single-process reference is therefore the same global
batch split into the same two halves: the mean of the two halves' losses, one backward, one step.
Parameters must agree to float tolerance (the all-reduce sums in another order).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler

import models
from detops.data.dataset import CocoDetection, collate
from detops.engine.recipes import build_optimizer, recipe_for, train_pipeline

HERE = Path(__file__).parent


def _script_constants():
    spec = importlib.util.spec_from_file_location("ddp_first_step", HERE / "ddp_first_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_torchrun_two_processes_match_one(synth_root: Path, tmp_path: Path) -> None:
    s = _script_constants()
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HERE / "ddp_first_step.py"),
        str(synth_root),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out, weights_only=True)
    assert ddp["world"] == 2
    shard_ids = ddp["image_ids"]
    assert len(shard_ids) == 2 and not set(shard_ids[0]) & set(shard_ids[1])  # disjoint halves

    # Single process: same init, the same global batch (the two halves the DistributedSampler gave).
    variant = models.get_variant(s.NAME)
    torch.manual_seed(s.SEED)
    model = models.build_model(s.NAME, num_classes=6)
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}
    criterion = models.build_criterion(s.NAME, num_classes=6)
    ds = CocoDetection.from_root(
        synth_root, split="train", seed=s.SEED, transform=train_pipeline(variant, size=s.SIZE, augment=False)
    )
    recipe = recipe_for(variant, epochs=1, iters_per_epoch=1, total_batch=s.GLOBAL_BATCH, lr=s.LR)
    optimizer = build_optimizer(model, recipe)
    model.train()
    half_losses = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=s.SEED)
        sampler.set_epoch(0)
        indices = list(sampler)[: s.GLOBAL_BATCH // 2]
        images, targets = collate([ds[i] for i in indices])
        assert [t["image_id"] for t in targets] == shard_ids[rank]
        targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        half_losses.append(criterion(model(images, targets), targets, image_size=(s.SIZE, s.SIZE))["loss"])
    optimizer.zero_grad()
    ((half_losses[0] + half_losses[1]) / 2).backward()
    optimizer.step()

    assert [float(x.detach()) for x in half_losses] == pytest.approx(ddp["losses"], rel=1e-5)
    moved = 0
    for name, value in model.named_parameters():
        torch.testing.assert_close(ddp["params"][name], value.detach(), rtol=1e-4, atol=1e-6, msg=name)
        moved += int(not torch.equal(value.detach(), initial[name]))
    assert moved > len(initial) // 2  # the step really changed the weights
