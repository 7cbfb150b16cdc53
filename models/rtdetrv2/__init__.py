"""RT-DETRv2 (S / M / L / X) in pure PyTorch: the ``models.family.Family`` functions at package level.

    >>> from models import rtdetrv2
    >>> model = rtdetrv2.build_model(rtdetrv2.VARIANTS["rtdetrv2_s"], num_classes=80)

Input: float32 RGB in [0, 1] (``pixel_scale`` 1.0), 640x640 for the published rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from models import flops
from models.rtdetrv2.checkpoint import convert_state_dict, extract_state_dict
from models.rtdetrv2.config import CONFIGS, VARIANTS, RTDETRv2Config
from models.rtdetrv2.criterion import RTDETRCriterion
from models.rtdetrv2.detector import RTDETRv2, build_rtdetrv2
from models.rtdetrv2.end2end import end2end_settings, end2end_wrapper
from models.rtdetrv2.export import RTDETRExportWrapper
from models.rtdetrv2.export import export_wrapper as _export_wrapper
from models.rtdetrv2.postprocess import RTDETRPostProcessor
from models.variants import Variant

__all__ = [
    "CONFIGS",
    "VARIANTS",
    "RTDETRv2",
    "RTDETRv2Config",
    "build_criterion",
    "build_model",
    "build_postprocessor",
    "convert_official_checkpoint",
    "count_gflops",
    "count_params",
    "end2end_settings",
    "end2end_wrapper",
    "export_wrapper",
]


def _config(variant: Variant) -> RTDETRv2Config:
    if variant.family != "rtdetrv2" or not isinstance(variant.config, RTDETRv2Config):
        raise ValueError(f"variant {variant.name!r} is not an RT-DETRv2 row (family {variant.family!r})")
    return variant.config


def build_model(variant: Variant, *, num_classes: int) -> RTDETRv2:
    """Fresh RT-DETRv2 of ``variant`` in train form (RepVGG branches unfused)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return build_rtdetrv2(_config(variant), num_classes=num_classes)


def build_criterion(variant: Variant, *, num_classes: int) -> RTDETRCriterion:
    """Training loss (Hungarian matcher 2/5/2; VFL 1, L1 5, GIoU 2) - the same for every row."""
    _config(variant)
    return RTDETRCriterion(num_classes=num_classes)


def build_postprocessor(variant: Variant, *, num_classes: int) -> RTDETRPostProcessor:
    """Sigmoid + top-300 over queries x classes, boxes to original pixels, no NMS."""
    _config(variant)
    return RTDETRPostProcessor(num_classes=num_classes, num_top_queries=300)


def count_params(model: nn.Module) -> int:
    """Upstream's published count: every ``nn.Parameter`` (trainable or frozen), no buffers.

    That is upstream's ``sum(p.numel() for p in model.parameters())``: the frozen stem convs of M/L/X
    (28,512 weights, ``requires_grad=False``) count; FrozenBatchNorm2d affine terms and statistics
    are buffers and do not (53,248 affine values in R50, 105,472 in R101), nor do ``anchors``,
    ``valid_mask`` and ``num_points_scale``. This reproduces S 20,184,464 / M 36,593,772 /
    L 42,891,372 / X 76,556,268 exactly on the train-form model (``deploy()`` adds fused convs).
    """
    return flops.count_parameters(model)


def count_gflops(model: nn.Module, *, image_size: int) -> float:
    """GFLOPs (2 x MACs, ``FlopCounterMode``) of one eval forward of a 1x3xSxS input.

    As upstream measures it: eval mode (so M runs only its first 3 decoder layers), train form
    (unfused RepVGG). The model's train/eval flag is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        return flops.count_gflops(model, (torch.zeros(1, 3, image_size, image_size, device=device),))
    finally:
        model.train(was_training)


def convert_official_checkpoint(
    variant: Variant, checkpoint: Mapping[str, Any], *, num_classes: int
) -> dict[str, torch.Tensor]:
    """Official release file contents (``torch.load(..., weights_only=True)``) -> train-form state dict.

    Reads ``ema.module``, else ``model``, else a bare state dict; fills derivable buffers; keeps fresh
    class heads when the file's class count differs from ``num_classes``; raises ``ValueError`` naming
    missing / unexpected / shape-mismatched keys otherwise (see ``checkpoint.convert_state_dict``).
    """
    cfg = _config(variant)
    state = extract_state_dict(checkpoint)
    return convert_state_dict(
        state, build=lambda: build_rtdetrv2(cfg, num_classes=num_classes), num_classes=num_classes
    )


def export_wrapper(model: nn.Module) -> RTDETRExportWrapper:
    """Wrap a deployed eval-mode model as the ONNX graph (post-processing inside, see ``export.py``)."""
    return _export_wrapper(model)
