"""Hybrid encoder: AIFI (one transformer layer on the stride-32 map) + CCFM (FPN/PAN of CSPRep blocks).

Module names match the official checkpoint keys: ``input_proj.{i}.{conv,norm}``,
``encoder.0.layers.0.*`` (AIFI), ``lateral_convs``, ``fpn_blocks``, ``downsample_convs``, ``pan_blocks``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.rtdetrv2.layers import ConvNormLayer
from models.rtdetrv2.position_encoding import sincos_position_embedding_2d


class RepVggBlock(nn.Module):
    """3x3 conv+BN in parallel with 1x1 conv+BN, summed, SiLU; ``fuse()`` makes one biased 3x3 conv."""

    def __init__(self, ch_in: int, ch_out: int) -> None:
        super().__init__()
        self.ch_in, self.ch_out = ch_in, ch_out
        self.conv1 = ConvNormLayer(ch_in, ch_out, 3, 1)
        self.conv2 = ConvNormLayer(ch_in, ch_out, 1, 1)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        """[B, ch_in, H, W] -> [B, ch_out, H, W]."""
        if hasattr(self, "conv"):
            return self.act(self.conv(x))
        return self.act(self.conv1(x) + self.conv2(x))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold both branches (with their BatchNorm statistics) into ``self.conv``; idempotent.

        The branch modules stay so the train-form state dict can still be loaded.
        """
        if hasattr(self, "conv"):
            return
        k3, b3 = _fold_bn(self.conv1)
        k1, b1 = _fold_bn(self.conv2)
        conv = nn.Conv2d(self.ch_in, self.ch_out, 3, 1, padding=1, bias=True)
        conv.weight.copy_(k3 + F.pad(k1, [1, 1, 1, 1]))
        assert conv.bias is not None  # created with bias=True
        conv.bias.copy_(b3 + b1)
        self.conv = conv.to(k3.device)


def _fold_bn(layer: ConvNormLayer) -> tuple[Tensor, Tensor]:
    """(kernel, bias) of conv followed by eval-mode BatchNorm."""
    bn = layer.norm
    if not isinstance(bn, nn.BatchNorm2d) or bn.running_var is None or bn.running_mean is None:
        raise ValueError("RepVGG fusion needs BatchNorm2d layers with running statistics")
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    return layer.conv.weight * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class CSPRepLayer(nn.Module):
    """Two 1x1 branches, one through ``num_blocks`` RepVGG blocks, summed, then 1x1 to ``ch_out``.

    ``conv3`` is an identity when the hidden width equals ``ch_out`` (expansion 1: no ``conv3`` keys).
    """

    def __init__(self, ch_in: int, ch_out: int, *, num_blocks: int, expansion: float) -> None:
        super().__init__()
        hidden = int(ch_out * expansion)
        self.conv1 = ConvNormLayer(ch_in, hidden, 1, 1, act=nn.SiLU())
        self.conv2 = ConvNormLayer(ch_in, hidden, 1, 1, act=nn.SiLU())
        self.bottlenecks = nn.Sequential(*[RepVggBlock(hidden, hidden) for _ in range(num_blocks)])
        self.conv3 = ConvNormLayer(hidden, ch_out, 1, 1, act=nn.SiLU()) if hidden != ch_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """[B, ch_in, H, W] -> [B, ch_out, H, W]."""
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class AIFILayer(nn.Module):
    """Post-norm transformer encoder layer: MHA(q=k=x+pos, v=x) -> add -> LN -> FFN(GELU) -> add -> LN."""

    def __init__(self, dim: int, heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        """src [B, L, dim], pos [1, L, dim] -> [B, L, dim]."""
        q = src + pos
        # need_weights=False as upstream: the fused attention kernel (and upstream's FLOP count).
        src = self.norm1(src + self.self_attn(q, q, value=src, need_weights=False)[0])
        return self.norm2(src + self.linear2(F.gelu(self.linear1(src))))


class TransformerEncoder(nn.Module):
    """A stack of AIFI layers; keys ``layers.{i}``."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(AIFILayer(dim, heads, ffn_dim) for _ in range(num_layers))

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        for layer in self.layers:
            src = layer(src, pos)
        return src


class HybridEncoder(nn.Module):
    """Project the backbone maps to ``dim`` channels, run AIFI on the last one, then CCFM.

    Args:
        in_channels: channels of the stride-8/16/32 backbone maps.
        dim: encoder width (256; 384 for X); ffn_dim / heads: AIFI FFN width and heads.
        expansion / depth_mult: CSPRep hidden ratio and RepVGG-count multiplier (3 blocks at 1.0).
        eval_spatial_size: input size whose position embedding is cached (non-persistent buffer).
    """

    pos_embed: Tensor

    def __init__(
        self,
        *,
        in_channels: list[int],
        dim: int,
        ffn_dim: int,
        heads: int,
        expansion: float,
        depth_mult: float,
        eval_spatial_size: int,
        strides: tuple[int, ...] = (8, 16, 32),
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_proj = nn.ModuleList(
            nn.Sequential(
                OrderedDict([("conv", nn.Conv2d(c, dim, 1, bias=False)), ("norm", nn.BatchNorm2d(dim))])
            )
            for c in in_channels
        )
        self.encoder = nn.ModuleList([TransformerEncoder(dim, heads, ffn_dim, 1)])
        num_blocks = round(3 * depth_mult)
        levels = len(in_channels)
        self.lateral_convs = nn.ModuleList(
            ConvNormLayer(dim, dim, 1, 1, act=nn.SiLU()) for _ in range(levels - 1)
        )
        self.fpn_blocks = nn.ModuleList(
            CSPRepLayer(2 * dim, dim, num_blocks=num_blocks, expansion=expansion) for _ in range(levels - 1)
        )
        self.downsample_convs = nn.ModuleList(
            ConvNormLayer(dim, dim, 3, 2, act=nn.SiLU()) for _ in range(levels - 1)
        )
        self.pan_blocks = nn.ModuleList(
            CSPRepLayer(2 * dim, dim, num_blocks=num_blocks, expansion=expansion) for _ in range(levels - 1)
        )
        side = eval_spatial_size // strides[-1]
        self.register_buffer(
            "pos_embed", sincos_position_embedding_2d(side, side, embed_dim=dim), persistent=False
        )

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """Backbone maps -> 3 maps [B, dim, H/8, W/8], [B, dim, H/16, W/16], [B, dim, H/32, W/32]."""
        proj = [p(f) for p, f in zip(self.input_proj, feats, strict=True)]
        top = proj[-1]
        b, c, h, w = top.shape
        pos = self.pos_embed
        if self.training or pos.shape[1] != h * w:
            pos = sincos_position_embedding_2d(w, h, embed_dim=self.dim).to(top.device, top.dtype)
        tokens = self.encoder[0](top.flatten(2).permute(0, 2, 1), pos)
        proj[-1] = tokens.permute(0, 2, 1).reshape(b, c, h, w).contiguous()

        # Top-down: the lateral output replaces the higher map for the bottom-up concat later.
        levels = len(proj)
        inner = [proj[-1]]
        for step, idx in enumerate(range(levels - 1, 0, -1)):
            high = self.lateral_convs[step](inner[0])
            inner[0] = high
            up = F.interpolate(high, scale_factor=2.0, mode="nearest")
            inner.insert(0, self.fpn_blocks[step](torch.cat([up, proj[idx - 1]], dim=1)))
        outs = [inner[0]]
        for idx in range(levels - 1):
            down = self.downsample_convs[idx](outs[-1])
            outs.append(self.pan_blocks[idx](torch.cat([down, inner[idx + 1]], dim=1)))
        return outs
