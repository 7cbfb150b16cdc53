"""DAMO-YOLO building blocks: conv+BN(+act) units, RepConv with BN folding, Focus stem, SPP.

Attribute names mirror the official checkpoint keys (``conv``/``bn``, ``conv1``/``bn1``,
``rbr_dense``/``rbr_1x1``/``rbr_reparam``) so train-form state dicts load without renaming.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# Upstream sets every BatchNorm2d to eps 1e-3, momentum 0.03 at model init; eps matters for folding.
BN_EPS = 1e-3
BN_MOMENTUM = 0.03


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d with DAMO-YOLO's eps and momentum."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def make_activation(name: str) -> nn.Module:
    """``"relu"``, ``"silu"`` or ``"identity"`` -> a fresh module (ValueError otherwise)."""
    if name == "relu":
        return nn.ReLU()
    if name == "silu":
        return nn.SiLU()
    if name == "identity":
        return nn.Identity()
    raise ValueError(f"unsupported activation {name!r}; expected 'relu', 'silu' or 'identity'")


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, bias=False)


class ConvBNAct(nn.Module):
    """Conv (same padding, no bias) -> BN -> activation; keys ``conv.*``, ``bn.*``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, act: str):
        super().__init__()
        self.conv = _conv(in_channels, out_channels, kernel_size, stride)
        self.bn = batch_norm(out_channels)
        self.act = make_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class ConvKXBN(nn.Module):
    """Conv (same padding, no bias) -> BN, no activation; keys ``conv1.*``, ``bn1.*`` (TinyNAS naming)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1):
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, kernel_size, stride)
        self.bn1 = batch_norm(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn1(self.conv1(x))


class ConvKXBNAct(nn.Module):
    """ConvKXBN followed by an activation; keys ``conv.conv1.*``, ``conv.bn1.*``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, act: str):
        super().__init__()
        self.conv = ConvKXBN(in_channels, out_channels, kernel_size, stride=stride)
        self.act = make_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))


class ConvBN(nn.Module):
    """One RepConv branch: conv (no bias) -> BN; keys ``conv.weight``, ``bn.*``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int):
        super().__init__()
        self.conv = _conv(in_channels, out_channels, kernel_size, stride)
        self.bn = batch_norm(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


def fold_conv_bn(weight: Tensor, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Fold eval-mode BN into a bias-free conv: weight [O, I, k, k] -> (weight [O, I, k, k], bias [O])."""
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError("cannot fold a BatchNorm2d that does not track running statistics")
    std = (bn.running_var + bn.eps).sqrt()
    factor = bn.weight / std
    return weight * factor.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * factor


class RepConv(nn.Module):
    """3x3 re-parameterisable conv: train form [3x3 conv+BN] + [1x1 conv+BN] summed, then activation.

    There is no identity branch (upstream ``rbr_identity`` is always None). ``fuse()`` replaces both
    branches by one biased 3x3 conv ``rbr_reparam`` computing the same eval-mode function.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, act: str):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.rbr_dense = ConvBN(in_channels, out_channels, 3, stride=stride)
        self.rbr_1x1 = ConvBN(in_channels, out_channels, 1, stride=stride)
        self.nonlinearity = make_activation(act)

    @property
    def fused(self) -> bool:
        return hasattr(self, "rbr_reparam")

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:
            return self.nonlinearity(self.rbr_reparam(x))
        return self.nonlinearity(self.rbr_dense(x) + self.rbr_1x1(x))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold both branches (BN in eval form) into ``rbr_reparam``; no-op when already fused."""
        if self.fused:
            return
        k3, b3 = fold_conv_bn(self.rbr_dense.conv.weight, self.rbr_dense.bn)
        k1, b1 = fold_conv_bn(self.rbr_1x1.conv.weight, self.rbr_1x1.bn)
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, self.stride, 1, bias=True)
        conv = conv.to(device=k3.device, dtype=k3.dtype)
        # A 1x1 kernel is a 3x3 kernel that is zero off-centre (padding 1 vs 0 keeps the alignment).
        conv.weight.copy_(k3 + nn.functional.pad(k1, [1, 1, 1, 1]))
        assert conv.bias is not None  # built with bias=True
        conv.bias.copy_(b3 + b1)
        del self.rbr_dense
        del self.rbr_1x1
        self.rbr_reparam = conv


class Focus(nn.Module):
    """Space-to-depth 2x2 then ConvBNAct: [B, C, H, W] -> [B, out, H/2, W/2]."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int = 3, act: str):
        super().__init__()
        self.conv = ConvBNAct(in_channels * 4, out_channels, kernel_size, act=act)

    def forward(self, x: Tensor) -> Tensor:
        # Sub-grid order (row, col parity): (0,0), (1,0), (0,1), (1,1), as the released weights expect.
        x = torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), dim=1)
        return self.conv(x)


class SPPBottleneck(nn.Module):
    """YOLOv3-SPP block: 1x1 C->C/2, max-pools 5/9/13 (stride 1) concatenated, 1x1 -> out. Always SiLU."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_sizes: tuple[int, ...] = (5, 9, 13)):
        super().__init__()
        hidden = in_channels // 2
        self.conv1 = ConvBNAct(in_channels, hidden, 1, act="silu")
        self.m = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes)
        self.conv2 = ConvBNAct(hidden * (len(kernel_sizes) + 1), out_channels, 1, act="silu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.m], dim=1))
