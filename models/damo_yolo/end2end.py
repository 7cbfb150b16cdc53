"""End-to-end graph of DAMO-YOLO: images -> final detections, NMS inside (ONNX ``NonMaxSuppression``).

The tail after the model is the library's post-processing (``postprocess.postprocess_single``) written
in ONNX operators: ``NonMaxSuppression`` per image and class (scores strictly above the threshold, a
box suppressed by a kept higher-scoring box of its class with IoU strictly above the IoU threshold, at
most K kept per class), then the kept (anchor, class) pairs as a mask over the score matrix, a global
``TopK`` of K by score, and padding to K.

Where ONNX Runtime's (or OpenVINO's) NMS can differ from ``models.nms``:

* equal scores within one class: ``models.nms`` visits them lower anchor first, ONNX Runtime's
  ``std::priority_queue`` in an unspecified order, so which of two equal-score overlapping boxes
  survives may differ (continuous scores make exact ties rare);
* IoU at the threshold: the library divides by ``union + 1e-9`` after shifting each class by an
  offset (``batched_nms``), ONNX Runtime divides by the union of the raw coordinates, so a pair whose
  IoU is within float rounding of the threshold may be decided differently;
* zero-area boxes: ONNX Runtime never suppresses with or against them; the library's IoU is 0 for
  them too (0 / (0 + 1e-9)), so both keep them.

The global top-K breaks equal scores by the flat index ``anchor * C + class`` (ONNX ``TopK``: the
lower index first), which is the library's candidate order (``nonzero`` of [A, C], stable sort).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.damo_yolo.export import DamoYoloExport
from models.damo_yolo.postprocess import DamoYoloPostprocessor
from models.family import End2EndSettings
from models.nms import nms


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (opset 11+, ``center_point_box=0``) with an eager twin.

    Eager: boxes [B, A, 4] xyxy, scores [B, C, A] -> selected int64 [M, 3] rows (image, class,
    anchor), per image then class, by decreasing score, computed with ``models.nms``. Exported: the
    one ``NonMaxSuppression`` node (thresholds and K as constants).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: object, boxes: Tensor, scores: Tensor, max_per_class: int, iou: float, score: float
    ) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            # The tracer would record this loop into the node; ``symbolic`` replaces it, and the
            # rows' count is dynamic in the graph, so an empty placeholder is all tracing needs.
            return torch.zeros(0, 3, dtype=torch.int64, device=boxes.device)
        rows = []
        for b in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                cand = (scores[b, c] > score).nonzero().squeeze(1)
                keep = cand[
                    nms(boxes[b, cand], scores[b, c, cand], iou_threshold=iou, max_keep=max_per_class)
                ]
                rows.append(torch.stack([torch.full_like(keep, b), torch.full_like(keep, c), keep], dim=1))
        return torch.cat(rows) if rows else torch.zeros(0, 3, dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou: float, score: float):  # type: ignore[no-untyped-def]
        def const(value: Tensor):  # type: ignore[no-untyped-def]
            return g.op("Constant", value_t=value)

        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            const(torch.tensor([max_per_class], dtype=torch.int64)),
            const(torch.tensor([iou], dtype=torch.float32)),
            const(torch.tensor([score], dtype=torch.float32)),
        )


def nms_topk(
    scores: Tensor, boxes: Tensor, *, score_threshold: float, iou_threshold: float, max_detections: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Class-wise NMS and the best ``max_detections`` per image, in traceable operators.

    Args:
        scores: [B, A, C] class scores in 0..1 (the sentinel of dropped pairs is -1).
        boxes: [B, A, 4] xyxy.
    Returns:
        (num_dets int64 [B], boxes [B, K, 4], scores [B, K], labels int64 [B, K]), K =
        ``max_detections``, by decreasing score; entries past ``num_dets`` are zeros (padding).
    """
    classes = scores.shape[2]
    selected = _NonMaxSuppression.apply(
        boxes, scores.transpose(1, 2), max_detections, iou_threshold, score_threshold
    )
    kept = torch.zeros_like(scores).index_put(
        (selected[:, 0], selected[:, 2], selected[:, 1]), torch.ones_like(selected[:, 0], dtype=scores.dtype)
    )
    masked = torch.where(kept > 0, scores, torch.full_like(scores, -1.0))
    # K sentinel columns so that TopK(K) is defined when A * C < K (small inputs, few classes).
    flat = F.pad(masked.flatten(1), (0, max_detections), value=-1.0)
    top, index = flat.topk(max_detections, dim=1)
    valid = top >= 0
    anchor = torch.where(valid, torch.div(index, classes, rounding_mode="floor"), torch.zeros_like(index))
    labels = torch.where(valid, index % classes, torch.zeros_like(index))
    picked = boxes.gather(1, anchor.unsqueeze(-1).expand(-1, -1, 4)) * valid.unsqueeze(-1).to(boxes.dtype)
    return valid.sum(dim=1), picked, torch.where(valid, top, torch.zeros_like(top)), labels


class DamoYoloEnd2End(nn.Module):
    """``forward(images [B, 3, S, S] float32 RGB 0-255)`` -> (num_dets int64 [B], boxes [B, K, 4] xyxy
    input pixels, scores [B, K], labels int64 [B, K], raw scores [B, A, C], raw boxes [B, A, 4]).

    The last two are the model's raw outputs, graph outputs only while the export checks the
    detections against the library's post-processing of them (``check_outputs``: graph output name
    -> key of the model's output dict); the written file drops them.
    """

    input_names = ["images"]
    output_names = ["num_dets", "boxes", "scores", "labels", "raw_scores", "raw_boxes"]
    dynamic_axes = {name: {0: "batch"} for name in input_names + output_names}
    check_outputs = {"raw_scores": "scores", "raw_boxes": "boxes"}
    parity_outputs = ["raw_scores", "raw_boxes"]

    def __init__(
        self, model: nn.Module, *, score_threshold: float, iou_threshold: float, max_detections: int
    ) -> None:
        super().__init__()
        self.model = model
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        out = self.model(images)
        dets = nms_topk(
            out["scores"],
            out["boxes"],
            score_threshold=self.score_threshold,
            iou_threshold=self.iou_threshold,
            max_detections=self.max_detections,
        )
        return (*dets, out["scores"], out["boxes"])

    # the same seeded example batch as the plain graph's
    example_inputs = DamoYoloExport.example_inputs


def end2end_settings(postprocessor: nn.Module) -> End2EndSettings:
    """K and the thresholds of the family's post-processor (what the end-to-end graph bakes in)."""
    if not isinstance(postprocessor, DamoYoloPostprocessor):
        raise ValueError(f"expected a DamoYoloPostprocessor, got {type(postprocessor).__name__}")
    return End2EndSettings(
        max_detections=int(postprocessor.max_detections),
        score_threshold=float(postprocessor.score_threshold),
        iou_threshold=float(postprocessor.iou_threshold),
    )


def end2end_wrapper(model: nn.Module, postprocessor: nn.Module) -> DamoYoloEnd2End:
    """A deployed, eval-mode DAMO-YOLO with ``postprocessor``'s thresholds and K baked into the graph."""
    settings = end2end_settings(postprocessor)
    assert settings.score_threshold is not None and settings.iou_threshold is not None
    return DamoYoloEnd2End(
        model,
        score_threshold=settings.score_threshold,
        iou_threshold=settings.iou_threshold,
        max_detections=settings.max_detections,
    ).eval()
