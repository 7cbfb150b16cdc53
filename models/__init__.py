"""Pure-PyTorch detector families and their variant table.

    >>> import models
    >>> model = models.build_model("damo_yolo_t", num_classes=80)

Every family package exposes the same functions (see ``models.family``); this module merges their
variant rows and dispatches by name. Nothing here imports anything of ``detops``.
"""

from __future__ import annotations

from types import ModuleType

from torch import nn

from models import damo_yolo, rtdetrv2
from models.variants import Published, Variant

_FAMILIES: dict[str, ModuleType] = {"damo_yolo": damo_yolo, "rtdetrv2": rtdetrv2}

VARIANT_TABLE: dict[str, Variant] = {**damo_yolo.VARIANTS, **rtdetrv2.VARIANTS}
VARIANTS: tuple[str, ...] = tuple(VARIANT_TABLE)

__all__ = [
    "VARIANTS",
    "VARIANT_TABLE",
    "Published",
    "Variant",
    "build_criterion",
    "build_model",
    "build_postprocessor",
    "family_module",
    "get_variant",
]


def get_variant(name: str) -> Variant:
    """The variant row called ``name``; ``ValueError`` naming the valid names otherwise."""
    try:
        return VARIANT_TABLE[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; valid names: {', '.join(VARIANTS)}") from None


def family_module(name: str) -> ModuleType:
    """The family package (``models.damo_yolo`` or ``models.rtdetrv2``) that builds variant ``name``."""
    return _FAMILIES[get_variant(name).family]


def build_model(name: str, *, num_classes: int = 80) -> nn.Module:
    """Build variant ``name`` in train form with freshly initialised weights.

    The returned module's ``forward(images, targets=None)`` returns the family's raw output dict in
    both train and eval mode; call ``model.deploy()`` to fuse re-parameterised branches for export.
    """
    variant = get_variant(name)
    return _FAMILIES[variant.family].build_model(variant, num_classes=num_classes)


def build_criterion(name: str, *, num_classes: int = 80) -> nn.Module:
    """The training loss of variant ``name``: ``criterion(outputs, targets, image_size=(H, W))``."""
    variant = get_variant(name)
    return _FAMILIES[variant.family].build_criterion(variant, num_classes=num_classes)


def build_postprocessor(name: str, *, num_classes: int = 80) -> nn.Module:
    """Post-processing of variant ``name``: raw outputs -> per-image boxes, scores and labels."""
    variant = get_variant(name)
    return _FAMILIES[variant.family].build_postprocessor(variant, num_classes=num_classes)
