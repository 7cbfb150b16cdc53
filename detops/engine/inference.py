"""Evaluate a saved checkpoint on a dataset split (``detops evaluate CHECKPOINT --data ROOT``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import models
from detops.data.dataset import CocoDetection
from detops.data.loader import build_loader
from detops.data.transforms import eval_pipeline
from detops.engine.checkpoint import model_weights, read_checkpoint
from detops.engine.loop import evaluate
from detops.errors import DetopsError


def load_model(
    checkpoint: str | Path, *, device: str = "cpu"
) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, Any]]:
    """(eval-mode model with the checkpoint's EMA weights, its postprocessor, the checkpoint dict)."""
    ckpt = read_checkpoint(checkpoint)
    try:
        model = models.build_model(ckpt["variant"], num_classes=int(ckpt["num_classes"]))
        post = models.build_postprocessor(ckpt["variant"], num_classes=int(ckpt["num_classes"]))
    except ValueError as exc:
        raise DetopsError(f"checkpoint {checkpoint}: {exc}") from None
    try:
        model.load_state_dict(model_weights(ckpt))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DetopsError(
            f"checkpoint {checkpoint}: weights do not fit {ckpt['variant']} ({first})"
        ) from None
    return model.to(device).eval(), post.to(device), ckpt


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    data_root: str | Path,
    split: str = "val",
    device: str = "cpu",
    batch_size: int = 8,
    img_size: int | None = None,
    workers: int = 0,
) -> dict[str, Any]:
    """COCO stats dict (see ``detops.evaluation``) of ``checkpoint`` on ``split`` of ``data_root``.

    The input size defaults to the one the checkpoint was trained at; the dataset must have the
    checkpoint's categories (its ids map the labels back for COCOeval)."""
    model, post, ckpt = load_model(checkpoint, device=device)
    variant = models.get_variant(ckpt["variant"])
    size = img_size or int(ckpt.get("img_size") or variant.input_size)
    dataset = CocoDetection.from_root(
        data_root, split=split, transform=eval_pipeline(size=size, pixel_scale=variant.pixel_scale)
    )
    expected = [int(c) for c in ckpt.get("category_ids", dataset.label_to_category_id)]
    if dataset.label_to_category_id != expected:
        raise DetopsError(
            f"annotations {dataset.annotation_file}: category ids {dataset.label_to_category_id} differ from "
            f"the checkpoint's {expected}"
        )
    loader = build_loader(dataset, batch_size=batch_size, shuffle=False, workers=workers, seed=0)
    return evaluate(model, post, loader, device=torch.device(device), amp=device == "cuda")
