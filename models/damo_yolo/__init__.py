"""DAMO-YOLO T/S/M/L (TinyNAS backbone, RepGFPN neck, ZeroHead) implementing ``models.family.Family``.

>>> from models import damo_yolo
>>> model = damo_yolo.build_model(damo_yolo.VARIANTS["damo_yolo_t"], num_classes=80)
"""

from __future__ import annotations

from torch import nn

from models.damo_yolo.build import build_model, count_gflops, count_params
from models.damo_yolo.checkpoint import convert_checkpoint, convert_official_checkpoint
from models.damo_yolo.config import VARIANTS, DamoYoloConfig, StageSpec
from models.damo_yolo.criterion import DamoYoloCriterion
from models.damo_yolo.detector import DamoYolo
from models.damo_yolo.end2end import end2end_settings, end2end_wrapper
from models.damo_yolo.export import DamoYoloExport, export_wrapper
from models.damo_yolo.postprocess import DamoYoloPostprocessor
from models.variants import Variant

__all__ = [
    "VARIANTS",
    "DamoYolo",
    "DamoYoloConfig",
    "DamoYoloCriterion",
    "DamoYoloExport",
    "DamoYoloPostprocessor",
    "StageSpec",
    "build_criterion",
    "build_model",
    "build_postprocessor",
    "convert_checkpoint",
    "convert_official_checkpoint",
    "count_gflops",
    "count_params",
    "end2end_settings",
    "end2end_wrapper",
    "export_wrapper",
]


def build_criterion(variant: Variant, *, num_classes: int = 80) -> nn.Module:
    """The training loss for ``variant`` (AlignOTA + QFL + 2.0 GIoU + 0.25 DFL)."""
    return DamoYoloCriterion(num_classes=num_classes, reg_max=variant.config.reg_max)


def build_postprocessor(variant: Variant, *, num_classes: int = 80) -> nn.Module:
    """COCO-eval post-processing: score > 0.05 per class, class-wise NMS IoU 0.7, top 500."""
    del variant  # identical for every row
    return DamoYoloPostprocessor(num_classes=num_classes)
