"""The variant table's row type, shared by every detector family.

A family module (``models.damo_yolo``, ``models.rtdetrv2``) owns a frozen config dataclass and a
``VARIANTS: dict[str, Variant]`` of rows; ``models.build_model`` looks names up in their union.
A new variant is one new row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Published:
    """Figures published for a variant (COCO val2017 at 640x640), held here so tests can check builds.

    ``params_exact`` is the upstream parameter count of the form the family reports (DAMO-YOLO: after
    RepConv fusion; RT-DETRv2: all parameters plus frozen-BN affine/statistics counted as upstream).
    Latencies are T4 TensorRT FP16 batch-1 milliseconds: ``t4_ms_upstream`` as published by the
    authors, ``t4_ms_table`` as in the comparison table this project reproduces (``None`` for a row
    that table does not have). ``release_file``: the authors' file name of the release checkpoint
    these figures belong to (``detops reproduce`` finds it by this name).
    """

    map_50_95: float
    params_m: float
    gflops: float
    params_exact: int
    t4_ms_upstream: float
    t4_ms_table: float | None
    release_file: str = ""


@dataclass(frozen=True)
class Variant:
    """One buildable row of the variant table.

    Attributes:
        name: public name, e.g. ``"damo_yolo_t"``.
        family: ``"damo_yolo"`` or ``"rtdetrv2"``.
        config: the family's frozen config dataclass instance.
        published: published figures, ``None`` for test-only rows (``*_tiny``).
        input_size: default square network input size in pixels.
        pixel_scale: the value range the network expects for RGB input: 255.0 (0-255) or 1.0 (0-1).
    """

    name: str
    family: str
    config: Any
    published: Published | None
    input_size: int = 640
    pixel_scale: float = 255.0
