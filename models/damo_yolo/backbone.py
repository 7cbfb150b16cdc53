"""TinyNAS backbones: ResNet-style (``res``, T/S) and CSP-style (``csp``, M/L).

Both return the stride-8/16/32 feature maps. Module paths equal the official checkpoint keys:
``backbone.block_list.{i}.block_list.{j}`` (res) and ``backbone.csp_stage.{i}`` (csp).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.damo_yolo.config import StageSpec
from models.damo_yolo.layers import ConvKXBN, ConvKXBNAct, Focus, RepConv, SPPBottleneck, make_activation


class ResConvBlock(nn.Module):
    """conv1 (1x1 or 3x3, +BN) -> act -> RepConv 3x3 (given stride, no act) -> (+identity unless
    stride 2) -> act. [B, in, H, W] -> [B, out, H/stride, W/stride]."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        btn_channels: int,
        *,
        stride: int,
        conv1_kernel: int,
        act: str,
    ):
        super().__init__()
        if stride != 2 and in_channels != out_channels:
            # Upstream would add a 1x1 projection here; no released variant needs one.
            raise ValueError(f"stride-1 ResConvBlock needs in == out, got {in_channels} -> {out_channels}")
        self.residual = stride != 2
        self.conv1 = ConvKXBN(in_channels, btn_channels, conv1_kernel)
        self.conv2 = RepConv(btn_channels, out_channels, stride=stride, act="identity")
        self.act = make_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.act(self.conv1(x)))
        if self.residual:
            y = y + x
        return self.act(y)


class ResStage(nn.Module):
    """A NAS stage of ResConvBlocks (first takes the stride), optionally SPP after the first block."""

    def __init__(self, in_channels: int, spec: StageSpec, *, act: str, with_spp: bool):
        super().__init__()
        self.block_list = nn.ModuleList()
        for j in range(spec.num_blocks):
            first = j == 0
            self.block_list.append(
                ResConvBlock(
                    in_channels if first else spec.out_channels,
                    spec.out_channels,
                    spec.btn_channels,
                    stride=spec.stride if first else 1,
                    conv1_kernel=1,
                    act=act,
                )
            )
            if first and with_spp:
                self.block_list.append(SPPBottleneck(spec.out_channels, spec.out_channels))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.block_list:
            x = block(x)
        return x


class TinyNasRes(nn.Module):
    """TinyNAS_res: Focus stem + 5 stages (k1kx blocks); outputs of stages 2, 4, 5 (strides 8/16/32)."""

    out_indices = (2, 4, 5)
    out_channels: tuple[int, int, int]

    def __init__(self, *, stem_channels: int, stages: tuple[StageSpec, ...], act: str):
        super().__init__()
        if len(stages) != 5:
            raise ValueError(f"res backbone needs 5 stages, got {len(stages)}")
        self.block_list = nn.ModuleList([Focus(3, stem_channels, act=act)])
        in_channels = stem_channels
        for i, spec in enumerate(stages):
            self.block_list.append(ResStage(in_channels, spec, act=act, with_spp=i == len(stages) - 1))
            in_channels = spec.out_channels
        c3, c4, c5 = (stages[i - 1].out_channels for i in self.out_indices)
        self.out_channels = (c3, c4, c5)

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, block in enumerate(self.block_list):
            x = block(x)
            if i in self.out_indices:
                outs.append(x)
        return outs


class CspWrapper(nn.Module):
    """CSP stage: 3x3 s2 downsampler (ReLU) [-> SPP] -> split into shortcut 1x1 and start 1x1 ->
    chain of kxkx ResConvBlocks -> concat [chain, shortcut] -> fuse 1x1. [B, in, H, W] -> [B, out, H/2, W/2].

    The wrapper's own convs use ReLU whatever the backbone activation (upstream default).
    """

    def __init__(self, in_channels: int, spec: StageSpec, *, act: str, with_spp: bool):
        super().__init__()
        out, half = spec.out_channels, spec.out_channels // 2
        # Registered first so the state-dict order matches the official file.
        self.convstem = nn.ModuleList(
            ResConvBlock(half, half, spec.btn_channels, stride=1, conv1_kernel=3, act=act)
            for _ in range(spec.num_blocks)
        )
        self.downsampler = ConvKXBNAct(in_channels, out, 3, stride=2, act="relu")
        self.spp = SPPBottleneck(out, out) if with_spp else None
        self.conv_start = ConvKXBNAct(out, half, 1, act="relu")
        self.conv_shortcut = ConvKXBNAct(out, half, 1, act="relu")
        self.conv_fuse = ConvKXBNAct(out, out, 1, act="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.downsampler(x)
        if self.spp is not None:
            x = self.spp(x)
        shortcut = self.conv_shortcut(x)
        x = self.conv_start(x)
        for block in self.convstem:
            x = block(x)
        return self.conv_fuse(torch.cat((x, shortcut), dim=1))


class TinyNasCsp(nn.Module):
    """TinyNAS_csp: Focus stem + 4 CSP wrappers (last with SPP); outputs of wrappers 2, 3, 4."""

    out_indices = (2, 3, 4)
    out_channels: tuple[int, int, int]

    def __init__(self, *, stem_channels: int, stages: tuple[StageSpec, ...], act: str):
        super().__init__()
        if len(stages) != 4:
            raise ValueError(f"csp backbone needs 4 wrappers, got {len(stages)}")
        self.csp_stage = nn.ModuleList([Focus(3, stem_channels, act=act)])
        in_channels = stem_channels
        for i, spec in enumerate(stages):
            self.csp_stage.append(CspWrapper(in_channels, spec, act=act, with_spp=i == len(stages) - 1))
            in_channels = spec.out_channels
        c3, c4, c5 = (stages[i - 1].out_channels for i in self.out_indices)
        self.out_channels = (c3, c4, c5)

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, block in enumerate(self.csp_stage):
            x = block(x)
            if i in self.out_indices:
                outs.append(x)
        return outs
