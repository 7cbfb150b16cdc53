"""FLOP counting with torch's own dispatcher-level counter (no thop).

Reported figures are GFLOPs = 2 x multiply-accumulates of convolutions and matrix products, the
convention both upstream projects publish.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def count_gflops(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    """GFLOPs of one ``model(*inputs)`` call (eval mode is the caller's choice).

    Args:
        model: any module.
        inputs: positional inputs, e.g. ``(torch.zeros(1, 3, 640, 640),)``.
    Returns:
        total FLOPs / 1e9 as counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions,
        matrix products and attention; element-wise ops are not counted).
    """
    counter = FlopCounterMode(display=False)
    with counter:
        model(*inputs)
    return counter.get_total_flops() / 1e9


def count_parameters(module: nn.Module) -> int:
    """Number of elements over all parameters of ``module`` (trainable or frozen)."""
    return sum(p.numel() for p in module.parameters())
