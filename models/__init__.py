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
    "check_input_size",
    "family_module",
    "get_variant",
    "min_input_size",
]


def get_variant(name: str) -> Variant:
    """The variant row called ``name``; ``ValueError`` naming the valid names otherwise."""
    try:
        return VARIANT_TABLE[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; valid names: {', '.join(VARIANTS)}") from None


# Both families downsample to stride 32 and concatenate upsampled maps, so sides must be multiples
# of 32; RT-DETRv2 also picks its queries among the tokens of its stride-8/16/32 maps.
SIZE_MULTIPLE = 32
_RTDETR_STRIDES = (8, 16, 32)


def check_input_size(variant: str | Variant, size: int) -> None:
    """Raise ``ValueError`` unless variant ``variant`` can take a square input of ``size`` pixels.

    Every family needs a positive multiple of 32 (the coarsest stride); RT-DETRv2 also needs at
    least ``num_queries`` encoder tokens over its stride-8/16/32 maps (``sum((size // s) ** 2)``),
    i.e. 128 px for 300 queries. The message names the variant, the size and the smallest valid one.
    """
    row = get_variant(variant) if isinstance(variant, str) else variant
    if isinstance(size, bool) or not isinstance(size, int) or size < SIZE_MULTIPLE or size % SIZE_MULTIPLE:
        raise ValueError(
            f"{row.name} needs an input size that is a positive multiple of {SIZE_MULTIPLE} "
            f"(at least {min_input_size(row)}), got {size!r}"
        )
    if row.family == "rtdetrv2":
        queries = int(row.config.num_queries)
        tokens = sum((size // s) ** 2 for s in _RTDETR_STRIDES)
        if tokens < queries:
            raise ValueError(
                f"{row.name} needs an input size of at least {min_input_size(row)} ({size} px gives "
                f"{tokens} encoder tokens for its {queries} queries), got {size}"
            )


def min_input_size(variant: str | Variant) -> int:
    """The smallest square input size ``check_input_size`` accepts for ``variant``."""
    row = get_variant(variant) if isinstance(variant, str) else variant
    size = SIZE_MULTIPLE
    if row.family == "rtdetrv2":
        while sum((size // s) ** 2 for s in _RTDETR_STRIDES) < int(row.config.num_queries):
            size += SIZE_MULTIPLE
    return size


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
