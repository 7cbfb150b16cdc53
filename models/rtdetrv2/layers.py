"""Small building blocks shared by the RT-DETRv2 backbone, encoder and decoder."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.rtdetrv2.frozen_bn import FrozenBatchNorm2d


class ConvNormLayer(nn.Module):
    """Conv (no bias unless asked) -> BatchNorm (or FrozenBatchNorm2d) -> activation.

    Attribute names ``conv`` / ``norm`` / ``act`` match the official checkpoint keys.
    Padding is ``(kernel - 1) // 2``, so stride 1 keeps the spatial size.
    """

    def __init__(
        self,
        ch_in: int,
        ch_out: int,
        kernel_size: int,
        stride: int = 1,
        *,
        act: nn.Module | None = None,
        frozen_norm: bool = False,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch_in, ch_out, kernel_size, stride, padding=(kernel_size - 1) // 2, bias=bias)
        self.norm = FrozenBatchNorm2d(ch_out) if frozen_norm else nn.BatchNorm2d(ch_out)
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """[B, ch_in, H, W] -> [B, ch_out, H / stride, W / stride]."""
        return self.act(self.norm(self.conv(x)))


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (none after the last); keys ``layers.{i}``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims_in = [in_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out, strict=True))

    def forward(self, x: Tensor) -> Tensor:
        """[..., in_dim] -> [..., out_dim]."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = torch.relu(x)
        return x


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Logit of ``x`` clipped to [0, 1]; ``eps`` keeps 0 and 1 finite (same shape and dtype out)."""
    if x.dtype == torch.float16:
        # In float16 x / eps = 1e5 overflows to inf once a box coordinate saturates at 0 or 1, and
        # the division's backward is then 0 * inf = NaN (eps^2 underflows): compute in float32.
        return inverse_sigmoid(x.float(), eps).to(x.dtype)
    x = x.clamp(min=0.0, max=1.0)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def bias_init_with_prob(prior_prob: float) -> float:
    """Classifier bias whose sigmoid equals ``prior_prob`` (focal-loss style prior)."""
    return -math.log((1 - prior_prob) / prior_prob)
