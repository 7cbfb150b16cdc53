"""RT-DETRv2 set-prediction criterion: Hungarian matching + VFL / L1 / GIoU on every output set."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.box_ops import box_xyxy_to_cxcywh
from models.distributed import shared_normaliser
from models.rtdetrv2.losses import giou_box_loss, l1_box_loss, matched_ious, varifocal_loss
from models.rtdetrv2.matcher import hungarian_match


class RTDETRCriterion(nn.Module):
    """``criterion(outputs, targets, *, image_size) -> {"loss", "loss_vfl", "loss_bbox", "loss_giou"}``.

    Applied to the final layer, every auxiliary decoder layer and the encoder proposals (each matched
    independently) and to every layer's denoising queries (fixed assignment from ``dn_meta``, normalised
    by num_boxes * num_groups); num_boxes is the global batch's box count (>= 1) over the world
    size under DDP (``models.distributed.shared_normaliser``). Component entries are weighted sums
    over all those sets; ``loss`` is their total. Targets are per image ``"boxes"`` [N, 4] xyxy in input pixels and ``"labels"`` [N].

    Args:
        num_classes: classes.
        weight_vfl / weight_bbox / weight_giou: loss weights (1 / 5 / 2 upstream).
        cost_class / cost_bbox / cost_giou: matcher weights (2 / 5 / 2 upstream).
        alpha / gamma: VFL parameters (0.75 / 2); the matcher's focal cost uses 0.25 / 2.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        weight_vfl: float = 1.0,
        weight_bbox: float = 5.0,
        weight_giou: float = 2.0,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        alpha: float = 0.75,
        gamma: float = 2.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.weights = {"loss_vfl": weight_vfl, "loss_bbox": weight_bbox, "loss_giou": weight_giou}
        self.costs = {"cost_class": cost_class, "cost_bbox": cost_bbox, "cost_giou": cost_giou}
        self.alpha, self.gamma = alpha, gamma

    def forward(
        self, outputs: dict[str, Any], targets: list[dict[str, Tensor]], *, image_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """Raw model outputs + pixel-xyxy targets -> weighted loss dict (scalars)."""
        h, w = image_size
        device = outputs["pred_logits"].device
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=device)
        norm_targets = [
            {
                "labels": t["labels"].to(device=device, dtype=torch.int64),
                "boxes": box_xyxy_to_cxcywh(t["boxes"].to(device=device, dtype=torch.float32) / scale),
            }
            for t in targets
        ]
        for t in norm_targets:
            if t["labels"].numel() and (t["labels"].min() < 0 or t["labels"].max() >= self.num_classes):
                raise ValueError(
                    f"target labels must lie in 0..{self.num_classes - 1}, got {t['labels'].tolist()}"
                )
        # As upstream: all-reduce num_boxes and divide by the world size (clamp: see models.distributed).
        local_boxes = float(sum(int(t["labels"].numel()) for t in norm_targets))
        num_boxes = shared_normaliser(local_boxes, device=device)
        # A zero on the graph: zero each logit before summing, as a float16 sum of the logits of an
        # autocast forward overflows to inf (inf * 0 = NaN) once they total more than 65504.
        totals = {k: (outputs["pred_logits"].float() * 0.0).sum() for k in self.weights}

        matched_sets = [outputs, *outputs.get("aux_outputs", []), *outputs.get("enc_outputs", [])]
        for out in matched_sets:
            indices = hungarian_match(
                out["pred_logits"].detach(), out["pred_boxes"].detach(), norm_targets, **self.costs
            )
            self._accumulate(totals, out, norm_targets, indices, num_boxes)

        dn_meta = outputs.get("dn_meta") or {}
        if outputs.get("dn_outputs"):
            groups = int(dn_meta["num_groups"])
            indices = dn_indices(dn_meta["positive_idx"], norm_targets, num_groups=groups)
            for out in outputs["dn_outputs"]:
                self._accumulate(totals, out, norm_targets, indices, num_boxes * groups)

        result = {k: v * self.weights[k] for k, v in totals.items()}
        result["loss"] = sum(result.values())
        return {"loss": result.pop("loss"), **result}

    def _accumulate(
        self,
        totals: dict[str, Tensor],
        out: dict[str, Tensor],
        targets: list[dict[str, Tensor]],
        indices: list[tuple[Tensor, Tensor]],
        num_boxes: float,
    ) -> None:
        device = out["pred_logits"].device
        batch_idx = torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(indices)]).to(device)
        query_idx = torch.cat([q for q, _ in indices]).to(device)
        tgt_boxes = torch.cat([t["boxes"][j.to(device)] for t, (_, j) in zip(targets, indices, strict=True)])
        tgt_labels = torch.cat(
            [t["labels"][j.to(device)] for t, (_, j) in zip(targets, indices, strict=True)]
        )
        src_boxes = out["pred_boxes"][batch_idx, query_idx].float()
        ious = matched_ious(src_boxes, tgt_boxes)
        totals["loss_vfl"] = totals["loss_vfl"] + varifocal_loss(
            out["pred_logits"].float(),
            (batch_idx, query_idx),
            tgt_labels,
            ious,
            num_boxes=num_boxes,
            alpha=self.alpha,
            gamma=self.gamma,
        )
        totals["loss_bbox"] = totals["loss_bbox"] + l1_box_loss(src_boxes, tgt_boxes, num_boxes=num_boxes)
        totals["loss_giou"] = totals["loss_giou"] + giou_box_loss(src_boxes, tgt_boxes, num_boxes=num_boxes)


def dn_indices(
    positive_idx: list[Tensor], targets: list[dict[str, Tensor]], *, num_groups: int
) -> list[tuple[Tensor, Tensor]]:
    """Fixed denoising assignment: positive copy ``g * N + j`` of image i reconstructs its GT ``j``.

    Returns per image (DN query indices int64 [N * num_groups], target indices int64 [N * num_groups]).
    """
    out = []
    for pos, tgt in zip(positive_idx, targets, strict=True):
        n = int(tgt["labels"].shape[0])
        gt = torch.arange(n, dtype=torch.int64).tile(num_groups)
        if pos.numel() != gt.numel():
            raise ValueError(
                f"denoising meta has {pos.numel()} positives for {n} targets x {num_groups} groups"
            )
        out.append((pos.cpu().to(torch.int64), gt))
    return out
