"""PResNet-vd backbone (ResNet18/34/50/101 "vd" as in RT-DETRv2).

Three-conv stem, max-pool, four stages; the first block of every stage has a projection shortcut
(stage 0: plain 1x1 conv; stride-2 stages: 2x2 average pool then 1x1 conv, the "vd" trick). Bottleneck
blocks put the stride on the 3x3 conv. Module names match the official checkpoint keys
(``conv1.conv1_{1,2,3}``, ``res_layers.{s}.blocks.{b}.branch2{a,b,c}``, ``short`` / ``short.conv``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn

from models.rtdetrv2.layers import ConvNormLayer


class BasicBlock(nn.Module):
    """3x3 (stride) -> 3x3 (no activation), add the shortcut, ReLU. Output width ``ch_out``."""

    expansion = 1

    def __init__(self, ch_in: int, ch_out: int, stride: int, *, project: bool, frozen_norm: bool) -> None:
        super().__init__()
        self.short = _shortcut(ch_in, ch_out, stride, frozen_norm) if project else None
        self.branch2a = ConvNormLayer(ch_in, ch_out, 3, stride, act=nn.ReLU(), frozen_norm=frozen_norm)
        self.branch2b = ConvNormLayer(ch_out, ch_out, 3, 1, frozen_norm=frozen_norm)

    def forward(self, x: Tensor) -> Tensor:
        """[B, ch_in, H, W] -> [B, ch_out, H / stride, W / stride]."""
        short = x if self.short is None else self.short(x)
        return F.relu(self.branch2b(self.branch2a(x)) + short)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (no activation, 4x width), add the shortcut, ReLU."""

    expansion = 4

    def __init__(self, ch_in: int, ch_out: int, stride: int, *, project: bool, frozen_norm: bool) -> None:
        super().__init__()
        width = ch_out
        # Branches before the shortcut: the official state-dict order for Bottleneck blocks.
        self.branch2a = ConvNormLayer(ch_in, width, 1, 1, act=nn.ReLU(), frozen_norm=frozen_norm)
        self.branch2b = ConvNormLayer(width, width, 3, stride, act=nn.ReLU(), frozen_norm=frozen_norm)
        self.branch2c = ConvNormLayer(width, ch_out * 4, 1, 1, frozen_norm=frozen_norm)
        self.short = _shortcut(ch_in, ch_out * 4, stride, frozen_norm) if project else None

    def forward(self, x: Tensor) -> Tensor:
        """[B, ch_in, H, W] -> [B, 4 * ch_out, H / stride, W / stride]."""
        short = x if self.short is None else self.short(x)
        return F.relu(self.branch2c(self.branch2b(self.branch2a(x))) + short)


def _shortcut(ch_in: int, ch_out: int, stride: int, frozen_norm: bool) -> nn.Module:
    # "vd": a stride-2 projection averages 2x2 first instead of skipping 3 of 4 pixels.
    if stride == 1:
        return ConvNormLayer(ch_in, ch_out, 1, 1, frozen_norm=frozen_norm)
    return nn.Sequential(
        OrderedDict(
            [
                ("pool", nn.AvgPool2d(2, 2, 0, ceil_mode=True)),
                ("conv", ConvNormLayer(ch_in, ch_out, 1, 1, frozen_norm=frozen_norm)),
            ]
        )
    )


class Stage(nn.Module):
    """``count`` blocks; the first one strides and projects. Keys ``blocks.{b}``."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        ch_in: int,
        ch_out: int,
        count: int,
        stride: int,
        frozen_norm: bool,
    ) -> None:
        super().__init__()
        blocks = []
        for b in range(count):
            blocks.append(
                block(ch_in, ch_out, stride if b == 0 else 1, project=b == 0, frozen_norm=frozen_norm)
            )
            ch_in = ch_out * block.expansion
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x


class PResNet(nn.Module):
    """PResNet-vd returning the stride-8/16/32 maps (stages 1..3).

    Args:
        blocks_per_stage: blocks in each of the 4 stages.
        bottleneck: Bottleneck (expansion 4) instead of BasicBlock.
        stem_channels: stem output width; stage_channels: inner width per stage.
        freeze_stem: stem parameters get ``requires_grad=False``.
        freeze_norm: FrozenBatchNorm2d everywhere in the backbone.
    """

    def __init__(
        self,
        *,
        blocks_per_stage: tuple[int, int, int, int],
        bottleneck: bool,
        stem_channels: int = 64,
        stage_channels: tuple[int, int, int, int] = (64, 128, 256, 512),
        freeze_stem: bool = False,
        freeze_norm: bool = False,
    ) -> None:
        super().__init__()
        half = stem_channels // 2
        relu = nn.ReLU
        self.conv1 = nn.Sequential(
            OrderedDict(
                [
                    ("conv1_1", ConvNormLayer(3, half, 3, 2, act=relu(), frozen_norm=freeze_norm)),
                    ("conv1_2", ConvNormLayer(half, half, 3, 1, act=relu(), frozen_norm=freeze_norm)),
                    (
                        "conv1_3",
                        ConvNormLayer(half, stem_channels, 3, 1, act=relu(), frozen_norm=freeze_norm),
                    ),
                ]
            )
        )
        block = Bottleneck if bottleneck else BasicBlock
        stages = []
        ch_in = stem_channels
        for i, (count, width) in enumerate(zip(blocks_per_stage, stage_channels, strict=True)):
            stages.append(Stage(block, ch_in, width, count, 1 if i == 0 else 2, freeze_norm))
            ch_in = width * block.expansion
        self.res_layers = nn.ModuleList(stages)
        self.out_channels = [w * block.expansion for w in stage_channels[1:]]
        self.out_strides = [8, 16, 32]
        if freeze_stem:
            for p in self.conv1.parameters():
                p.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        """[B, 3, H, W] -> [C3 [B, c3, H/8, W/8], C4 [B, c4, H/16, W/16], C5 [B, c5, H/32, W/32]]."""
        x = F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)
        outs = []
        for i, stage in enumerate(self.res_layers):
            x = stage(x)
            if i >= 1:
                outs.append(x)
        return outs
