"""Builders from a variant row, and the deploy-form counts upstream publishes."""

from __future__ import annotations

import copy

import torch
from torch import nn

from models.damo_yolo.backbone import TinyNasCsp, TinyNasRes
from models.damo_yolo.config import DamoYoloConfig
from models.damo_yolo.detector import DamoYolo
from models.damo_yolo.head import ZeroHead
from models.damo_yolo.neck import GiraffeNeckV2
from models.flops import count_gflops as _count_gflops
from models.flops import count_parameters
from models.variants import Variant


def build_detector(config: DamoYoloConfig, *, num_classes: int) -> DamoYolo:
    """A train-form ``DamoYolo`` for ``config`` with fresh weights."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if config.backbone == "res":
        backbone: TinyNasRes | TinyNasCsp = TinyNasRes(
            stem_channels=config.stem_channels, stages=config.stages, act=config.backbone_act
        )
    elif config.backbone == "csp":
        backbone = TinyNasCsp(
            stem_channels=config.stem_channels, stages=config.stages, act=config.backbone_act
        )
    else:
        raise ValueError(f"unknown DAMO-YOLO backbone kind {config.backbone!r}; expected 'res' or 'csp'")
    neck = GiraffeNeckV2(
        in_channels=backbone.out_channels,
        out_channels=config.neck_channels,
        depth=config.neck_depth,
        hidden_ratio=config.neck_hidden_ratio,
        act=config.neck_act,
    )
    head = ZeroHead(
        in_channels=config.neck_channels,
        num_classes=num_classes,
        strides=config.strides,
        reg_max=config.reg_max,
    )
    return DamoYolo(backbone, neck, head)


def build_model(variant: Variant, *, num_classes: int = 80) -> DamoYolo:
    """Family entry point: the train-form model of ``variant``."""
    return build_detector(variant.config, num_classes=num_classes)


def _deployed_meta_copy(model: nn.Module) -> nn.Module:
    # Counting needs shapes only: on the meta device fusion and the forward pass cost no arithmetic.
    clone = copy.deepcopy(model).to("meta")
    if isinstance(clone, DamoYolo):
        clone.deploy()
    return clone.eval()


def count_params(model: nn.Module) -> int:
    """Parameters of the deploy form (RepConvs fused, BN kept), as upstream publishes; ``model`` is untouched."""
    return count_parameters(_deployed_meta_copy(model))


def count_gflops(model: nn.Module, *, image_size: int) -> float:
    """GFLOPs (2 x MACs of convs) of the deployed eval model on one ``image_size``^2 image; ``model`` is untouched."""
    clone = _deployed_meta_copy(model)
    images = torch.zeros(1, 3, image_size, image_size, device="meta")
    return _count_gflops(clone, (images,))
