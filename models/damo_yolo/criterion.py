"""DAMO-YOLO training loss: AlignOTA assignment + QFL + GIoU (x2.0) + DFL (x0.25)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.damo_yolo.assigner import align_ota_assign
from models.damo_yolo.losses import box_to_distance, distribution_focal_loss, giou_loss, quality_focal_loss
from models.distributed import shared_normaliser


class DamoYoloCriterion(nn.Module):
    """``criterion(outputs, targets, *, image_size)`` -> ``{"loss", "loss_qfl", "loss_giou", "loss_dfl"}``.

    ``outputs`` is the model's raw dict (the loss reads ``cls_logits``, not the sigmoid ``scores``);
    ``targets`` one dict per image with ``boxes`` [N, 4] xyxy input pixels and ``labels`` int64 [N]
    (N may be 0). Normalisation follows upstream: QFL by the number of positives, GIoU and DFL by
    the sum of the positives' detached max class scores (DFL also by 4 sides), each normaliser
    shared by the ranks of a DDP run (the global sum, clamped to >= 1, over the world size:
    ``models.distributed.shared_normaliser``), so the ranks' averaged gradients equal one process's
    over the global batch.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        reg_max: int = 16,
        qfl_weight: float = 1.0,
        giou_weight: float = 2.0,
        dfl_weight: float = 0.25,
        center_radius: float = 2.5,
        candidate_topk: int = 10,
        cls_cost_weight: float = 1.0,
        iou_cost_weight: float = 3.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.qfl_weight = qfl_weight
        self.giou_weight = giou_weight
        self.dfl_weight = dfl_weight
        self.center_radius = center_radius
        self.candidate_topk = candidate_topk
        self.cls_cost_weight = cls_cost_weight
        self.iou_cost_weight = iou_cost_weight

    def forward(
        self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]], *, image_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        del image_size  # boxes are already in input pixels; kept for the family-wide signature
        # The sigmoid is taken here in float32: the head's own ``scores`` may come from a float16
        # forward and be exactly 1.0 (see quality_focal_loss).
        logits = outputs["cls_logits"].float()
        scores = logits.detach().sigmoid()
        boxes = outputs["boxes"].float()
        reg_logits = outputs["reg_logits"].float()
        points, strides = outputs["anchor_points"].float(), outputs["strides"].float()
        batch, num_anchors, num_classes = scores.shape
        if len(targets) != batch:
            raise ValueError(f"got {len(targets)} target dicts for a batch of {batch} images")

        labels = torch.full((batch, num_anchors), -1, dtype=torch.int64, device=scores.device)
        quality = scores.new_zeros(batch, num_anchors)
        box_targets = scores.new_zeros(batch, num_anchors, 4)
        with torch.no_grad():
            for b, target in enumerate(targets):
                gt_boxes = target["boxes"].to(scores.device, torch.float32).reshape(-1, 4)
                gt_labels = target["labels"].to(scores.device, torch.int64).reshape(-1)
                assigned, iou = align_ota_assign(
                    scores[b],
                    boxes[b],
                    points,
                    strides,
                    gt_boxes,
                    gt_labels,
                    center_radius=self.center_radius,
                    candidate_topk=self.candidate_topk,
                    cls_weight=self.cls_cost_weight,
                    iou_weight=self.iou_cost_weight,
                )
                pos = assigned >= 0
                labels[b, pos] = gt_labels[assigned[pos]]
                quality[b, pos] = iou[pos]
                box_targets[b, pos] = gt_boxes[assigned[pos]]

        labels, quality = labels.reshape(-1), quality.reshape(-1)
        flat_scores = scores.reshape(-1, num_classes)
        flat_logits = logits.reshape(-1, num_classes)
        pos_idx = (labels >= 0).nonzero().squeeze(1)
        # Both normalisers are reduced on every rank, positives or not: the all-reduce is a collective.
        num_pos = shared_normaliser(float(pos_idx.numel()), device=scores.device)
        loss_qfl = quality_focal_loss(flat_logits, labels, quality).sum() / num_pos
        weights = flat_scores[pos_idx].max(dim=1).values if pos_idx.numel() else scores.new_zeros(0)
        norm = shared_normaliser(weights.sum(), device=scores.device)

        if pos_idx.numel() > 0:
            anchor_idx = pos_idx % num_anchors
            pred_boxes = boxes.reshape(-1, 4)[pos_idx]
            target_boxes = box_targets.reshape(-1, 4)[pos_idx]
            loss_giou = (giou_loss(pred_boxes, target_boxes) * weights).sum() / norm
            stride = strides[anchor_idx][:, None]
            dfl_target = box_to_distance(
                points[anchor_idx] / stride, target_boxes / stride, max_distance=float(self.reg_max)
            )
            logits = reg_logits.reshape(-1, 4, self.reg_max + 1)[pos_idx]
            dfl = distribution_focal_loss(logits.reshape(-1, self.reg_max + 1), dfl_target.reshape(-1))
            loss_dfl = (dfl * weights.repeat_interleave(4)).sum() / (4.0 * norm)
        else:
            # Zero that still reaches the regression branch, so every parameter gets a gradient.
            loss_giou = boxes.sum() * 0.0
            loss_dfl = reg_logits.sum() * 0.0

        loss_qfl = self.qfl_weight * loss_qfl
        loss_giou = self.giou_weight * loss_giou
        loss_dfl = self.dfl_weight * loss_dfl
        return {
            "loss": loss_qfl + loss_giou + loss_dfl,
            "loss_qfl": loss_qfl,
            "loss_giou": loss_giou,
            "loss_dfl": loss_dfl,
        }
