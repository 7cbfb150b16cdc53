"""RT-DETRv2 post-processing: sigmoid, top-K over queries x classes, boxes to original pixels (no NMS)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.box_ops import box_cxcywh_to_xyxy


def topk_detections(
    logits: Tensor, boxes: Tensor, sizes_wh: Tensor, *, num_top: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Top-``num_top`` (query, class) pairs per image.

    Args:
        logits: [B, Q, C]; boxes: [B, Q, 4] normalised cxcywh.
        sizes_wh: [B, 2] (width, height) of the original images (any numeric dtype).
        num_top: detections kept per image (at most Q * C).
    Returns:
        (labels int64 [B, K], boxes [B, K, 4] xyxy in original pixels, scores [B, K]), scores descending.
    """
    num_classes = logits.shape[-1]
    scale = sizes_wh.to(boxes.dtype).repeat(1, 2).unsqueeze(1)  # [B, 1, 4] = (w, h, w, h)
    xyxy = box_cxcywh_to_xyxy(boxes) * scale
    scores, index = torch.topk(logits.sigmoid().flatten(1), num_top, dim=-1)
    labels = index % num_classes
    query = torch.div(index, num_classes, rounding_mode="floor")
    picked = xyxy.gather(1, query.unsqueeze(-1).expand(-1, -1, 4))
    return labels, picked, scores


class RTDETRPostProcessor(nn.Module):
    """``postprocessor(outputs, *, image_size, orig_sizes) -> [{"boxes", "scores", "labels"}] * B``.

    ``orig_sizes`` int64 [B, 2] rows are (height, width) here (the engine's convention); the ONNX
    wrapper feeds the upstream (width, height) order to ``topk_detections`` directly.
    """

    def __init__(self, *, num_classes: int, num_top_queries: int = 300) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_top_queries = num_top_queries

    @torch.no_grad()
    def forward(
        self, outputs: dict[str, Tensor], *, image_size: tuple[int, int], orig_sizes: Tensor
    ) -> list[dict[str, Tensor]]:
        """Raw outputs -> per image boxes [K, 4] xyxy original pixels, scores [K], labels int64 [K].

        ``image_size`` is unused (boxes are normalised to the input) but kept for the shared contract.
        """
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        k = min(self.num_top_queries, logits.shape[1] * logits.shape[2])
        sizes_wh = orig_sizes.to(boxes.device).flip(-1)
        labels, xyxy, scores = topk_detections(logits, boxes, sizes_wh, num_top=k)
        return [{"boxes": xyxy[i], "scores": scores[i], "labels": labels[i]} for i in range(logits.shape[0])]
