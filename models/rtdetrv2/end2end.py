"""End-to-end graph of RT-DETRv2: images -> final detections in the shared end-to-end layout.

RT-DETRv2 has no NMS: its post-processing is a top-K over queries x classes (``topk_detections``),
already inside today's graph. The end-to-end graph differs in its interface only: one input
(``images``), boxes in the network input's pixels instead of original ones, a ``num_dets`` output
(always K) and outputs padded to the post-processor's K, so that runners decode both families'
end-to-end files with one function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.family import End2EndSettings
from models.rtdetrv2.postprocess import RTDETRPostProcessor, topk_detections


class RTDETREnd2End(nn.Module):
    """``forward(images [B, 3, S, S] float32 RGB 0-1)`` -> (num_dets int64 [B], boxes [B, K, 4] xyxy
    input pixels, scores [B, K], labels int64 [B, K], raw logits [B, Q, C], raw boxes [B, Q, 4]).

    K = ``max_detections``; when Q * C < K only Q * C are real (``num_dets``) and the rest is zeros.
    The raw outputs are there for the export's check only (see ``models.family.Family.end2end_wrapper``).
    """

    input_names = ["images"]
    output_names = ["num_dets", "boxes", "scores", "labels", "raw_logits", "raw_boxes"]
    dynamic_axes = {name: {0: "batch"} for name in input_names + output_names}
    check_outputs = {"raw_logits": "pred_logits", "raw_boxes": "pred_boxes"}
    parity_outputs = ["raw_logits", "raw_boxes"]

    def __init__(self, model: nn.Module, *, max_detections: int) -> None:
        super().__init__()
        self.model = model
        self.max_detections = max_detections

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        out = self.model(images)
        logits, pred_boxes = out["pred_logits"], out["pred_boxes"]
        k = min(self.max_detections, logits.shape[1] * logits.shape[2])
        # The input is square and static, so its side is a constant of the graph.
        side = float(images.shape[-1])
        sizes_wh = torch.full_like(logits[:, 0, :2], side)
        labels, boxes, scores = topk_detections(logits, pred_boxes, sizes_wh, num_top=k)
        pad = self.max_detections - k
        if pad:
            labels, scores = F.pad(labels, (0, pad)), F.pad(scores, (0, pad))
            boxes = F.pad(boxes, (0, 0, 0, pad))
        num_dets = torch.ones_like(labels[:, :k]).sum(dim=1)
        return num_dets, boxes, scores, labels, logits, pred_boxes

    def example_inputs(self, batch: int, image_size: int) -> tuple[Tensor, ...]:
        """Random images [batch, 3, S, S] in [0, 1] (seeded)."""
        gen = torch.Generator().manual_seed(0)
        return (torch.rand(batch, 3, image_size, image_size, generator=gen),)


def end2end_settings(postprocessor: nn.Module) -> End2EndSettings:
    """K of the top-K post-processor; no thresholds (every one of the K is a detection)."""
    if not isinstance(postprocessor, RTDETRPostProcessor):
        raise ValueError(f"expected an RTDETRPostProcessor, got {type(postprocessor).__name__}")
    return End2EndSettings(max_detections=int(postprocessor.num_top_queries))


def end2end_wrapper(model: nn.Module, postprocessor: nn.Module) -> RTDETREnd2End:
    """A deployed, eval-mode RT-DETRv2 with ``postprocessor``'s K baked into the graph."""
    if model.training:
        raise ValueError("end2end_wrapper needs an eval-mode model: call model.deploy() first")
    return RTDETREnd2End(model, max_detections=end2end_settings(postprocessor).max_detections).eval()
