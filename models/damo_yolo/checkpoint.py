"""Official DAMO-YOLO release checkpoints -> this package's train-form state dict.

The module tree mirrors upstream's, so conversion is: unwrap ``ckpt["model"]``, strip a ``module.``
prefix, drop the legacy background row of ``head.gfl_cls`` (81 -> 80 channels), re-initialise the
class convs when the class count changes (fine-tuning), then check every name, shape and dtype.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from models.damo_yolo.build import build_model
from models.damo_yolo.head import ZeroHead
from models.variants import Variant

_CLS_KEY = re.compile(r"^head\.gfl_cls\.(\d+)\.(weight|bias)$")


@dataclass(frozen=True)
class Conversion:
    """Result of ``convert_checkpoint``: the state dict and the keys re-initialised (not from the file)."""

    state_dict: dict[str, Tensor]
    reinitialised: tuple[str, ...]
    legacy_background_dropped: bool


def unwrap_state_dict(checkpoint: dict[str, Any]) -> dict[str, Tensor]:
    """``{"model": state_dict, ...}`` or a bare state dict -> the state dict without a ``module.`` prefix."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"checkpoint must be a dict, got {type(checkpoint).__name__}")
    state = checkpoint.get("model", checkpoint)
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint['model'] must be a state dict, got {type(state).__name__}")
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(
            f"checkpoint has non-tensor entries (not a state dict?): {', '.join(map(str, bad[:10]))}"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def convert_checkpoint(variant: Variant, checkpoint: dict[str, Any], *, num_classes: int = 80) -> Conversion:
    """Map an official release file's contents onto ``build_model(variant, num_classes=...)``.

    Raises:
        ValueError listing missing, unexpected and shape-mismatched keys.
    """
    state = unwrap_state_dict(checkpoint)
    # Only names, shapes and dtypes are needed: build on the meta device (no allocation, no init).
    with torch.device("meta"):
        expected = build_model(variant, num_classes=num_classes).state_dict()

    cls_keys = [k for k in state if _CLS_KEY.match(k)]
    src_classes = {state[k].shape[0] for k in cls_keys}
    legacy = False
    if len(src_classes) == 1:
        n_src = src_classes.pop()
        # v0.1/v0.2 heads carry an extra 81st (background) channel that inference always sliced off.
        if n_src == 81 and num_classes != 81:
            state = {k: (v[:80] if k in cls_keys else v) for k, v in state.items()}
            n_src, legacy = 80, True
        reinitialised: list[str] = []
        if n_src != num_classes:
            for k in cls_keys:
                match = _CLS_KEY.match(k)
                assert match is not None  # cls_keys were selected by this pattern
                level, leaf = match.groups()
                weight_shape = expected[f"head.gfl_cls.{level}.weight"].shape
                conv = nn.Conv2d(
                    weight_shape[1], weight_shape[0], weight_shape[2], padding=weight_shape[2] // 2
                )
                ZeroHead.reset_class_conv(conv)
                state[k] = getattr(conv, leaf).detach()
                reinitialised.append(k)
    else:
        reinitialised = []

    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    if missing or unexpected or mismatched:
        parts = [f"checkpoint does not fit {variant.name} (num_classes={num_classes})"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                shown = ", ".join(keys[:20]) + (f" ... (+{len(keys) - 20} more)" if len(keys) > 20 else "")
                parts.append(f"{len(keys)} {title}: {shown}")
        raise ValueError("; ".join(parts))

    # No copy: load_state_dict copies anyway, and a 40 M-parameter clone is not free.
    converted = {k: state[k].detach().to(dtype=expected[k].dtype) for k in expected}
    return Conversion(converted, tuple(sorted(reinitialised)), legacy)


def convert_official_checkpoint(
    variant: Variant, checkpoint: dict[str, Any], *, num_classes: int = 80
) -> dict[str, torch.Tensor]:
    """Family entry point: ``convert_checkpoint(...).state_dict``; warns naming any re-initialised keys."""
    result = convert_checkpoint(variant, checkpoint, num_classes=num_classes)
    if result.reinitialised:
        warnings.warn(
            f"{variant.name}: class count differs from the checkpoint; re-initialised "
            f"{', '.join(result.reinitialised)}",
            stacklevel=2,
        )
    return result.state_dict
