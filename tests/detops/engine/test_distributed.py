"""Loss normalisers under DDP: two gloo processes with unequal box counts per rank take the same
gradient as one process over the whole batch, because each family averages its normalisers over
the ranks (DAMO-YOLO: positive count and quality-weight sum; RT-DETRv2: ``num_boxes``).

The reference is the criterion in this process over all four images, with no process group.
Tolerances: the all-reduce sums in another order than one process does, so float32 agreement is
to ~1e-6 relative; the per-rank normaliser bug this guards changes the gradients by tens of percent.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent


def _helper():
    spec = importlib.util.spec_from_file_location("ddp_criterion", HERE / "ddp_criterion.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torchrun(script: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node 2 script args`` on CPU; one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.run(
        [*cmd, str(script), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_two_ranks_with_unequal_boxes_match_one_process(tmp_path: Path) -> None:
    helper = _helper()
    out = tmp_path / "ddp.pt"
    proc = torchrun(HERE / "ddp_criterion.py", str(out))  # one launch: both families, every case
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = torch.load(out, weights_only=True)
    for name in helper.NAMES:
        for case in helper.CASES:
            _check(helper, name, case, results[f"{name}/{case}"])


def _check(helper, name: str, case: str, ddp: dict) -> None:
    images, targets = helper.batch(case)
    loss, grads = helper.loss_and_grads(name, images, targets)
    # DDP's per-rank losses average to the one-process loss (each rank divided by the mean normaliser).
    assert sum(ddp["losses"]) / 2 == pytest.approx(loss, rel=1e-5), (name, case)
    assert ddp["losses"][0] != pytest.approx(ddp["losses"][1], rel=1e-3), (name, case)  # really unequal
    nonzero = 0
    for key, grad in grads.items():
        torch.testing.assert_close(ddp["grads"][key], grad, rtol=1e-4, atol=1e-7, msg=f"{name} {case} {key}")
        nonzero += int(bool(grad.abs().sum() > 0))
    assert nonzero > len(grads) // 2, (name, case)


@pytest.mark.parametrize("n, world, per_rank", [(8, 2, 2), (10, 2, 2), (11, 3, 1), (9, 2, 3)])
def test_rank_shards_hold_the_one_process_global_batches(n: int, world: int, per_rank: int) -> None:
    """Rank r's k-th batch and the other ranks' k-th batches together are exactly the k-th batch of
    one process with the global batch (drop_last); without drop_last every index is covered."""
    from detops.data.loader import SeededRandomSampler

    batch = per_rank * world
    for epoch in (0, 3):
        one = SeededRandomSampler(n, seed=7)
        one.set_epoch(epoch)
        order = list(one)
        ranks = []
        for rank in range(world):
            sampler = SeededRandomSampler(n, seed=7, rank=rank, world_size=world, drop_last=True)
            sampler.set_epoch(epoch)
            ranks.append(list(sampler))
            assert len(ranks[-1]) == len(sampler) == n // world
        for k in range(n // batch):
            together = sorted(i for r in ranks for i in r[k * per_rank : (k + 1) * per_rank])
            assert together == sorted(order[k * batch : (k + 1) * batch]), (epoch, k)
        padded = []
        for rank in range(world):
            sampler = SeededRandomSampler(n, seed=7, rank=rank, world_size=world, drop_last=False)
            sampler.set_epoch(epoch)
            padded += list(sampler)
        assert set(padded) == set(range(n)) and len(padded) == -(-n // world) * world
