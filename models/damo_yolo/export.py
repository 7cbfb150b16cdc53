"""ONNX-ready wrapper of a deployed DAMO-YOLO model: images -> (scores, boxes)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.damo_yolo.detector import DamoYolo


class DamoYoloExport(nn.Module):
    """``forward(images [N, 3, H, W] float32 RGB 0-255)`` -> (scores [N, A, C], boxes [N, A, 4] xyxy
    input pixels), i.e. upstream's default export (decode in graph, no NMS), with a dynamic batch axis."""

    input_names = ["images"]
    output_names = ["scores", "boxes"]
    dynamic_axes = {"images": {0: "batch"}, "scores": {0: "batch"}, "boxes": {0: "batch"}}

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(images)
        return out["scores"], out["boxes"]

    def example_inputs(self, batch: int, image_size: int) -> tuple[Tensor, ...]:
        """A seeded random batch [batch, 3, image_size, image_size] in 0-255."""
        gen = torch.Generator().manual_seed(0)
        return (torch.rand(batch, 3, image_size, image_size, generator=gen) * 255.0,)


def export_wrapper(model: nn.Module) -> DamoYoloExport:
    """Deploy ``model`` in place (fuse RepConvs, eval mode) and wrap it for ``torch.onnx.export``."""
    if not isinstance(model, DamoYolo):
        raise ValueError(f"export_wrapper expects a DamoYolo model, got {type(model).__name__}")
    model.deploy()
    model.eval()
    return DamoYoloExport(model).eval()
