"""DAMO-YOLO configuration: one frozen dataclass and one variant row per published model.

Channel tables follow the upstream TinyNAS structure strings and GiraffeNeckV2 configs
(``configs/damoyolo_tinynasL{20,25,35,45}_{T,S,M,L}.py``); see ``shared/specs/damo-yolo.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.variants import Published, Variant


@dataclass(frozen=True)
class StageSpec:
    """One backbone stage.

    ``res`` backbones (T/S): a NAS stage of ``num_blocks`` ResConvBlocks, the first with ``stride``.
    ``csp`` backbones (M/L): one CSP wrapper (always stride 2) holding ``num_blocks`` blocks of
    width ``out_channels // 2``; ``stride`` is unused.
    """

    out_channels: int
    btn_channels: int
    num_blocks: int
    stride: int = 2


@dataclass(frozen=True)
class DamoYoloConfig:
    """Architecture of one DAMO-YOLO variant.

    Attributes:
        backbone: ``"res"`` (TinyNAS_res, k1kx blocks) or ``"csp"`` (TinyNAS_csp, kxkx blocks).
        stem_channels: Focus stem output channels.
        stages: backbone stages after the stem (5 for ``res``, 4 CSP wrappers for ``csp``).
        backbone_act: activation inside blocks and the stem (``"relu"`` or ``"silu"``).
        neck_depth: GiraffeNeckV2 depth; blocks per fusion node = ``round(3 * depth)``.
        neck_hidden_ratio: RepBlock hidden width ratio.
        neck_channels: neck output channels at strides 8, 16, 32.
        neck_act: neck activation.
        strides: head strides.
        reg_max: DFL bins minus one.
    """

    backbone: str
    stem_channels: int
    stages: tuple[StageSpec, ...]
    backbone_act: str
    neck_depth: float
    neck_hidden_ratio: float
    neck_channels: tuple[int, int, int]
    neck_act: str
    strides: tuple[int, int, int] = (8, 16, 32)
    reg_max: int = 16


def _row(name: str, config: DamoYoloConfig, published: Published | None) -> Variant:
    return Variant(
        name=name,
        family="damo_yolo",
        config=config,
        published=published,
        input_size=640,
        pixel_scale=255.0,
    )


_T = DamoYoloConfig(
    backbone="res",
    stem_channels=24,
    stages=(
        StageSpec(64, 24, 2, 2),
        StageSpec(96, 64, 2, 2),
        StageSpec(192, 96, 2, 2),
        StageSpec(192, 152, 2, 1),
        StageSpec(384, 192, 1, 2),
    ),
    backbone_act="relu",
    neck_depth=1.0,
    neck_hidden_ratio=1.0,
    neck_channels=(64, 128, 256),
    neck_act="relu",
)

_S = DamoYoloConfig(
    backbone="res",
    stem_channels=32,
    stages=(
        StageSpec(128, 24, 1, 2),
        StageSpec(128, 88, 5, 2),
        StageSpec(256, 128, 3, 2),
        StageSpec(256, 120, 2, 1),
        StageSpec(512, 144, 1, 2),
    ),
    backbone_act="relu",
    neck_depth=1.0,
    neck_hidden_ratio=0.75,
    neck_channels=(128, 256, 512),
    neck_act="relu",
)

_M = DamoYoloConfig(
    backbone="csp",
    stem_channels=32,
    stages=(
        StageSpec(128, 64, 1),
        StageSpec(128, 64, 3),
        StageSpec(256, 256, 7),
        StageSpec(512, 256, 2),
    ),
    backbone_act="silu",
    neck_depth=1.5,
    neck_hidden_ratio=1.0,
    neck_channels=(128, 256, 512),
    neck_act="silu",
)

_L = DamoYoloConfig(
    backbone="csp",
    stem_channels=32,
    stages=(
        StageSpec(128, 96, 2),
        StageSpec(128, 96, 4),
        StageSpec(256, 384, 9),
        StageSpec(512, 384, 3),
    ),
    backbone_act="silu",
    neck_depth=2.0,
    neck_hidden_ratio=1.0,
    neck_channels=(128, 256, 512),
    neck_act="silu",
)

# Test-only: the T code path (res backbone, ReLU, RepConvs, SPP, every neck node) at toy widths.
_TINY = DamoYoloConfig(
    backbone="res",
    stem_channels=8,
    stages=(
        StageSpec(16, 8, 1, 2),
        StageSpec(16, 8, 2, 2),
        StageSpec(32, 16, 1, 2),
        StageSpec(32, 16, 1, 1),
        StageSpec(48, 16, 1, 2),
    ),
    backbone_act="relu",
    neck_depth=1 / 3,
    neck_hidden_ratio=0.75,
    neck_channels=(16, 32, 48),
    neck_act="relu",
)

VARIANTS: dict[str, Variant] = {
    "damo_yolo_t": _row(
        "damo_yolo_t",
        _T,
        Published(42.0, 8.5, 18.1, 8_479_631, 2.78, 2.32, release_file="damoyolo_tinynasL20_T_420.pth"),
    ),
    "damo_yolo_s": _row(
        "damo_yolo_s",
        _S,
        Published(46.0, 16.3, 37.8, 16_251_631, 3.83, 3.45, release_file="damoyolo_tinynasL25_S_460.pth"),
    ),
    "damo_yolo_m": _row(
        "damo_yolo_m",
        _M,
        Published(49.2, 28.2, 61.8, 28_178_175, 5.62, 5.09, release_file="damoyolo_tinynasL35_M_492.pth"),
    ),
    "damo_yolo_l": _row(
        "damo_yolo_l",
        _L,
        Published(50.8, 42.1, 97.3, 42_058_111, 7.95, 7.18, release_file="damoyolo_tinynasL45_L_508.pth"),
    ),
    "damo_yolo_tiny": _row("damo_yolo_tiny", _TINY, None),
}
