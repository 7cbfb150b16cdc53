"""The typed configuration of a training run: defaults in code, flat overrides, unknown key = error.

The resolved config is written into the run directory as ``config.json`` and stored in every
checkpoint, so a run can be resumed and audited from its directory alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from detops.errors import DetopsError


@dataclass
class TrainConfig:
    """One training run. ``None`` means "the variant's / recipe's value" (resolved by ``fit``).

    Attributes:
        variant: variant table row, e.g. ``"damo_yolo_t"``.
        data: dataset root (our layout or COCO 2017).
        out: run directory (checkpoints, metrics.jsonl, summary.json, config.json).
        epochs: total epochs.
        img_size: square network input size; ``None`` = the variant's ``input_size``.
        batch_size: total batch over all processes.
        workers: data-loader worker processes per process.
        seed: seeds model init, shuffling and augmentation.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when this machine has it; AMP follows).
        weights: a ``detops weights import`` file or a detops checkpoint to start from.
        lr: base learning rate; ``None`` = the recipe's (DAMO-YOLO scales it with the batch).
        warmup_iters, no_aug_epochs: ``None`` = the recipe's fractions of this run.
        clip_norm: gradient-norm clip; ``None`` = the recipe's (DAMO-YOLO none, RT-DETRv2 0.1).
        augment: ``False`` trains on resize + flip only (the no-augmentation tail for the whole run).
        ema: keep an EMA of the weights and evaluate / select the best checkpoint with it.
        amp: mixed precision; ``None`` = on for CUDA, off for CPU.
        train_split, val_split: split names under ``data``.
        eval_interval: validate every this many epochs (and always after the last).
        eval_batch_size: ``None`` = ``batch_size``.
        progress: show a progress bar per epoch.
    """

    variant: str
    data: str
    out: str
    epochs: int = 10
    img_size: int | None = None
    batch_size: int = 16
    workers: int = 2
    seed: int = 0
    device: str = "auto"
    weights: str | None = None
    lr: float | None = None
    warmup_iters: int | None = None
    no_aug_epochs: int | None = None
    clip_norm: float | None = None
    augment: bool = True
    ema: bool = True
    amp: bool | None = None
    train_split: str = "train"
    val_split: str = "val"
    eval_interval: int = 1
    eval_batch_size: int | None = None
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(TrainConfig))


def apply_overrides(
    config: TrainConfig, overrides: dict[str, Any] | None, *, source: str = "overrides"
) -> TrainConfig:
    """A copy of ``config`` with flat ``overrides`` applied; an unknown key is a ``DetopsError``."""
    if not overrides:
        return dataclasses.replace(config)
    unknown = sorted(set(overrides) - set(config_fields()))
    if unknown:
        raise DetopsError(
            f"{source}: unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(config_fields())}"
        )
    return dataclasses.replace(config, **overrides)


def config_from_dict(values: dict[str, Any], *, source: str) -> TrainConfig:
    """Rebuild a ``TrainConfig`` (e.g. from ``config.json`` or a checkpoint); unknown key = error."""
    unknown = sorted(set(values) - set(config_fields()))
    if unknown:
        raise DetopsError(f"{source}: unknown config key(s) {', '.join(unknown)}")
    missing = [k for k in ("variant", "data", "out") if k not in values]
    if missing:
        raise DetopsError(f"{source}: config lacks field(s) {', '.join(missing)}")
    return TrainConfig(**values)
