"""RT-DETRv2 configuration: one frozen dataclass and the variant rows (S / M / L / X, M-R34, tiny).

Rows follow upstream ``lyuwenyu/RT-DETR`` ``rtdetrv2_pytorch`` configs (see ``shared/specs/rtdetrv2.md``):
S = ResNet18-vd, M = ResNet50-vd "R50-m" (CCFM expansion 0.5, 6 decoder layers of which 3 run at
inference), L = ResNet50-vd, X = ResNet101-vd with a 384-wide encoder; ``rtdetrv2_m_r34`` is the
ResNet34-vd "M*" model. ``rtdetrv2_tiny`` is a test-only row on the same code path.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from models.variants import Published, Variant


@dataclass(frozen=True)
class RTDETRv2Config:
    """Everything that differs between RT-DETRv2 variants.

    Attributes:
        blocks_per_stage: PResNet blocks in each of the 4 stages, e.g. (2, 2, 2, 2) for ResNet18.
        bottleneck: Bottleneck blocks (expansion 4, ResNet50/101) instead of BasicBlocks.
        stem_channels: output width of the three-conv stem (its first two convs use half of it).
        stage_channels: inner width of each stage (Bottleneck outputs are 4x this).
        freeze_stem: stem convs do not train (upstream ``freeze_at: 0``).
        freeze_norm: every backbone BatchNorm is a ``FrozenBatchNorm2d`` (upstream ``freeze_norm``).
        encoder_dim / encoder_ffn_dim / encoder_heads: AIFI + CCFM width, AIFI FFN width and heads.
        expansion: CSPRep hidden-width ratio; depth_mult: RepVGG blocks per CSPRep = round(3 * it).
        decoder_dim / decoder_heads / decoder_ffn_dim / decoder_layers: decoder transformer sizes.
        eval_idx: index of the last decoder layer run at inference (-1 = all).
        num_queries: object queries (top-k encoder proposals).
        num_points: deformable sampling points per feature level (3 levels).
        cross_attn_method: ``"default"`` (bilinear ``grid_sample``) or ``"discrete"`` (nearest gather).
        num_denoising / label_noise_ratio / box_noise_scale: contrastive denoising settings.
        eval_spatial_size: square input size the anchors / position embedding are cached for.
    """

    blocks_per_stage: tuple[int, int, int, int]
    bottleneck: bool
    stem_channels: int = 64
    stage_channels: tuple[int, int, int, int] = (64, 128, 256, 512)
    freeze_stem: bool = False
    freeze_norm: bool = False
    encoder_dim: int = 256
    encoder_ffn_dim: int = 1024
    encoder_heads: int = 8
    expansion: float = 1.0
    depth_mult: float = 1.0
    decoder_dim: int = 256
    decoder_heads: int = 8
    decoder_ffn_dim: int = 1024
    decoder_layers: int = 6
    eval_idx: int = -1
    num_queries: int = 300
    num_points: tuple[int, int, int] = (4, 4, 4)
    cross_attn_method: str = "default"
    num_denoising: int = 100
    label_noise_ratio: float = 0.5
    box_noise_scale: float = 1.0
    eval_spatial_size: int = 640


_R18 = RTDETRv2Config(blocks_per_stage=(2, 2, 2, 2), bottleneck=False)
_R34 = RTDETRv2Config(blocks_per_stage=(3, 4, 6, 3), bottleneck=False)
_R50 = RTDETRv2Config(blocks_per_stage=(3, 4, 6, 3), bottleneck=True, freeze_stem=True, freeze_norm=True)
_R101 = replace(_R50, blocks_per_stage=(3, 4, 23, 3))

CONFIGS: dict[str, RTDETRv2Config] = {
    "rtdetrv2_s": replace(_R18, expansion=0.5, decoder_layers=3),
    "rtdetrv2_m": replace(_R50, expansion=0.5, decoder_layers=6, eval_idx=2),
    "rtdetrv2_l": replace(_R50, expansion=1.0, decoder_layers=6),
    "rtdetrv2_x": replace(_R101, encoder_dim=384, encoder_ffn_dim=2048, decoder_layers=6),
    "rtdetrv2_m_r34": replace(_R34, expansion=0.5, decoder_layers=4),
    # Test-only: small BasicBlock PResNet, 64-wide transformer, 2 decoder layers, anchors cached at 128.
    "rtdetrv2_tiny": RTDETRv2Config(
        blocks_per_stage=(1, 1, 1, 1),
        bottleneck=False,
        stem_channels=16,
        stage_channels=(16, 32, 64, 128),
        encoder_dim=64,
        encoder_ffn_dim=128,
        encoder_heads=4,
        expansion=0.5,
        depth_mult=0.34,
        decoder_dim=64,
        decoder_heads=4,
        decoder_ffn_dim=128,
        decoder_layers=2,
        num_queries=30,
        num_points=(2, 2, 2),
        num_denoising=20,
        eval_spatial_size=128,
    ),
}

_PUBLISHED: dict[str, Published | None] = {
    "rtdetrv2_s": Published(
        48.1, 20, 60, 20_184_464, 4.61, 5.03, release_file="rtdetrv2_r18vd_120e_coco_rerun_48.1.pth"
    ),
    "rtdetrv2_m": Published(
        51.9, 36, 100, 36_593_772, 6.90, 7.51, release_file="rtdetrv2_r50vd_m_7x_coco_ema.pth"
    ),
    "rtdetrv2_l": Published(
        53.4, 42, 136, 42_891_372, 9.26, 9.76, release_file="rtdetrv2_r50vd_6x_coco_ema.pth"
    ),
    "rtdetrv2_x": Published(
        54.3, 76, 259, 76_556_268, 13.51, 15.03, release_file="rtdetrv2_r101vd_6x_coco_from_paddle.pth"
    ),
    # M* (R34): 49.9 AP, 31 M, 92 GFLOPs, 161 FPS upstream; not a row of the comparison table, so it
    # has no t4_ms_table figure.
    "rtdetrv2_m_r34": Published(
        49.9, 31, 92, 31_441_668, 6.21, None, release_file="rtdetrv2_r34vd_120e_coco_ema.pth"
    ),
    "rtdetrv2_tiny": None,
}

VARIANTS: dict[str, Variant] = {
    name: Variant(
        name=name,
        family="rtdetrv2",
        config=cfg,
        published=_PUBLISHED[name],
        input_size=cfg.eval_spatial_size,
        pixel_scale=1.0,
    )
    for name, cfg in CONFIGS.items()
}
