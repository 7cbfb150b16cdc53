"""The RT-DETRv2 detector: backbone -> hybrid encoder -> decoder, plus its builder."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.box_ops import box_xyxy_to_cxcywh
from models.rtdetrv2.config import RTDETRv2Config
from models.rtdetrv2.decoder import RTDETRDecoder
from models.rtdetrv2.hybrid_encoder import HybridEncoder, RepVggBlock
from models.rtdetrv2.presnet import PResNet


class RTDETRv2(nn.Module):
    """``RTDETRv2(backbone, encoder, decoder)``; state-dict prefixes ``backbone.`` / ``encoder.`` / ``decoder.``.

    ``forward(images, targets=None)`` returns the decoder's raw dict in train and eval mode
    (see ``RTDETRDecoder.forward``). ``images``: float32 [B, 3, H, W] RGB in [0, 1], H and W
    multiples of 32. ``targets`` (training only, for denoising): per image ``"boxes"`` [N, 4] xyxy in
    input pixels and ``"labels"`` int64 [N]; ``None`` in training means no denoising queries.
    """

    def __init__(self, backbone: nn.Module, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        # Registration order (decoder before encoder) reproduces the official state-dict order.
        self.backbone = backbone
        self.decoder = decoder
        self.encoder = encoder

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None) -> dict[str, Any]:
        """[B, 3, H, W] -> raw output dict (``pred_logits`` [B, Q, C], ``pred_boxes`` [B, Q, 4], ...)."""
        dn_targets = None
        if self.training and targets is not None:
            h, w = images.shape[-2:]
            scale = torch.tensor([w, h, w, h], dtype=images.dtype, device=images.device)
            dn_targets = [
                {"labels": t["labels"], "boxes": box_xyxy_to_cxcywh(t["boxes"].to(images.dtype) / scale)}
                for t in targets
            ]
        return self.decoder(self.encoder(self.backbone(images)), dn_targets)

    def deploy(self) -> RTDETRv2:
        """Switch to eval mode and fuse every RepVGG block in place (idempotent); returns ``self``."""
        self.eval()
        for m in self.modules():
            if isinstance(m, RepVggBlock):
                m.fuse()
        return self


def build_rtdetrv2(cfg: RTDETRv2Config, *, num_classes: int) -> RTDETRv2:
    """Build an RT-DETRv2 model in train form from its config row."""
    backbone = PResNet(
        blocks_per_stage=cfg.blocks_per_stage,
        bottleneck=cfg.bottleneck,
        stem_channels=cfg.stem_channels,
        stage_channels=cfg.stage_channels,
        freeze_stem=cfg.freeze_stem,
        freeze_norm=cfg.freeze_norm,
    )
    encoder = HybridEncoder(
        in_channels=backbone.out_channels,
        dim=cfg.encoder_dim,
        ffn_dim=cfg.encoder_ffn_dim,
        heads=cfg.encoder_heads,
        expansion=cfg.expansion,
        depth_mult=cfg.depth_mult,
        eval_spatial_size=cfg.eval_spatial_size,
    )
    decoder = RTDETRDecoder(
        in_channels=[cfg.encoder_dim] * 3,
        num_classes=num_classes,
        dim=cfg.decoder_dim,
        heads=cfg.decoder_heads,
        ffn_dim=cfg.decoder_ffn_dim,
        num_layers=cfg.decoder_layers,
        eval_idx=cfg.eval_idx,
        num_queries=cfg.num_queries,
        num_points=cfg.num_points,
        method=cfg.cross_attn_method,
        num_denoising=cfg.num_denoising,
        label_noise_ratio=cfg.label_noise_ratio,
        box_noise_scale=cfg.box_noise_scale,
        eval_spatial_size=cfg.eval_spatial_size,
    )
    return RTDETRv2(backbone, encoder, decoder)
