"""Post-processing: per-class score threshold, class-wise NMS, top-k, rescale to original size."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.nms import batched_nms


def postprocess_single(
    scores: Tensor,
    boxes: Tensor,
    *,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.7,
    max_detections: int = 500,
) -> tuple[Tensor, Tensor, Tensor]:
    """One image: scores [A, C], boxes [A, 4] xyxy -> (boxes [K, 4], scores [K], labels int64 [K]).

    Every (anchor, class) pair above ``score_threshold`` is a candidate (one box may yield several
    classes); class-wise NMS; the ``max_detections`` best by score are kept, in decreasing order.
    """
    anchor_idx, labels = (scores > score_threshold).nonzero(as_tuple=True)
    cand_scores = scores[anchor_idx, labels]
    cand_boxes = boxes[anchor_idx]
    keep = batched_nms(cand_boxes, cand_scores, labels, iou_threshold=iou_threshold, max_keep=max_detections)
    return cand_boxes[keep], cand_scores[keep], labels[keep]


class DamoYoloPostprocessor(nn.Module):
    """``postprocessor(outputs, *, image_size=(H, W), orig_sizes [B, 2] (height, width))`` -> one dict
    per image with ``boxes`` [K, 4] xyxy original pixels, ``scores`` [K], ``labels`` int64 [K]."""

    def __init__(
        self,
        *,
        num_classes: int,
        score_threshold: float = 0.05,
        iou_threshold: float = 0.7,
        max_detections: int = 500,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections

    @torch.no_grad()
    def forward(
        self, outputs: dict[str, Tensor], *, image_size: tuple[int, int], orig_sizes: Tensor
    ) -> list[dict[str, Tensor]]:
        scores, boxes = outputs["scores"], outputs["boxes"]
        if orig_sizes.shape != (scores.shape[0], 2):
            raise ValueError(f"orig_sizes must be [{scores.shape[0]}, 2], got {tuple(orig_sizes.shape)}")
        in_h, in_w = image_size
        results = []
        for b in range(scores.shape[0]):
            kept_boxes, kept_scores, labels = postprocess_single(
                scores[b],
                boxes[b],
                score_threshold=self.score_threshold,
                iou_threshold=self.iou_threshold,
                max_detections=self.max_detections,
            )
            orig_h, orig_w = orig_sizes[b].tolist()
            # The network input is a stretch-resize (no letterbox), so x and y scale independently.
            factor = kept_boxes.new_tensor([orig_w / in_w, orig_h / in_h, orig_w / in_w, orig_h / in_h])
            results.append({"boxes": kept_boxes * factor, "scores": kept_scores, "labels": labels})
        return results
