"""GiraffeNeckV2 (Efficient RepGFPN): three-scale fusion with ELAN-style CSPStage nodes.

Node and conv names equal the official keys (``neck.bu_conv13``, ``neck.merge_3`` ...).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.damo_yolo.layers import ConvBNAct, RepConv


class RepBlock(nn.Module):
    """BasicBlock_3x3_Reverse: RepConv m->h (+act, ``conv2``, runs first) -> ConvBNAct 3x3 h->m
    (``conv1``) -> + identity. [B, m, H, W] -> same shape."""

    def __init__(self, channels: int, *, hidden_ratio: float, act: str):
        super().__init__()
        hidden = int(channels * hidden_ratio)
        self.conv1 = ConvBNAct(hidden, channels, 3, act=act)
        self.conv2 = RepConv(channels, hidden, act=act)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv1(self.conv2(x))


class CSPStage(nn.Module):
    """Fusion node: conv1 1x1 -> c//2; conv2 1x1 -> c - c//2 -> n RepBlocks; concat [conv1, every
    block output] -> conv3 1x1 -> c. [B, c_in, H, W] -> [B, c, H, W]."""

    def __init__(
        self, in_channels: int, out_channels: int, *, num_blocks: int, hidden_ratio: float, act: str
    ):
        super().__init__()
        first = out_channels // 2
        mid = out_channels - first
        self.conv1 = ConvBNAct(in_channels, first, 1, act=act)
        self.conv2 = ConvBNAct(in_channels, mid, 1, act=act)
        self.convs = nn.ModuleList(
            RepBlock(mid, hidden_ratio=hidden_ratio, act=act) for _ in range(num_blocks)
        )
        self.conv3 = ConvBNAct(first + mid * num_blocks, out_channels, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        outs = [self.conv1(x)]
        y = self.conv2(x)
        for block in self.convs:
            y = block(y)
            outs.append(y)
        return self.conv3(torch.cat(outs, dim=1))


def _upsample(x: Tensor) -> Tensor:
    return nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")


class GiraffeNeckV2(nn.Module):
    """RepGFPN: backbone (P3, P4, P5) with ``in_channels`` -> 3 maps with ``out_channels`` at the
    same strides (8, 16, 32)."""

    def __init__(
        self,
        *,
        in_channels: tuple[int, int, int],
        out_channels: tuple[int, int, int],
        depth: float,
        hidden_ratio: float,
        act: str,
    ):
        super().__init__()
        c3, c4, c5 = in_channels
        o3, o4, o5 = out_channels
        # Python's round (banker's): depth 1.5 -> round(4.5) = 4 blocks, as upstream.
        n = round(3 * depth)

        def stage(cin: int, cout: int) -> CSPStage:
            return CSPStage(cin, cout, num_blocks=n, hidden_ratio=hidden_ratio, act=act)

        self.bu_conv13 = ConvBNAct(c4, c4, 3, stride=2, act=act)
        self.merge_3 = stage(c5 + c4, c5)
        self.bu_conv24 = ConvBNAct(c3, c3, 3, stride=2, act=act)
        self.merge_4 = stage(c4 + c3 + c5, c4)
        self.merge_5 = stage(c3 + c4, o3)
        self.bu_conv57 = ConvBNAct(o3, o3, 3, stride=2, act=act)
        self.merge_7 = stage(c4 + o3, o4)
        self.bu_conv46 = ConvBNAct(c4, c4, 3, stride=2, act=act)
        self.bu_conv76 = ConvBNAct(o4, o4, 3, stride=2, act=act)
        self.merge_6 = stage(c5 + c4 + o4, o5)
        self.out_channels = tuple(out_channels)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        p3, p4, p5 = features
        n3 = self.merge_3(torch.cat([p5, self.bu_conv13(p4)], dim=1))
        n4 = self.merge_4(torch.cat([p4, self.bu_conv24(p3), _upsample(n3)], dim=1))
        n5 = self.merge_5(torch.cat([p3, _upsample(n4)], dim=1))
        n7 = self.merge_7(torch.cat([n4, self.bu_conv57(n5)], dim=1))
        n6 = self.merge_6(torch.cat([n3, self.bu_conv46(n4), self.bu_conv76(n7)], dim=1))
        return [n5, n7, n6]
