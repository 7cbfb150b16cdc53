"""No silent fallback: predicted boxes with non-finite coordinates are counted and reported."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from detops.data.dataset import CocoDetection
from detops.data.loader import build_loader
from detops.data.transforms import eval_pipeline
from detops.engine.loop import coco_detections, evaluate
from detops.evaluation import evaluate_results, format_stats

NAN, INF = math.nan, math.inf


def test_coco_detections_counts_what_it_drops() -> None:
    dets = [
        {
            "boxes": torch.tensor([[1.0, 2.0, 11.0, 22.0], [NAN, 0, 5, 5], [0, 0, INF, 3]]),
            "scores": torch.tensor([0.9, 0.8, 0.7]),
            "labels": torch.tensor([1, 0, 0]),
        },
        {"boxes": torch.tensor([[0, 0, 4, 4.0]]), "scores": torch.tensor([0.5]), "labels": torch.tensor([0])},
    ]
    results, dropped = coco_detections(dets, [{"image_id": 7}, {"image_id": 8}], label_to_category_id=[3, 9])
    assert dropped == 2
    assert results == [
        {"image_id": 7, "category_id": 9, "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.9},
        {"image_id": 8, "category_id": 3, "bbox": [0.0, 0.0, 4.0, 4.0], "score": 0.5},
    ]


class _Constant(nn.Module):
    def forward(self, images: torch.Tensor, targets: Any = None) -> dict[str, torch.Tensor]:
        return {"n": torch.tensor(images.shape[0])}


class _TwoBoxes(nn.Module):
    """Per image: one finite box on the first ground-truth box's place and one NaN box."""

    def __init__(self, gt: dict[Any, list[float]]) -> None:
        super().__init__()
        self.gt = gt
        self.calls: list[Any] = []

    def forward(self, outputs: Any, *, image_size: Any, orig_sizes: torch.Tensor) -> list[dict[str, Any]]:
        out = []
        for _ in range(int(outputs["n"])):
            x, y, w, h = self.gt[len(self.calls)]
            self.calls.append(None)
            out.append(
                {
                    "boxes": torch.tensor([[x, y, x + w, y + h], [NAN, 1.0, 2.0, 2.0]]),
                    "scores": torch.tensor([0.9, 0.8]),
                    "labels": torch.tensor([0, 0]),
                }
            )
        return out


def test_evaluate_reports_dropped_boxes(synth_root: Path) -> None:
    ds = CocoDetection.from_root(synth_root, split="val", transform=eval_pipeline(size=64, pixel_scale=255.0))
    first: dict[Any, list[float]] = {}
    for ann in ds.coco["annotations"]:
        first.setdefault(ann["image_id"], ann["bbox"])
    boxes = [first.get(im["id"], [1.0, 1.0, 5.0, 5.0]) for im in ds.images]
    loader = build_loader(ds, batch_size=3, shuffle=False, workers=0, seed=0)
    with pytest.warns(RuntimeWarning, match=f"dropped {len(ds)} predicted box"):
        stats = evaluate(_Constant(), _TwoBoxes(boxes), loader, device=torch.device("cpu"))
    assert stats["dropped_nonfinite"] == len(ds)
    # The statistics are those of the finite boxes alone.
    cat = ds.label_to_category_id[0]
    finite = [
        {"image_id": im["id"], "category_id": cat, "bbox": box, "score": 0.9}
        for im, box in zip(ds.images, boxes, strict=True)
    ]
    expected = evaluate_results(ds.coco, finite)
    assert stats["AP"] == pytest.approx(expected["AP"], abs=1e-3)
    assert f"non-finite coordinates: {len(ds)}" in format_stats(stats)


class _NaNRunner:
    """A deploy runner stand-in: per image one finite box and one with a NaN coordinate."""

    def __init__(self, category_ids: list[int]) -> None:
        self.meta = SimpleNamespace(category_ids=category_ids, batch=None)

    def __call__(self, images: list[np.ndarray]) -> list[Any]:
        from detops.deploy.runners.base import Detections

        cat = self.meta.category_ids[0]
        return [
            Detections(
                boxes=np.array([[1, 1, 9, 9], [NAN, 1, 2, 2]], np.float32),
                scores=np.array([0.9, 0.8], np.float32),
                category_ids=np.array([cat, cat], np.int64),
                labels=np.array([0, 0], np.int64),
            )
            for _ in images
        ]


def test_artifact_evaluation_reports_dropped_boxes(synth_root: Path) -> None:
    from detops.deploy.evaluate import evaluate_runner

    ds = CocoDetection.from_root(synth_root, split="val")
    stats = evaluate_runner(_NaNRunner(ds.label_to_category_id), data_root=synth_root, split="val")  # type: ignore[arg-type]
    assert stats["dropped_nonfinite"] == len(ds)
