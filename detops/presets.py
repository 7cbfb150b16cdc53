"""The ``smoke`` and ``full`` presets of training (the retrain flow, ``detops demo``): sizes only, no
behaviour."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import models
from detops.errors import DetopsError


@dataclass(frozen=True)
class Preset:
    """Training and deploy sizes of one preset; ``epochs`` and ``img_sizes`` by model family."""

    img_sizes: dict[str, int] | None
    """Square training input size by family; ``None``: each variant's own (published) size."""
    batch_size: int | None
    """Total batch over all ranks; ``None``: each variant's published one."""
    workers: int
    epochs: dict[str, int] | None
    """Epochs by family; ``None``: each variant's published schedule."""
    profile_seconds: float
    eval_interval: int = 1
    """Validate every this many epochs (and after the last)."""


PRESETS: dict[str, Preset] = {
    # The demo's sizes (``detops demo``): a short schedule at small sizes, validation every other
    # epoch, data in the main process (a data-loader worker was slower on 2 cores). On the demo's
    # synthetic data DAMO-YOLO-T reached mAP 0.259 at 160 px in 45 s against 0.201 at 192 px in 62 s;
    # RT-DETRv2-S 0.015 at 160 px against 0.040 at 192 px (3 epochs, 84 s against 102 s).
    "smoke": Preset(
        img_sizes={"damo_yolo": 160, "rtdetrv2": 192},
        batch_size=8,
        workers=0,
        epochs={"damo_yolo": 8, "rtdetrv2": 3},
        profile_seconds=1.0,
        eval_interval=2,
    ),
    # Each variant's published recipe (detops.engine.recipes.published_schedule): its own input size,
    # epochs (DAMO-YOLO 300; RT-DETRv2 S 120, M 84, L and X 72) and total batch (256 and 16), split over
    # the ranks; the learning rates follow from the recipe.
    "full": Preset(
        img_sizes=None,
        batch_size=None,
        workers=4,
        epochs=None,
        profile_seconds=10.0,
    ),
}


def train_config(
    variant: str, *, preset: str, epochs: int | None = None, img_size: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """The resolved training config of ``variant`` under ``preset`` (``epochs`` and ``img_size``
    override the preset's); a plain dict of ``fit`` keyword arguments. Raises ``DetopsError`` for an
    unknown preset or variant, or ``epochs`` below 1."""
    if preset not in PRESETS:
        raise DetopsError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if variant not in models.VARIANTS:
        raise DetopsError(f"variants: unknown variant {variant!r} (see `detops models list`)")
    if epochs is not None and epochs < 1:
        raise DetopsError(f"epochs must be at least 1, got {epochs}")
    from detops.engine.recipes import published_schedule

    p = PRESETS[preset]
    row = models.get_variant(variant)
    published_epochs, published_batch = published_schedule(row)
    default_epochs = p.epochs[row.family] if p.epochs is not None else published_epochs
    return {
        "variant": variant,
        "epochs": int(epochs if epochs is not None else default_epochs),
        "img_size": img_size if img_size is not None else (p.img_sizes or {}).get(row.family),
        "batch_size": p.batch_size if p.batch_size is not None else published_batch,
        "workers": p.workers,
        "seed": seed,
        "overrides": {"eval_interval": p.eval_interval},
    }


def preset_dict(preset: str) -> dict[str, Any]:
    """``asdict`` of a preset (for the flow's report); ``DetopsError`` when unknown."""
    if preset not in PRESETS:
        raise DetopsError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    return asdict(PRESETS[preset])
